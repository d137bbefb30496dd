// The Linear DiT's work between its products (SanaTransformerBlock+Streamed.swift, diffusers GLUMBConv and
// SanaAttnProcessor2_0): SiLU over conv_inverted's output, the depthwise 3×3 convolution fused with the GLU gate,
// the residual bookkeeping, and the cross-attention core. They run on every block, so they get AVX-512 versions (the
// package builds without -march: the portable versions run on SSE2) chosen by the one dispatch point, sana_kernels():
// the AVX-512 families use them, everything else (AVX2, NEON, the forced reference) the portable code, same formulas.
// The bf16 cross-attention has only an AVX-512 BF16 version (and its scalar reference, for the tests): elsewhere the
// caller keeps the float32 path.
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include "x86_avx512_math.h"
#endif

/// Channels per step of the depthwise + GLU (one 16-lane register per half).
#define DW_BLOCK 16
/// Elements per work item of SiLU, the copies and the gated adds.
#define SILU_CHUNK 4096
#define COPY_CHUNK 16384

// ---- Portable versions (SiLU's is sana_activate's, ops.c) ----

typedef struct {
    float *x;
    int64_t count;
} silu_job;

typedef struct {
    const float *t, *taps, *bias;
    float *gated;
    int64_t rows, width, wide, hidden;
} dw_job;

/// The taps of output position p (oy·width + ox) that fall inside the frame: source pixel rows of t (output row oy
/// reads t rows oy .. oy + 2) and tap weights [wide]; returns how many (6 at the left and right edges, else 9).
static int dw_taps(const dw_job *d, int64_t p, const float **src, const float **w) {
    const int64_t oy = p / d->width, ox = p % d->width;
    int taps = 0;
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
            const int64_t ix = ox + kx - 1;
            if (ix < 0 || ix >= d->width) continue;
            src[taps] = d->t + ((oy + ky) * d->width + ix) * d->wide;
            w[taps++] = d->taps + (ky * 3 + kx) * d->wide;
        }
    return taps;
}

/// One output position's channels, given its in-frame taps: out [hidden].
typedef void (*dw_position_fn)(const dw_job *d, const float *const *src, const float *const *w, int taps, float *out);
/// DW_GROUP neighbouring interior positions of one row (oy, ox0 .. ox0 + DW_GROUP − 1, all taps in the frame), which
/// share their tap weights and most source pixels; NULL: one position at a time.
typedef void (*dw_group_fn)(const dw_job *d, int64_t oy, int64_t ox0);
#define DW_GROUP 4

/// Positions [p0, p1) of the band (index oy·width + ox), all channels each, by `group` where DW_GROUP interior
/// positions of one row fit, else by `position`: the source pixels' channels and the taps stream through in
/// channel order (sequential reads; neighbouring positions find most of their pixels in cache).
static void dw_positions(const dw_job *d, int64_t p0, int64_t p1, dw_position_fn position, dw_group_fn group) {
    for (int64_t p = p0; p < p1;) {
        const int64_t oy = p / d->width, ox = p % d->width;
        if (group && ox >= 1 && ox + DW_GROUP <= d->width - 1 && p + DW_GROUP <= p1) {
            group(d, oy, ox);
            p += DW_GROUP;
            continue;
        }
        const float *src[9], *w[9];
        const int taps = dw_taps(d, p, src, w);
        position(d, src, w, taps, d->gated + p * d->hidden);
        p++;
    }
}

