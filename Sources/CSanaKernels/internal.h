// Internal interfaces of the C kernels: format constants, the activation quantizer, kernel signatures,
// the thread pool. Not part of the public API (include/sana_kernels.h).
#ifndef SANA_INTERNAL_H
#define SANA_INTERNAL_H

#include "sana_kernels.h"

#include <string.h>

// Group sizes along K (one weight scale per group, one activation scale per (row, group)); measured choice in
// docs/NUMERICS.md "Kernels". Both are multiples of 8 so int4 quad pairs never straddle a group.
#define SANA_Q8_GROUP 128
#define SANA_Q4_GROUP 64

/// K padded to a multiple of 8: the quantized activation row length and the packed data length.
static inline int64_t sana_kpad(int64_t k) { return (k + 7) & ~(int64_t)7; }
static inline int64_t sana_groups(int64_t k, int64_t g) { return (k + g - 1) / g; }
static inline int sana_qgroup(int32_t type) { return type == SANA_TYPE_Q8 ? SANA_Q8_GROUP : SANA_Q4_GROUP; }
/// The unsigned offset of stored weights: byte = q + 128 (int8), nibble = q + 8 (int4).
static inline int sana_qoffset(int32_t type) { return type == SANA_TYPE_Q8 ? 128 : 8; }

/// Quantizes rows of x [rows, k] to int8 per (row, group of g) with symmetric scales: q[rows][kp] (zero padded),
/// scale[rows][ng] = amax/127, sum[rows][ng] = Σ q over the group. Every implementation must be bit-identical
/// to the reference (same inv = 127/amax, one rounding multiply, round-to-nearest-even).
typedef void (*sana_quantize_fn)(const float *x, int64_t rows, int64_t k, int64_t g, int8_t *q, float *scale,
                                 int32_t *sum);
void sana_quantize_rows_ref(const float *x, int64_t rows, int64_t k, int64_t g, int8_t *q, float *scale,
                            int32_t *sum);

/// One quantized product over a chunk of activation rows (already quantized) and a range of weight blocks.
typedef struct {
    int32_t type;
    int64_t m, k, kp, n, g, ng;  // chunk rows, K, padded K, N, group size, groups
    const int8_t *xq;            // [m][kp]
    const float *xs;             // [m][ng]
    const int32_t *xsum;         // [m][ng]
    const uint8_t *w;            // packed weights (all blocks)
    size_t block_bytes;
    const float *bias;           // [n] or NULL
    float *y;                    // [m][n]
    int32_t silu;                // 1: y = silu(x·Wᵀ + bias), applied at the store (families with qgemm_silu)
} sana_qgemm_args;
/// Computes y rows [m0, m1) × weight blocks [b0, b1).
typedef void (*sana_qgemm_fn)(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1);
void sana_qgemm_ref(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1);

/// bf16 product: activations already rounded to bf16 xb[m][kp2] (kp2 = K rounded up to even, zero padded),
/// weights row-major bf16 [n][k]. Computes y rows [m0, m1) × weight rows [16·b0, min(16·b1, n)).
/// `wt`, when not NULL, holds every 32-row tile already repacked by the family's bpack (tile t at t·kp2·32).
/// `taps` > 0: the activation rows are a convolution's patches in tap-major order (element tap·c + ch, c = k / taps)
/// while weight rows are stored in the reference (ch, tap) order, so the repack permutes K to match.
typedef struct {
    int64_t m, k, kp2, n, taps;
    const uint16_t *xb;
    const uint16_t *w;
    const uint16_t *wt;
    const float *bias;
    float *y;
} sana_bgemm_args;
typedef void (*sana_bgemm_fn)(const sana_bgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1);
/// Repacks 32-row weight tiles [t0, t1) into dst + t·kp2·32 (the family's kernel layout).
typedef void (*sana_bpack_fn)(const sana_bgemm_args *a, int64_t t0, int64_t t1, uint16_t *dst);

/// The kernels of one CPU family; NULL entries fall back to the reference.
typedef struct {
    const char *name;
    sana_quantize_fn quantize;
    sana_qgemm_fn qgemm[SANA_TYPE_COUNT];  // indexed by type (Q8, Q4)
    sana_bgemm_fn bgemm;
    sana_bpack_fn bpack;  // may be NULL: bgemm then repacks per tile
    /// Rounds activations to bf16 like sana_round_bf16 (NULL: that one). May flush subnormal inputs to zero,
    /// which bgemm's dot products do anyway.
    void (*round_bf16)(const float *src, int64_t count, uint16_t *dst);
    /// 1 when qgemm honours sana_qgemm_args.silu (else the caller applies SiLU to y afterwards).
    int32_t qgemm_silu;
} sana_kernel_set;

