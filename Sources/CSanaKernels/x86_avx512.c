// AVX-512 kernels (x86-64): int8/int4 products with VNNI vpdpbusd, bf16 products with vdpbf16ps, and the
// vectorized activation quantizer. Per-function target attributes: the file builds without -march and the
// dispatcher (linear.c) only calls it when the CPU has the features.
//
// Integer scheme (exactly the reference's arithmetic, sana_qgemm_ref): weights are stored unsigned with an
// offset (u = q + 128 for int8, nibble = q + 8 for int4), activations are s8, so vpdpbusd(u8 weights, s8 x)
// gives Σ u·x = Σ q·x + off·Σ x; the accumulator of each group starts at −off·Σx (from the quantizer).
// Micro-tile: MR ≤ 6 activation rows × NV ≤ 2 blocks of 16 output columns; activations are broadcast 4 bytes
// at a time, weights are one 64-byte register per block per 4 K-elements.
#if defined(__x86_64__) || defined(_M_X64)
#include "internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "x86_avx512_math.h"

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define INLINE static inline __attribute__((always_inline))

int sana_cpu_has_avx512vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma");
}

int sana_cpu_has_avx512bf16(void) {
    __builtin_cpu_init();
    return sana_cpu_has_avx512vnni() && __builtin_cpu_supports("avx512bf16");
}

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// ---- Activation quantizer (bit-identical to sana_quantize_rows_ref) ----

T512 static void quantize_avx512(const float *x, int64_t rows, int64_t k, int64_t g, int8_t *q, float *scale,
                                 int32_t *sum) {
    const int64_t kp = sana_kpad(k), ng = sana_groups(k, g);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        int8_t *qr = q + r * kp;
        for (int64_t gi = 0; gi < ng; gi++) {
            int64_t k0 = gi * g, k1 = k0 + g < k ? k0 + g : k;
            __m512 mx = _mm512_setzero_ps();
            for (int64_t i = k0; i < k1; i += 16) {
                __mmask16 mk = k1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k1 - i)) - 1);
                mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(mk, xr + i)));
            }
            float amax = _mm512_reduce_max_ps(mx);
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            const __m512 vinv = _mm512_set1_ps(inv);
            const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
            __m512i s = _mm512_setzero_si512();
            int64_t i = k0;
            // 64 values at a time: saturating packs (exact after the clamp) then one store, instead of four
            // narrowing stores. packs work per 128-bit lane, so a final permute restores the order.
            const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
            for (; i + 64 <= k1; i += 64) {
                __m512i v[4];
                for (int u = 0; u < 4; u++) {
                    v[u] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xr + i + 16 * u), vinv));
                    v[u] = _mm512_min_epi32(_mm512_max_epi32(v[u], lo), hi);
                    s = _mm512_add_epi32(s, v[u]);
                }
                __m512i w = _mm512_packs_epi16(_mm512_packs_epi32(v[0], v[1]), _mm512_packs_epi32(v[2], v[3]));
                _mm512_storeu_si512(qr + i, _mm512_permutexvar_epi32(order, w));
            }
            for (; i < k1; i += 16) {
                __mmask16 mk = k1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k1 - i)) - 1);
                __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + i), vinv));
                v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
                s = _mm512_add_epi32(s, v);
                _mm512_mask_cvtepi32_storeu_epi8(qr + i, mk, v);
            }
            scale[r * ng + gi] = amax / 127.0f;
            sum[r * ng + gi] = _mm512_reduce_add_epi32(s);
        }
        for (int64_t i = k; i < kp; i++) qr[i] = 0;
    }
}

// ---- int8 / int4 micro-tile ----

/// Where a micro-tile reads its weights: int8 blocks; int4 blocks unpacked in registers (each 64-byte load gives
/// two quads: low and high nibbles); or int4 nibbles already unpacked to the int8 layout [Kp/4][16][4] (unpack_q4).
enum { SRC_Q8 = 0, SRC_Q4_PACKED = 1, SRC_Q4_UNPACKED = 2 };