/// Portable: 16 channels at a time in local arrays (vectorized by the compiler for the baseline ISA).
static void dw_position_generic(const dw_job *d, const float *const *src, const float *const *w, int taps, float *out) {
    const int64_t hidden = d->hidden;
    for (int64_t j0 = 0; j0 < hidden; j0 += DW_BLOCK) {
        const int64_t nj = hidden - j0 < DW_BLOCK ? hidden - j0 : DW_BLOCK;
        float a[DW_BLOCK], g[DW_BLOCK];
        for (int64_t l = 0; l < nj; l++) {
            a[l] = d->bias[j0 + l];
            g[l] = d->bias[hidden + j0 + l];
        }
        for (int k = 0; k < taps; k++)
            for (int64_t l = 0; l < nj; l++) {
                a[l] += src[k][j0 + l] * w[k][j0 + l];
                g[l] += src[k][hidden + j0 + l] * w[k][hidden + j0 + l];
            }
        for (int64_t l = 0; l < nj; l++) out[j0 + l] = a[l] * (g[l] / (1.0f + exp_vec(-g[l])));
    }
}

static void dw_glu_generic(void *ctx, int64_t p0, int64_t p1) {
    dw_positions((const dw_job *)ctx, p0, p1, dw_position_generic, NULL);
}

/// One row of the cross-attention's scores: x = softmax(x + bias) over c values.
static void softmax_bias_generic(float *x, int64_t c, const float *bias) {
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t j = 0; j < c; j++) {
        x[j] += bias[j];
        mx = x[j] > mx ? x[j] : mx;
    }
    for (int64_t j = 0; j < c; j++) {
        x[j] = exp_vec(x[j] - mx);
        sum += x[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < c; j++) x[j] *= inv;
}

// ---- AVX-512 ----

#if defined(__x86_64__) || defined(_M_X64)
T512F static void silu_avx512(void *ctx, int64_t c0, int64_t c1) {
    const silu_job *j = (const silu_job *)ctx;
    const int64_t i1 = c1 * SILU_CHUNK < j->count ? c1 * SILU_CHUNK : j->count;
    for (int64_t i = c0 * SILU_CHUNK; i < i1; i += 16) {
        const __mmask16 mk = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        _mm512_mask_storeu_ps(j->x + i, mk, silu512(_mm512_maskz_loadu_ps(mk, j->x + i)));
    }
}

/// As dw_position_generic, 16 channels per register, the last block masked.
T512F static void dw_position_avx512(const dw_job *d, const float *const *src, const float *const *w, int taps,
                                     float *out) {
    const int64_t hidden = d->hidden;
    for (int64_t j0 = 0; j0 < hidden; j0 += DW_BLOCK) {
        const __mmask16 mk = hidden - j0 >= DW_BLOCK ? (__mmask16)0xffff : (__mmask16)((1u << (hidden - j0)) - 1);
        __m512 a = _mm512_maskz_loadu_ps(mk, d->bias + j0), g = _mm512_maskz_loadu_ps(mk, d->bias + hidden + j0);
        for (int k = 0; k < taps; k++) {
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, src[k] + j0), _mm512_maskz_loadu_ps(mk, w[k] + j0), a);
            g = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, src[k] + hidden + j0), _mm512_maskz_loadu_ps(mk, w[k] + hidden + j0),
                                g);
        }
        _mm512_mask_storeu_ps(out + j0, mk, _mm512_mul_ps(a, silu512(g)));
    }
}

