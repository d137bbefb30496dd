// AVX2 kernels (x86-64 without AVX-512 VNNI): int8/int4 products and the activation quantizer.
// AVX2 has no u8×s8→s32 dot product without saturation, so weights are turned signed (q in [−127, 127]) and
// multiplied with vpmaddubsw(|q|, sign(x, q)) (pairs ≤ 2·127·127 < 2¹⁵: no saturation), then vpmaddwd by 1.
// The int32 group sums equal the reference's exactly; the float epilogue is the reference's (fma per group).
// Micro-tile: MR ≤ 4 activation rows × one block of 16 output columns (two 8-lane halves).
#if defined(__x86_64__) || defined(_M_X64)
#include "internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TAVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

int sana_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

TAVX2 static float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

TAVX2 static int32_t hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/// Bit-identical to sana_quantize_rows_ref: vector body, scalar tail with the same formula.
TAVX2 static void quantize_avx2(const float *x, int64_t rows, int64_t k, int64_t g, int8_t *q, float *scale,
                                int32_t *sum) {
    const int64_t kp = sana_kpad(k), ng = sana_groups(k, g);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        int8_t *qr = q + r * kp;
        for (int64_t gi = 0; gi < ng; gi++) {
            int64_t k0 = gi * g, k1 = k0 + g < k ? k0 + g : k, i;
            __m256 mx = _mm256_setzero_ps();
            for (i = k0; i + 8 <= k1; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xr + i), absmask));
            float amax = hmax8(mx);
            for (; i < k1; i++) amax = fmaxf(amax, fabsf(xr[i]));
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            const __m256 vinv = _mm256_set1_ps(inv);
            const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
            __m256i s = _mm256_setzero_si256();
            for (i = k0; i + 8 <= k1; i += 8) {
                __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vinv));
                v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
                s = _mm256_add_epi32(s, v);
                __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                __m128i p8 = _mm_packs_epi16(p16, p16);
                _mm_storel_epi64((__m128i *)(qr + i), p8);
            }
            int32_t total = hsum8(s);
            for (; i < k1; i++) {
                int v = (int)nearbyintf(xr[i] * inv);
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                qr[i] = (int8_t)v;
                total += v;
            }
            scale[r * ng + gi] = amax / 127.0f;
            sum[r * ng + gi] = total;
        }
        for (int64_t i = k; i < kp; i++) qr[i] = 0;
    }
}

INLINE TAVX2 void q_tile2(const sana_qgemm_args *a, int64_t i0, const int MR, int64_t b, const int Q4) {
    const int64_t ng = a->ng, nquads = a->kp / 4, gq = a->g / 4;
    const uint8_t *blk = a->w + (size_t)b * a->block_bytes;
    const float *ws = (const float *)blk;
    const uint8_t *data = blk + ng * SANA_ROW_BLOCK * 4;
    const int8_t *xq[4];
    for (int m = 0; m < MR; m++) xq[m] = a->xq + (i0 + m) * a->kp;
    __m256 accf[4][2];
    for (int m = 0; m < MR; m++) accf[m][0] = accf[m][1] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80), nib = _mm256_set1_epi8(0x0f),
                  eight = _mm256_set1_epi8(8);

    for (int64_t gi = 0; gi < ng; gi++) {
        const int64_t q0 = gi * gq, q1 = q0 + gq < nquads ? q0 + gq : nquads;
        __m256i acc[4][2];
        for (int m = 0; m < MR; m++) acc[m][0] = acc[m][1] = _mm256_setzero_si256();
        for (int64_t t = q0; t < q1; t += 1 + Q4) {
            // Signed weights: w[s][h] is quad t + s, rows 8h..8h+7 (4 bytes each).
            __m256i w[2][2];
            for (int h = 0; h < 2; h++) {
                if (!Q4) {
                    w[0][h] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(data + t * 64 + h * 32)), flip);
                } else {
                    __m256i c = _mm256_loadu_si256((const __m256i *)(data + (t / 2) * 64 + h * 32));
                    w[0][h] = _mm256_sub_epi8(_mm256_and_si256(c, nib), eight);
                    w[1][h] = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(c, 4), nib), eight);
                }
            }
            for (int s = 0; s <= Q4; s++) {
                __m256i aw0 = _mm256_abs_epi8(w[s][0]), aw1 = _mm256_abs_epi8(w[s][1]);
                for (int m = 0; m < MR; m++) {
                    __m256i x = _mm256_set1_epi32(load_i32(xq[m] + 4 * (t + s)));
                    __m256i p0 = _mm256_maddubs_epi16(aw0, _mm256_sign_epi8(x, w[s][0]));
                    __m256i p1 = _mm256_maddubs_epi16(aw1, _mm256_sign_epi8(x, w[s][1]));
                    acc[m][0] = _mm256_add_epi32(acc[m][0], _mm256_madd_epi16(p0, ones));
                    acc[m][1] = _mm256_add_epi32(acc[m][1], _mm256_madd_epi16(p1, ones));
                }
            }
        }
        // Each int32 lane holds one quad's dot of one row: rows are lanes already (4 bytes per row).
        __m256 sw0 = _mm256_loadu_ps(ws + gi * SANA_ROW_BLOCK), sw1 = _mm256_loadu_ps(ws + gi * SANA_ROW_BLOCK + 8);
        for (int m = 0; m < MR; m++) {
            __m256 sx = _mm256_set1_ps(a->xs[(i0 + m) * ng + gi]);
            accf[m][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[m][0]), _mm256_mul_ps(sx, sw0), accf[m][0]);
            accf[m][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[m][1]), _mm256_mul_ps(sx, sw1), accf[m][1]);
        }
    }
    const int64_t j0 = b * SANA_ROW_BLOCK, left = a->n - j0;
    for (int m = 0; m < MR; m++) {
        float out[16];
        _mm256_storeu_ps(out, accf[m][0]);
        _mm256_storeu_ps(out + 8, accf[m][1]);
        float *y = a->y + (i0 + m) * a->n + j0;
        for (int r = 0; r < 16 && r < left; r++) y[r] = out[r] + (a->bias ? a->bias[j0 + r] : 0.0f);
    }
}

#define Q2_GEMM(NAME, Q4)                                                                          \
    TAVX2 static void NAME(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1) { \
        for (int64_t b = b0; b < b1; b++) {                                                        \
            for (int64_t i = m0; i < m1; i += 4) {                                                 \
                switch (m1 - i < 4 ? (int)(m1 - i) : 4) {                                          \
                    case 4: q_tile2(a, i, 4, b, Q4); break;                                        \
                    case 3: q_tile2(a, i, 3, b, Q4); break;                                        \
                    case 2: q_tile2(a, i, 2, b, Q4); break;                                        \
                    default: q_tile2(a, i, 1, b, Q4); break;                                       \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

Q2_GEMM(qgemm_q8_avx2, 0)
Q2_GEMM(qgemm_q4_avx2, 1)

const sana_kernel_set sana_kernels_avx2 = {
    "avx2", quantize_avx2, {[SANA_TYPE_Q8] = qgemm_q8_avx2, [SANA_TYPE_Q4] = qgemm_q4_avx2}, 0};
#endif