/// Unpacks the nibbles of weight blocks [b, b + nv) to the int8 data layout, one [Kp/4][16][4] array of stored
/// values (0..15, offset 8) per block: the unpack then costs once per weight tile instead of once per micro-tile.
T512 static void unpack_q4(const sana_qgemm_args *a, int64_t b, int nv, uint8_t *dst) {
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const int64_t pairs = a->kp / 8;
    for (int v = 0; v < nv; v++) {
        const uint8_t *data = a->w + (size_t)(b + v) * a->block_bytes + a->ng * SANA_ROW_BLOCK * 4;
        uint8_t *out = dst + (size_t)v * a->kp * SANA_ROW_BLOCK;
        for (int64_t t = 0; t < pairs; t++) {  // data [pairs][16][4] → out [2·pairs][16][4]
            __m512i c = _mm512_loadu_si512(data + t * 64);
            _mm512_store_si512(out + t * 128, _mm512_and_si512(c, nib));
            _mm512_store_si512(out + t * 128 + 64, _mm512_and_si512(_mm512_srli_epi16(c, 4), nib));
        }
    }
}

INLINE T512 void q_tile(const sana_qgemm_args *a, int64_t i0, const int MR, int64_t b, const int NV, const int SRC,
                        const uint8_t *unpacked) {
    const int off = SRC == SRC_Q8 ? 128 : 8;
    const int64_t ng = a->ng, nquads = a->kp / 4, gq = a->g / 4;
    const uint8_t *data[2];
    const float *ws[2];
    for (int v = 0; v < NV; v++) {
        const uint8_t *blk = a->w + (size_t)(b + v) * a->block_bytes;
        ws[v] = (const float *)blk;
        data[v] = SRC == SRC_Q4_UNPACKED ? unpacked + (size_t)v * a->kp * SANA_ROW_BLOCK
                                         : blk + ng * SANA_ROW_BLOCK * 4;
    }
    const int8_t *xq[6];
    for (int m = 0; m < MR; m++) xq[m] = a->xq + (i0 + m) * a->kp;
    __m512 accf[6][2];
    for (int m = 0; m < MR; m++)
        for (int v = 0; v < NV; v++) accf[m][v] = _mm512_setzero_ps();
    const __m512i nib = _mm512_set1_epi8(0x0f);

    for (int64_t gi = 0; gi < ng; gi++) {
        const int64_t q0 = gi * gq, q1 = q0 + gq < nquads ? q0 + gq : nquads;
        __m512i acc[6][2];
        for (int m = 0; m < MR; m++) {
            __m512i c = _mm512_set1_epi32(-off * a->xsum[(i0 + m) * ng + gi]);
            for (int v = 0; v < NV; v++) acc[m][v] = c;
        }
        if (SRC != SRC_Q4_PACKED) {
            for (int64_t t = q0; t < q1; t++) {
                __m512i w[2];
                for (int v = 0; v < NV; v++) w[v] = _mm512_loadu_si512(data[v] + t * 64);
                for (int m = 0; m < MR; m++) {
                    __m512i xb = _mm512_set1_epi32(load_i32(xq[m] + 4 * t));
                    for (int v = 0; v < NV; v++) acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], w[v], xb);
                }
            }
        } else {
            for (int64_t t = q0; t < q1; t += 2) {
                __m512i wl[2], wh[2];
                for (int v = 0; v < NV; v++) {
                    __m512i c = _mm512_loadu_si512(data[v] + (t / 2) * 64);
                    wl[v] = _mm512_and_si512(c, nib);
                    wh[v] = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
                }
                for (int m = 0; m < MR; m++) {
                    __m512i xl = _mm512_set1_epi32(load_i32(xq[m] + 4 * t));
                    __m512i xh = _mm512_set1_epi32(load_i32(xq[m] + 4 * t + 4));
                    for (int v = 0; v < NV; v++) {
                        acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], wl[v], xl);
                        acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], wh[v], xh);
                    }
                }
            }
        }
        __m512 sw[2];
        for (int v = 0; v < NV; v++) sw[v] = _mm512_loadu_ps(ws[v] + gi * SANA_ROW_BLOCK);
        for (int m = 0; m < MR; m++) {
            __m512 sx = _mm512_set1_ps(a->xs[(i0 + m) * ng + gi]);
            for (int v = 0; v < NV; v++)
                accf[m][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][v]), _mm512_mul_ps(sx, sw[v]), accf[m][v]);
        }
    }
    for (int v = 0; v < NV; v++) {
        int64_t j0 = (b + v) * SANA_ROW_BLOCK, left = a->n - j0;
        __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 bias = a->bias ? _mm512_maskz_loadu_ps(mk, a->bias + j0) : _mm512_setzero_ps();
        for (int m = 0; m < MR; m++) {
            __m512 out = _mm512_add_ps(accf[m][v], bias);
            if (a->silu) out = silu512(out);  // the DiT's conv_inverted: its SiLU while the tile is in registers
            _mm512_mask_storeu_ps(a->y + (i0 + m) * a->n + j0, mk, out);
        }
    }
}