/// DW_GROUP interior positions at once: per 16 channels and per tap row, six source pixels and three tap vectors
/// are loaded once and feed 4 × 3 multiply-adds (one position alone loads a pixel and a tap per multiply-add).
T512F static void dw_group_avx512(const dw_job *d, int64_t oy, int64_t ox0) {
    const int64_t hidden = d->hidden, wide = d->wide, width = d->width;
    float *out = d->gated + (oy * width + ox0) * hidden;
    for (int64_t j0 = 0; j0 < hidden; j0 += DW_BLOCK) {
        const __mmask16 mk = hidden - j0 >= DW_BLOCK ? (__mmask16)0xffff : (__mmask16)((1u << (hidden - j0)) - 1);
        __m512 acc[2][DW_GROUP];  // [value, gate half][position]
        for (int h = 0; h < 2; h++) {
            const __m512 b = _mm512_maskz_loadu_ps(mk, d->bias + h * hidden + j0);
            for (int q = 0; q < DW_GROUP; q++) acc[h][q] = b;
        }
        for (int ky = 0; ky < 3; ky++) {
            // source pixels ox0 − 1 .. ox0 + DW_GROUP of t row oy + ky
            const float *row = d->t + ((oy + ky) * width + ox0 - 1) * wide + j0;
            for (int h = 0; h < 2; h++) {
                __m512 px[DW_GROUP + 2], w[3];
                for (int c = 0; c < DW_GROUP + 2; c++) px[c] = _mm512_maskz_loadu_ps(mk, row + c * wide + h * hidden);
                for (int kx = 0; kx < 3; kx++) w[kx] = _mm512_maskz_loadu_ps(mk, d->taps + (ky * 3 + kx) * wide + h * hidden + j0);
                for (int q = 0; q < DW_GROUP; q++)
                    for (int kx = 0; kx < 3; kx++) acc[h][q] = _mm512_fmadd_ps(px[q + kx], w[kx], acc[h][q]);
            }
        }
        for (int q = 0; q < DW_GROUP; q++)
            _mm512_mask_storeu_ps(out + q * hidden + j0, mk, _mm512_mul_ps(acc[0][q], silu512(acc[1][q])));
    }
}

static void dw_glu_avx512(void *ctx, int64_t p0, int64_t p1) {
    dw_positions((const dw_job *)ctx, p0, p1, dw_position_avx512, dw_group_avx512);
}

/// As softmax_bias_generic, 16 lanes at a time (the row lives in registers' worth of L1).
T512F static void softmax_bias_avx512(float *x, int64_t c, const float *bias) {
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < c; j += 16) {
        const __mmask16 mk = c - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c - j)) - 1);
        const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, x + j), _mm512_maskz_loadu_ps(mk, bias + j));
        _mm512_mask_storeu_ps(x + j, mk, v);
        mx = _mm512_mask_max_ps(mx, mk, mx, v);
    }
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int64_t j = 0; j < c; j += 16) {
        const __mmask16 mk = c - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c - j)) - 1);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), m));
        _mm512_mask_storeu_ps(x + j, mk, e);
        sum = _mm512_mask_add_ps(sum, mk, sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int64_t j = 0; j < c; j += 16) {
        const __mmask16 mk = c - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c - j)) - 1);
        _mm512_mask_storeu_ps(x + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + j), inv));
    }
}
#endif

#if defined(__x86_64__) || defined(_M_X64)
/// 1 when the AVX-512 versions apply: the dispatcher chose an AVX-512 family (not forced to the reference).
static int use_avx512(void) {
    const sana_kernel_set *ks = sana_kernels();
    return ks == &sana_kernels_avx512 || ks == &sana_kernels_avx512_bf16;
}
#endif

void sana_dit_silu(float *x, int64_t count) {
    if (count <= 0) return;
#if defined(__x86_64__) || defined(_M_X64)
    if (use_avx512()) {
        silu_job j = {x, count};
        sana_parallel_for((count + SILU_CHUNK - 1) / SILU_CHUNK, silu_avx512, &j);
        return;
    }
#endif
    sana_activate(x, count, SANA_ACT_SILU);  // the same formula and exp_vec, element by element
}

void sana_dit_depthwise_glu(const float *t, int64_t rows, int64_t width, int64_t wide, const float *taps,
                            const float *bias, float *gated) {
    if (rows <= 0 || width <= 0 || wide < 2 || wide % 2 != 0) return;
    dw_job d = {t, taps, bias, gated, rows, width, wide, wide / 2};
#if defined(__x86_64__) || defined(_M_X64)
    if (use_avx512()) {
        sana_parallel_for(rows * width, dw_glu_avx512, &d);
        return;
    }
#endif
    sana_parallel_for(rows * width, dw_glu_generic, &d);
}

// ---- Residual-stream bookkeeping, threaded so it does not leave a core idle between the products ----

