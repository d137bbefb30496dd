// ARM64 NEON kernels: int8/int4 products with the dot-product extension (sdot) where present, else
// widening multiplies (smull + pairwise adds), and the activation quantizer. Weights are turned signed
// (stored byte ^ 0x80 for int8, nibble − 8 for int4), so the int32 group sums equal the reference's exactly;
// the float epilogue is the reference's (fused multiply-add per group, group order).
// Micro-tile: MR ≤ 4 activation rows × one block of 16 output columns (four 4-lane registers).
#if defined(__aarch64__)
#include "internal.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#define INLINE static inline __attribute__((always_inline))
// GCC and clang both accept this spelling for one function with the dot-product extension.
#define TDOT __attribute__((target("arch=armv8.2-a+dotprod")))

int sana_cpu_has_dotprod(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    return 1;  // every Apple ARM64 CPU has it
#else
    return 0;
#endif
}

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/// Bit-identical to sana_quantize_rows_ref: vector body, scalar tail with the same formula.
static void quantize_neon(const float *x, int64_t rows, int64_t k, int64_t g, int8_t *q, float *scale, int32_t *sum) {
    const int64_t kp = sana_kpad(k), ng = sana_groups(k, g);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        int8_t *qr = q + r * kp;
        for (int64_t gi = 0; gi < ng; gi++) {
            int64_t k0 = gi * g, k1 = k0 + g < k ? k0 + g : k, i;
            float32x4_t mx = vdupq_n_f32(0.0f);
            for (i = k0; i + 4 <= k1; i += 4) mx = vmaxq_f32(mx, vabsq_f32(vld1q_f32(xr + i)));
            float amax = vmaxvq_f32(mx);
            for (; i < k1; i++) amax = fmaxf(amax, fabsf(xr[i]));
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32x4_t s = vdupq_n_s32(0);
            for (i = k0; i + 4 <= k1; i += 4) {
                int32x4_t v = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xr + i), inv));  // round to nearest even
                v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(-127)), vdupq_n_s32(127));
                s = vaddq_s32(s, v);
                int16x4_t h = vmovn_s32(v);
                int8x8_t b = vmovn_s16(vcombine_s16(h, h));
                int32_t word = vget_lane_s32(vreinterpret_s32_s8(b), 0);
                memcpy(qr + i, &word, 4);
            }
            int32_t total = vaddvq_s32(s);
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

/// Signed weights of quad t (rows 4h..4h+3 in register h) of one block.
INLINE void load_weights(const uint8_t *data, int64_t t, const int Q4, int8x16_t w[4]) {
    if (!Q4) {
        for (int h = 0; h < 4; h++)
            w[h] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(data + t * 64 + h * 16), vdupq_n_u8(0x80)));
    } else {
        for (int h = 0; h < 4; h++) {
            uint8x16_t c = vld1q_u8(data + (t / 2) * 64 + h * 16);
            uint8x16_t u = (t & 1) ? vshrq_n_u8(c, 4) : vandq_u8(c, vdupq_n_u8(0x0f));
            w[h] = vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(8));
        }
    }
}

/// Σ over each 4-byte lane of w·x (x one quad broadcast) without the dot-product extension.
INLINE int32x4_t dot4(int32x4_t acc, int8x16_t w, int8x16_t x) {
    int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    int16x8_t hi = vmull_high_s8(w, x);
    // lo = [r0k0 r0k1 r0k2 r0k3 r1k0 ...]: pairwise to int32 then pairwise again gives one sum per row.
    int32x4_t pl = vpaddlq_s16(lo), ph = vpaddlq_s16(hi);
    return vaddq_s32(acc, vpaddq_s32(pl, ph));
}