#define Q_TILE_CASES(SRC, NV)                                  \
    switch (mr) {                                              \
        case 6: q_tile(a, i, 6, b, NV, SRC, u); break;         \
        case 5: q_tile(a, i, 5, b, NV, SRC, u); break;         \
        case 4: q_tile(a, i, 4, b, NV, SRC, u); break;         \
        case 3: q_tile(a, i, 3, b, NV, SRC, u); break;         \
        case 2: q_tile(a, i, 2, b, NV, SRC, u); break;         \
        default: q_tile(a, i, 1, b, NV, SRC, u); break;        \
    }

/// Rows [m0, m1) × blocks [b0, b1) in micro-tiles of 6 rows × 2 blocks, walking the rows inside each block pair so
/// the pair's weights stay in cache.
#define Q_ROWS(SRC)                                                 \
    for (int64_t i = m0; i < m1; i += 6) {                          \
        int mr = m1 - i < 6 ? (int)(m1 - i) : 6;                    \
        if (b1 - b >= 2) {                                          \
            Q_TILE_CASES(SRC, 2)                                    \
        } else {                                                    \
            Q_TILE_CASES(SRC, 1)                                    \
        }                                                           \
    }

T512 static void qgemm_q8_avx512(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1) {
    const uint8_t *u = NULL;
    for (int64_t b = b0; b < b1; b += 2) Q_ROWS(SRC_Q8)
}

/// int4: with more than one micro-tile of rows, each block pair is unpacked once to int8 layout (per-thread
/// scratch, 2·Kp·16 bytes) and the rows run the int8 inner loop on it; a single micro-tile unpacks in registers.
T512 static void qgemm_q4_avx512(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1) {
    uint8_t *u = m1 - m0 > 6 ? (uint8_t *)sana_scratch(5, (size_t)a->kp * SANA_ROW_BLOCK * 2) : NULL;
    for (int64_t b = b0; b < b1; b += 2) {
        if (u) {
            unpack_q4(a, b, b1 - b >= 2 ? 2 : 1, u);
            Q_ROWS(SRC_Q4_UNPACKED)
        } else {
            Q_ROWS(SRC_Q4_PACKED)
        }
    }
}


// ---- bf16 ----

/// Element p of a weight row in the activations' K order (tap-major patches: see sana_bgemm_args.taps).
static inline int64_t weight_index(const sana_bgemm_args *a, int64_t p) {
    if (!a->taps) return p;
    const int64_t c = a->k / a->taps;
    return (p % c) * a->taps + p / c;
}

/// Repacks weight rows [j0, j0 + 32) (zero beyond n and k) as [kp2/2 pairs][32 rows][2] for vdpbf16ps.
TBF16 static void repack_bf16(const sana_bgemm_args *a, int64_t j0, uint16_t *dst) {
    const int64_t pairs = a->kp2 / 2;
    for (int r = 0; r < 32; r++) {
        int64_t j = j0 + r;
        const uint16_t *src = a->w + j * a->k;
        for (int64_t t = 0; t < pairs; t++) {
            uint16_t e0 = 0, e1 = 0;
            if (j < a->n) {
                e0 = src[weight_index(a, 2 * t)];
                e1 = 2 * t + 1 < a->k ? src[weight_index(a, 2 * t + 1)] : 0;
            }
            dst[t * 64 + r * 2] = e0;
            dst[t * 64 + r * 2 + 1] = e1;
        }
    }
}