typedef struct {
    float *x;
    const float *y, *gate;
    int64_t row0, n, c;
} gated_job;

static void add_gated_rows(void *ctx, int64_t r0, int64_t r1) {
    const gated_job *j = (const gated_job *)ctx;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->c;
        const float *y = j->y + r * j->c;
        if (!j->gate) {
            for (int64_t i = 0; i < j->c; i++) x[i] += y[i];
            continue;
        }
        const float *g = j->gate + (j->row0 + r) / j->n * j->c;
        for (int64_t i = 0; i < j->c; i++) x[i] += g[i] * y[i];
    }
}

void sana_dit_add_gated(float *x, const float *y, const float *gate, int64_t row0, int64_t rows, int64_t n, int64_t c) {
    if (rows <= 0 || c <= 0 || n <= 0) return;
    gated_job j = {x, y, gate, row0, n, c};
    sana_parallel_for(rows, add_gated_rows, &j);
}

typedef struct {
    float *dst;
    const float *src;
    int64_t count;
} copy_job;

static void copy_chunks(void *ctx, int64_t c0, int64_t c1) {
    const copy_job *j = (const copy_job *)ctx;
    const int64_t i0 = c0 * COPY_CHUNK, i1 = c1 * COPY_CHUNK < j->count ? c1 * COPY_CHUNK : j->count;
    memcpy(j->dst + i0, j->src + i0, (size_t)(i1 - i0) * 4);
}

void sana_dit_copy(float *dst, const float *src, int64_t count) {
    if (count <= 0) return;
    copy_job j = {dst, src, count};
    sana_parallel_for((count + COPY_CHUNK - 1) / COPY_CHUNK, copy_chunks, &j);
}

void sana_dit_softmax_bias(float *x, int64_t rows, int64_t c, const float *bias) {
    if (rows <= 0 || c <= 0) return;
    void (*row)(float *, int64_t, const float *) = softmax_bias_generic;
#if defined(__x86_64__) || defined(_M_X64)
    if (use_avx512()) row = softmax_bias_avx512;
#endif
    for (int64_t r = 0; r < rows; r++) row(x + r * c, c, bias);
}

// ---- The cross-attention core with bf16 operands (f32 sums), for DiTs whose projections are int8 / int4 / bf16 ----
//
// Per head: out = softmax(scale·q·kᵀ + bias)·v over the caption's kept keys. q, k, the probabilities p and v are
// rounded to bf16 and every product is summed in float32 (vdpbf16ps), as a bf16 PyTorch pipeline computes the
// attention; f32 DiTs keep the float32 path (SanaTransformerBlock+Streamed.swift). One bf16 product per pair of
// elements makes the two matrix products ~4× cheaper than sgemm on these small per-head shapes (d = 112, ~120 keys).

/// Packed caption keys and values of one batch element (sana_dit_cross_kv_pack), head after head:
///   keys   [kblocks = ⌈lk/16⌉][dp = ⌈d/2⌉ channel pairs][16 keys][2]
///   values [vblocks = ⌈dv/16⌉][jp = ⌈lk/2⌉ key pairs][16 channels][2]
/// zero beyond lk, d and dv, so one 64-byte load feeds a vdpbf16ps with 16 keys' (or channels') pairs.
typedef struct {
    int64_t lk, heads, d, dv, dp, jp, kblocks, vblocks, head_elems;
} cross_layout;

static cross_layout cross_layout_of(int64_t lk, int64_t heads, int64_t d, int64_t dv) {
    cross_layout l = {lk, heads, d, dv, (d + 1) / 2, (lk + 1) / 2, (lk + 15) / 16, (dv + 15) / 16, 0};
    l.head_elems = l.kblocks * l.dp * 32 + l.vblocks * l.jp * 32;
    return l;
}