// The micro-tile, instantiated with and without the dot-product extension (target attributes differ).
#define DEFINE_Q_TILE(NAME, ATTR, DOTOP) \
INLINE ATTR void NAME(const sana_qgemm_args *a, int64_t i0, const int MR, int64_t b, const int Q4) { \
    const int64_t ng = a->ng, nquads = a->kp / 4, gq = a->g / 4; \
    const uint8_t *blk = a->w + (size_t)b * a->block_bytes; \
    const float *ws = (const float *)blk; \
    const uint8_t *data = blk + ng * SANA_ROW_BLOCK * 4; \
    const int8_t *xq[4]; \
    for (int m = 0; m < MR; m++) xq[m] = a->xq + (i0 + m) * a->kp; \
    float32x4_t accf[4][4]; \
    for (int m = 0; m < MR; m++) \
        for (int h = 0; h < 4; h++) accf[m][h] = vdupq_n_f32(0.0f); \
    for (int64_t gi = 0; gi < ng; gi++) { \
        const int64_t q0 = gi * gq, q1 = q0 + gq < nquads ? q0 + gq : nquads; \
        int32x4_t acc[4][4]; \
        for (int m = 0; m < MR; m++) \
            for (int h = 0; h < 4; h++) acc[m][h] = vdupq_n_s32(0); \
        for (int64_t t = q0; t < q1; t++) { \
            int8x16_t w[4]; \
            load_weights(data, t, Q4, w); \
            for (int m = 0; m < MR; m++) { \
                int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(load_i32(xq[m] + 4 * t))); \
                for (int h = 0; h < 4; h++) { \
                    acc[m][h] = DOTOP(acc[m][h], w[h], x); \
                } \
            } \
        } \
        for (int m = 0; m < MR; m++) { \
            float sx = a->xs[(i0 + m) * ng + gi]; \
            for (int h = 0; h < 4; h++) { \
                float32x4_t s = vmulq_n_f32(vld1q_f32(ws + gi * SANA_ROW_BLOCK + 4 * h), sx); \
                accf[m][h] = vfmaq_f32(accf[m][h], vcvtq_f32_s32(acc[m][h]), s); \
            } \
        } \
    } \
    const int64_t j0 = b * SANA_ROW_BLOCK, left = a->n - j0; \
    for (int m = 0; m < MR; m++) { \
        float out[16]; \
        for (int h = 0; h < 4; h++) vst1q_f32(out + 4 * h, accf[m][h]); \
        float *y = a->y + (i0 + m) * a->n + j0; \
        for (int r = 0; r < 16 && r < left; r++) y[r] = out[r] + (a->bias ? a->bias[j0 + r] : 0.0f); \
    } \
}

DEFINE_Q_TILE(q_tile_plain, , dot4)
DEFINE_Q_TILE(q_tile_dot, TDOT, vdotq_s32)

#define NEON_GEMM(NAME, Q4, TILE, ATTR)                                                                 \
    ATTR static void NAME(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1) {  \
        for (int64_t b = b0; b < b1; b++) {                                                            \
            for (int64_t i = m0; i < m1; i += 4) {                                                     \
                switch (m1 - i < 4 ? (int)(m1 - i) : 4) {                                              \
                    case 4: TILE(a, i, 4, b, Q4); break;                                   \
                    case 3: TILE(a, i, 3, b, Q4); break;                                   \
                    case 2: TILE(a, i, 2, b, Q4); break;                                   \
                    default: TILE(a, i, 1, b, Q4); break;                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

NEON_GEMM(qgemm_q8_neon, 0, q_tile_plain, )
NEON_GEMM(qgemm_q4_neon, 1, q_tile_plain, )
NEON_GEMM(qgemm_q8_neon_dot, 0, q_tile_dot, TDOT)
NEON_GEMM(qgemm_q4_neon_dot, 1, q_tile_dot, TDOT)

const sana_kernel_set sana_kernels_neon = {
    "neon", quantize_neon, {[SANA_TYPE_Q8] = qgemm_q8_neon, [SANA_TYPE_Q4] = qgemm_q4_neon}, 0};
const sana_kernel_set sana_kernels_neon_dot = {
    "neon-dotprod", quantize_neon, {[SANA_TYPE_Q8] = qgemm_q8_neon_dot, [SANA_TYPE_Q4] = qgemm_q4_neon_dot}, 0};
#endif