INLINE TBF16 void b_tile(const sana_bgemm_args *a, const uint16_t *wt, int64_t i0, const int MR, int64_t j0,
                         const int NV) {
    const int64_t pairs = a->kp2 / 2;
    const uint16_t *xb[6];
    for (int m = 0; m < MR; m++) xb[m] = a->xb + (i0 + m) * a->kp2;
    __m512 acc[6][2];
    for (int m = 0; m < MR; m++)
        for (int v = 0; v < NV; v++) acc[m][v] = _mm512_setzero_ps();
    for (int64_t t = 0; t < pairs; t++) {
        __m512i w[2];
        for (int v = 0; v < NV; v++) w[v] = _mm512_loadu_si512(wt + t * 64 + v * 32);
        for (int m = 0; m < MR; m++) {
            __m512i x = _mm512_set1_epi32(load_i32(xb[m] + 2 * t));
            for (int v = 0; v < NV; v++) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], (__m512bh)x, (__m512bh)w[v]);
        }
    }
    for (int v = 0; v < NV; v++) {
        int64_t jv = j0 + v * 16, left = a->n - jv;
        __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 bias = a->bias ? _mm512_maskz_loadu_ps(mk, a->bias + jv) : _mm512_setzero_ps();
        for (int m = 0; m < MR; m++) _mm512_mask_storeu_ps(a->y + (i0 + m) * a->n + jv, mk, _mm512_add_ps(acc[m][v], bias));
    }
}

#define B_TILE_CASES(NV)                                        \
    switch (mr) {                                               \
        case 6: b_tile(a, wt, i, 6, j0, NV); break;             \
        case 5: b_tile(a, wt, i, 5, j0, NV); break;             \
        case 4: b_tile(a, wt, i, 4, j0, NV); break;             \
        case 3: b_tile(a, wt, i, 3, j0, NV); break;             \
        case 2: b_tile(a, wt, i, 2, j0, NV); break;             \
        default: b_tile(a, wt, i, 1, j0, NV); break;            \
    }

/// vcvtneps2bf16: round-to-nearest-even like sana_f32_to_bf16, NaN quieted the same way; subnormal inputs
/// become zero (vdpbf16ps treats them as zero anyway, so products are unchanged).
TBF16 static void round_bf16_avx512(const float *src, int64_t count, uint16_t *dst) {
    for (int64_t i = 0; i < count; i += 16) {
        __mmask16 mk = count - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count - i)) - 1);
        __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, src + i));
        _mm256_mask_storeu_epi16(dst + i, mk, h);
    }
}

TBF16 static void bpack_avx512(const sana_bgemm_args *a, int64_t t0, int64_t t1, uint16_t *dst) {
    for (int64_t t = t0; t < t1; t++) repack_bf16(a, t * 32, dst + t * a->kp2 * 32);
}

/// Blocks [b0, b1) (b0 even: work items are 32-row tiles) × rows [m0, m1); each tile repacked here unless the
/// caller repacked all of them (a->wt).
TBF16 static void bgemm_avx512(const sana_bgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1) {
    uint16_t *own = a->wt ? NULL : (uint16_t *)sana_scratch(4, (size_t)a->kp2 * 32 * 2);
    if (!a->wt && !own) return;
    for (int64_t b = b0; b < b1; b += 2) {
        int64_t j0 = b * SANA_ROW_BLOCK;
        const uint16_t *wt = a->wt ? a->wt + (b / 2) * a->kp2 * 32 : own;
        if (!a->wt) repack_bf16(a, j0, own);
        for (int64_t i = m0; i < m1; i += 6) {
            int mr = m1 - i < 6 ? (int)(m1 - i) : 6;
            if (a->n - j0 > 16) {
                B_TILE_CASES(2)
            } else {
                B_TILE_CASES(1)
            }
        }
    }
}

const sana_kernel_set sana_kernels_avx512 = {
    .name = "avx512vnni", .quantize = quantize_avx512,
    .qgemm = {[SANA_TYPE_Q8] = qgemm_q8_avx512, [SANA_TYPE_Q4] = qgemm_q4_avx512}, .qgemm_silu = 1};
const sana_kernel_set sana_kernels_avx512_bf16 = {
    .name = "avx512vnni+bf16", .quantize = quantize_avx512,
    .qgemm = {[SANA_TYPE_Q8] = qgemm_q8_avx512, [SANA_TYPE_Q4] = qgemm_q4_avx512},
    .bgemm = bgemm_avx512, .bpack = bpack_avx512, .round_bf16 = round_bf16_avx512, .qgemm_silu = 1};
#endif