/// Index of key j, channel c of a head's packed keys; of key j, channel c of its packed values.
static inline int64_t cross_key_index(const cross_layout *l, int64_t j, int64_t c) {
    return ((j / 16) * l->dp + c / 2) * 32 + (j % 16) * 2 + c % 2;
}
static inline int64_t cross_value_index(const cross_layout *l, int64_t j, int64_t c) {
    return ((c / 16) * l->jp + j / 2) * 32 + (c % 16) * 2 + j % 2;
}

int64_t sana_dit_cross_kv_bytes(int64_t lk, int64_t heads, int64_t d, int64_t dv) {
    if (lk <= 0 || heads <= 0 || d <= 0 || dv <= 0) return 0;
    const cross_layout l = cross_layout_of(lk, heads, d, dv);
    return l.heads * l.head_elems * 2;
}

void sana_dit_cross_kv_pack(const float *k, const float *v, int64_t lk, int64_t heads, int64_t d, int64_t dv,
                            uint16_t *packed) {
    const int64_t bytes = sana_dit_cross_kv_bytes(lk, heads, d, dv);
    if (bytes == 0) return;
    const cross_layout l = cross_layout_of(lk, heads, d, dv);
    memset(packed, 0, (size_t)bytes);
    for (int64_t h = 0; h < heads; h++) {
        uint16_t *kp = packed + h * l.head_elems, *vp = kp + l.kblocks * l.dp * 32;
        for (int64_t j = 0; j < lk; j++) {
            const float *kr = k + j * heads * d + h * d, *vr = v + j * heads * dv + h * dv;  // k [lk, heads·d]
            for (int64_t c = 0; c < d; c++) kp[cross_key_index(&l, j, c)] = sana_f32_to_bf16(kr[c]);
            for (int64_t c = 0; c < dv; c++) vp[cross_value_index(&l, j, c)] = sana_f32_to_bf16(vr[c]);
        }
    }
}

/// acc + a·b over one bf16 pair, in vdpbf16ps's order (odd element first); products of bf16 values are exact in f32.
static inline float bf16_pair_dot(float acc, uint16_t a0, uint16_t a1, uint16_t b0, uint16_t b1) {
    SANA_CONTRACT_OFF
    acc += sana_bf16_to_f32(a1) * sana_bf16_to_f32(b1);
    return acc + sana_bf16_to_f32(a0) * sana_bf16_to_f32(b0);
}

void sana_dit_cross_attention_ref(const float *q, int64_t m, int64_t heads, int64_t d, int64_t dv,
                                  const uint16_t *packed, int64_t lk, const float *bias, float scale, float *att) {
    if (m <= 0 || sana_dit_cross_kv_bytes(lk, heads, d, dv) == 0) return;
    const cross_layout l = cross_layout_of(lk, heads, d, dv);
    float *s = (float *)malloc((size_t)lk * 4);
    uint16_t *qb = (uint16_t *)malloc((size_t)(2 * l.dp) * 2), *pb = (uint16_t *)malloc((size_t)(2 * l.jp) * 2);
    if (s && qb && pb) {
        for (int64_t h = 0; h < heads; h++) {
            const uint16_t *kp = packed + h * l.head_elems, *vp = kp + l.kblocks * l.dp * 32;
            for (int64_t r = 0; r < m; r++) {
                // This row's query of head h, and later its probabilities, as bf16 zero-padded to whole pairs.
                const float *qr = q + r * heads * d + h * d;
                for (int64_t c = 0; c < 2 * l.dp; c++) qb[c] = c < d ? sana_f32_to_bf16(qr[c]) : 0;
                for (int64_t j = 0; j < lk; j++) {
                    float acc = 0.0f;
                    for (int64_t t = 0; t < l.dp; t++)
                        acc = bf16_pair_dot(acc, qb[2 * t], qb[2 * t + 1], kp[cross_key_index(&l, j, 2 * t)],
                                            kp[cross_key_index(&l, j, 2 * t + 1)]);
                    s[j] = acc * scale;
                }
                softmax_bias_generic(s, lk, bias);
                for (int64_t j = 0; j < 2 * l.jp; j++) pb[j] = j < lk ? sana_f32_to_bf16(s[j]) : 0;
                float *out = att + r * heads * dv + h * dv;
                for (int64_t c = 0; c < dv; c++) {
                    float acc = 0.0f;
                    for (int64_t t = 0; t < l.jp; t++)
                        acc = bf16_pair_dot(acc, pb[2 * t], pb[2 * t + 1], vp[cross_value_index(&l, 2 * t, c)],
                                            vp[cross_value_index(&l, 2 * t + 1, c)]);
                    out[c] = acc;
                }
            }
        }
    }
    free(s);
    free(qb);
    free(pb);
}