#if defined(__x86_64__) || defined(_M_X64)
int sana_cpu_has_avx512vnni(void);
int sana_cpu_has_avx512bf16(void);
int sana_cpu_has_avx2(void);
extern const sana_kernel_set sana_kernels_avx512;
extern const sana_kernel_set sana_kernels_avx512_bf16;
extern const sana_kernel_set sana_kernels_avx2;
#endif
#if defined(__aarch64__)
int sana_cpu_has_dotprod(void);
extern const sana_kernel_set sana_kernels_neon;
extern const sana_kernel_set sana_kernels_neon_dot;
#endif

/// The kernels chosen for this CPU (probed once), or the reference set when forced.
const sana_kernel_set *sana_kernels(void);

// ---- Thread pool: persistent pthreads, the caller runs share 0. ----
/// Runs fn(ctx, i0, i1) over [0, items) split in contiguous ranges, one per thread; returns when all are done.
/// Calls from several threads are serialized.
typedef void (*sana_range_fn)(void *ctx, int64_t i0, int64_t i1);
void sana_parallel_for(int64_t items, sana_range_fn fn, void *ctx);
/// Threads the pool will use for the next call.
int32_t sana_pool_threads(void);

/// Gathers the patch of output pixel `pixel` (index n·oh·ow + oy·ow + ox) of a convolution into dst [c·k·k],
/// in the weight's (cin, ky, kx) order (the one gather behind im2col and sana_conv2d).
void sana_patch_row(const float *x, const sana_conv_shape *s, int64_t oh, int64_t ow, int64_t pixel, float *dst);
/// The stored input pixel index (n·h + y)·w + x that tap `tap` (ky·k + kx) of output pixel `pixel` reads, or −1 in
/// the zero padding (through the `upsample`× nearest enlargement: virtual (y, x) is stored (y / up, x / up)).
static inline int64_t sana_tap_pixel(const sana_conv_shape *s, int64_t oh, int64_t ow, int64_t pixel, int64_t tap) {
    const int64_t kk = s->kernel, up = s->upsample;
    const int64_t n = pixel / (oh * ow), oy = pixel / ow % oh, ox = pixel % ow;
    const int64_t iy = oy * s->stride + tap / kk - s->pad, ix = ox * s->stride + tap % kk - s->pad;
    if (iy < 0 || iy >= s->h * up || ix < 0 || ix >= s->w * up) return -1;  // outside the virtual grid
    return (n * s->h + iy / up) * s->w + ix / up;
}
/// The input pixel [c] that tap `tap` (ky·k + kx) of output pixel `pixel` reads, or NULL in the zero padding.
const float *sana_tap_source(const float *x, const sana_conv_shape *s, int64_t oh, int64_t ow, int64_t pixel,
                             int64_t tap);

/// dst[i] = sana_f32_to_bf16(src[i]) over count values (vectorized; bit-identical).
void sana_round_bf16(const float *src, int64_t count, uint16_t *dst);

/// Grows a per-thread scratch buffer (index 0..7) to at least `bytes`, 64-byte aligned; NULL on allocation failure.
void *sana_scratch(int slot, size_t bytes);

/// Contraction off for the rest of the enclosing block: a·b + c is never fused into an FMA, so a function built in
/// several target copies (ops.c's WIDE_CLONES) rounds the same in each of them as in the baseline build.
#ifdef __clang__
#define SANA_CONTRACT_OFF _Pragma("clang fp contract(off)")
#else
#define SANA_CONTRACT_OFF
#endif

/// exp(x) in branch-free float arithmetic the compiler vectorizes (libm's expf is a call per element): Cephes'
/// expf — n = round(x·log2 e) (by the 1.5·2²³ trick, round-to-nearest), r = x − n·ln 2 in two parts, a degree-6
/// polynomial, times 2ⁿ built in the exponent bits. Within 2 ulp of expf on [−87, 88]; x is clamped to that range
/// (SiLU only needs the saturation). Measured against expf in OpsTests.
static inline float exp_vec(float x) {
    SANA_CONTRACT_OFF  // the same roundings in every build: callers are compiled with and without FMA
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;  // 2ⁿ, n ∈ [−126, 127]
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

#endif