#if defined(__x86_64__) || defined(_M_X64)
#define TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define INLINE static inline __attribute__((always_inline))
/// Query rows per work item: the item's scores [CROSS_ROWS, 16·kblocks] stay in L1.
#define CROSS_ROWS 12

typedef struct {
    const float *q;
    const uint16_t *packed;
    const float *bias;
    float *att;
    float scale;
    int64_t m, rblocks;
    cross_layout l;
    int failed;  // a worker could not get its scratch (the caller then takes the f32 path)
} cross_job;

/// y[i][v·16 ..] (+)= Σ_t x[i][t] · w[v][t] over `pairs` bf16 pairs for MR ≤ 6 rows × NV ≤ 2 blocks of 16 lanes:
/// x rows `xstride` pairs apart, w blocks `wstride` elements apart (64-byte pair groups); scaled by `scale`,
/// stored masked to `left` lanes of the last block, rows `ystride` floats apart.
INLINE TBF16 void cross_tile(const uint32_t *x, int64_t xstride, const uint16_t *w, int64_t wstride, int64_t pairs,
                             const int MR, const int NV, float scale, float *y, int64_t ystride, int64_t left) {
    __m512 acc[6][2];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t t = 0; t < pairs; t++) {
        __m512i wv[2];
        for (int v = 0; v < NV; v++) wv[v] = _mm512_loadu_si512(w + v * wstride + t * 32);
        for (int i = 0; i < MR; i++) {
            const __m512i xv = _mm512_set1_epi32((int32_t)x[i * xstride + t]);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)xv, (__m512bh)wv[v]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int v = 0; v < NV; v++) {
        const int64_t lanes = left - v * 16;
        const __mmask16 mk = lanes >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << lanes) - 1);
        for (int i = 0; i < MR; i++) _mm512_mask_storeu_ps(y + i * ystride + v * 16, mk, _mm512_mul_ps(acc[i][v], sc));
    }
}

/// rows × (blocks of 16 lanes, two at a time) of y = x · wᵀ through cross_tile.
TBF16 static void cross_product(const uint32_t *x, int64_t xstride, int64_t rows, const uint16_t *w, int64_t blocks,
                                int64_t pairs, int64_t lanes, float scale, float *y, int64_t ystride) {
    const int64_t wstride = pairs * 32;
    for (int64_t b = 0; b < blocks; b += 2) {
        const int nv = blocks - b >= 2 ? 2 : 1;
        for (int64_t i = 0; i < rows; i += 6) {
            const int mr = rows - i < 6 ? (int)(rows - i) : 6;
            const uint32_t *xi = x + i * xstride;
            const uint16_t *wb = w + b * wstride;
            float *yi = y + i * ystride + b * 16;
            const int64_t left = lanes - b * 16;
#define CROSS_TILE(MR)                                                                                   \
    if (nv == 2) cross_tile(xi, xstride, wb, wstride, pairs, MR, 2, scale, yi, ystride, left);            \
    else cross_tile(xi, xstride, wb, wstride, pairs, MR, 1, scale, yi, ystride, left);
            switch (mr) {
                case 6: CROSS_TILE(6) break;
                case 5: CROSS_TILE(5) break;
                case 4: CROSS_TILE(4) break;
                case 3: CROSS_TILE(3) break;
                case 2: CROSS_TILE(2) break;
                default: CROSS_TILE(1) break;
            }
#undef CROSS_TILE
        }
    }
}

/// Work items (head h, block of CROSS_ROWS query rows): q rows → bf16 pairs, scores = scale·q·kᵀ, softmax with the
/// bias, p → bf16 pairs, out = p·v straight into att's head columns.
TBF16 static void cross_items_avx512(void *ctx, int64_t i0, int64_t i1) {
    cross_job *c = (cross_job *)ctx;
    const cross_layout *l = &c->l;
    const int64_t lkp = l->kblocks * 16;  // a scores row, padded to whole key blocks
    uint8_t *scratch = (uint8_t *)sana_scratch(5, (size_t)(CROSS_ROWS * (l->dp + lkp + l->jp)) * 4);
    if (!scratch) {
        c->failed = 1;
        return;
    }
    uint32_t *qb = (uint32_t *)scratch;                       // [CROSS_ROWS][dp] bf16 pairs
    float *s = (float *)(qb + CROSS_ROWS * l->dp);            // [CROSS_ROWS][lkp]
    uint32_t *pb = (uint32_t *)(s + CROSS_ROWS * lkp);        // [CROSS_ROWS][jp] bf16 pairs
    void (*round)(const float *, int64_t, uint16_t *) = sana_kernels()->round_bf16;
    if (!round) round = sana_round_bf16;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t h = it / c->rblocks, r0 = (it % c->rblocks) * CROSS_ROWS;
        const int64_t rows = c->m - r0 < CROSS_ROWS ? c->m - r0 : CROSS_ROWS;
        const uint16_t *kp = c->packed + h * l->head_elems, *vp = kp + l->kblocks * l->dp * 32;
        for (int64_t r = 0; r < rows; r++) {
            uint16_t *row = (uint16_t *)(qb + r * l->dp);
            round(c->q + (r0 + r) * l->heads * l->d + h * l->d, l->d, row);  // q [m, heads·d]
            if (l->d % 2) row[l->d] = 0;
        }
        cross_product(qb, l->dp, rows, kp, l->kblocks, l->dp, lkp, c->scale, s, lkp);
        for (int64_t r = 0; r < rows; r++) {
            float *sr = s + r * lkp;
            uint16_t *row = (uint16_t *)(pb + r * l->jp);
            softmax_bias_avx512(sr, l->lk, c->bias);
            round(sr, l->lk, row);
            if (l->lk % 2) row[l->lk] = 0;
        }
        // att [m, heads·dv]: this item's rows, head h's columns
        cross_product(pb, l->jp, rows, vp, l->vblocks, l->jp, l->dv, 1.0f, c->att + r0 * l->heads * l->dv + h * l->dv,
                      l->heads * l->dv);
    }
}
#endif

int sana_dit_cross_attention_has_kernel(void) {
#if defined(__x86_64__) || defined(_M_X64)
    return sana_kernels() == &sana_kernels_avx512_bf16;
#else
    return 0;
#endif
}

int sana_dit_cross_attention(const float *q, int64_t m, int64_t heads, int64_t d, int64_t dv, const uint16_t *packed,
                             int64_t lk, const float *bias, float scale, float *att) {
    if (!sana_dit_cross_attention_has_kernel()) return 0;
    if (m <= 0 || sana_dit_cross_kv_bytes(lk, heads, d, dv) == 0) return 1;
#if defined(__x86_64__) || defined(_M_X64)
    cross_job j = {q, packed, bias, att, scale, m, (m + CROSS_ROWS - 1) / CROSS_ROWS, cross_layout_of(lk, heads, d, dv), 0};
    sana_parallel_for(heads * j.rblocks, cross_items_avx512, &j);
    return !j.failed;
#else
    return 0;
#endif
}
