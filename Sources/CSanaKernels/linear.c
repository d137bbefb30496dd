// Linear layer: the one dispatch point. CPU features are probed once; the kernel set is chosen once;
// SANA_FORCE_REFERENCE=1 (or sana_force_reference) selects the scalar reference set.
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const sana_kernel_set reference_set = {"reference", sana_quantize_rows_ref, {0}, 0};

static const sana_kernel_set *probed_set = &reference_set;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static const sana_kernel_set *selected_set = NULL;  // sana_select_kernel_family, NULL = probed
static int32_t g_force_reference = -1;  // -1: not set by the API, read the environment

static void probe(void) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sana_cpu_has_avx512bf16()) probed_set = &sana_kernels_avx512_bf16;
    else if (sana_cpu_has_avx512vnni()) probed_set = &sana_kernels_avx512;
    else if (sana_cpu_has_avx2()) probed_set = &sana_kernels_avx2;
#elif defined(__aarch64__)
    probed_set = sana_cpu_has_dotprod() ? &sana_kernels_neon_dot : &sana_kernels_neon;
#endif
    const char *env = getenv("SANA_FORCE_REFERENCE");
    if (g_force_reference < 0) g_force_reference = env && strcmp(env, "1") == 0;
}

void sana_force_reference(int32_t on) {
    pthread_once(&probe_once, probe);
    g_force_reference = on ? 1 : 0;
}

int32_t sana_reference_forced(void) {
    pthread_once(&probe_once, probe);
    return g_force_reference;
}

const sana_kernel_set *sana_kernels(void) {
    pthread_once(&probe_once, probe);
    if (g_force_reference) return &reference_set;
    return selected_set ? selected_set : probed_set;
}

static const sana_kernel_set *available_sets(int i) {
    static const sana_kernel_set *const sets[] = {
#if defined(__x86_64__) || defined(_M_X64)
        &sana_kernels_avx512_bf16, &sana_kernels_avx512, &sana_kernels_avx2,
#elif defined(__aarch64__)
        &sana_kernels_neon_dot, &sana_kernels_neon,
#endif
        &reference_set};
    return i < (int)(sizeof sets / sizeof sets[0]) ? sets[i] : NULL;
}

static int set_supported(const sana_kernel_set *ks) {
#if defined(__x86_64__) || defined(_M_X64)
    if (ks == &sana_kernels_avx512_bf16) return sana_cpu_has_avx512bf16();
    if (ks == &sana_kernels_avx512) return sana_cpu_has_avx512vnni();
    if (ks == &sana_kernels_avx2) return sana_cpu_has_avx2();
#elif defined(__aarch64__)
    if (ks == &sana_kernels_neon_dot) return sana_cpu_has_dotprod();
#endif
    return 1;
}

int32_t sana_select_kernel_family(const char *name) {
    pthread_once(&probe_once, probe);
    if (!name || !*name) {
        selected_set = NULL;
        return 1;
    }
    for (int i = 0; available_sets(i); i++) {
        const sana_kernel_set *ks = available_sets(i);
        if (strcmp(ks->name, name) == 0 && set_supported(ks)) {
            selected_set = ks;
            return 1;
        }
    }
    return 0;
}

const char *sana_kernel_family(void) { return sana_kernels()->name; }

/// 1 when `type` is int8/int4 and `ks` has a SIMD product for it.
static int has_qgemm(const sana_kernel_set *ks, int32_t type) {
    return (type == SANA_TYPE_Q8 || type == SANA_TYPE_Q4) && ks->qgemm[type] != NULL;
}

int32_t sana_linear_has_kernel(int32_t type) {
    const sana_kernel_set *ks = sana_kernels();
    if (has_qgemm(ks, type)) return 1;
    if (type == SANA_TYPE_BF16) return ks->bgemm != NULL;
    return 0;
}

// Rows of activations prepared (quantized / rounded to bf16) at a time: at least MCHUNK, and up to about
// CHUNK_BYTES of prepared activations, so each weight block is reused across many rows and the two parallel
// phases (prepare, multiply) are long compared with the pool's hand-off.
#ifndef MCHUNK
#define MCHUNK 512
#endif
#ifndef CHUNK_BYTES
#define CHUNK_BYTES ((int64_t)1 << 20)
#endif
// Rows per work item when the weight blocks alone do not give every thread enough work.
#define MSUB 48
// Largest bf16 weight repacked once per call for all row chunks (bytes; larger ones are repacked per tile).
#define BPACK_MAX_BYTES ((int64_t)16 << 20)

/// Where activation rows come from: rows of a row-major matrix x [m, k], or the patch rows of a convolution of x
/// (sana_conv2d), gathered one at a time into a per-thread buffer.
typedef struct {
    const float *x;
    const sana_conv_shape *conv;  // NULL: plain rows
    int64_t oh, ow;
    int64_t row0;                 // first row of the current chunk
} row_source;

/// Row i of the current chunk: a pointer into x, or the gathered patch in `buf` [k].
static const float *source_row(const row_source *src, int64_t i, int64_t k, float *buf) {
    if (!src->conv) return src->x + (src->row0 + i) * k;
    sana_patch_row(src->x, src->conv, src->oh, src->ow, src->row0 + i, buf);
    return buf;
}

typedef struct {
    const sana_kernel_set *ks;
    row_source src;
    sana_qgemm_args q;
    sana_bgemm_args bf;
    int64_t nblocks, tile_blocks, tiles, msub;
} job;

/// Per-thread buffer for one gathered patch row (NULL for plain rows, or when it cannot be allocated).
static float *patch_buffer(const job *j, int64_t k, int *failed) {
    if (!j->src.conv) return NULL;
    float *buf = (float *)sana_scratch(7, (size_t)k * 4);
    if (!buf) *failed = 1;
    return buf;
}

static void quantize_range(void *ctx, int64_t i0, int64_t i1) {
    job *j = (job *)ctx;
    int failed = 0;
    float *buf = patch_buffer(j, j->q.k, &failed);
    // A worker that cannot get k floats leaves its rows unprepared, like the kernels' own scratch (bgemm); the
    // calling thread's buffer is checked before the call.
    if (failed) return;
    for (int64_t i = i0; i < i1; i++)
        j->ks->quantize(source_row(&j->src, i, j->q.k, buf), 1, j->q.k, j->q.g, (int8_t *)j->q.xq + i * j->q.kp,
                        (float *)j->q.xs + i * j->q.ng, (int32_t *)j->q.xsum + i * j->q.ng);
}

static void bf16_range(void *ctx, int64_t i0, int64_t i1) {
    job *j = (job *)ctx;
    void (*round)(const float *, int64_t, uint16_t *) = j->ks->round_bf16 ? j->ks->round_bf16 : sana_round_bf16;
    if (j->bf.taps) {
        // Convolution patches in tap-major order: each tap is one input pixel's c contiguous channels, rounded
        // straight into the panel (no f32 patch, no scatter).
        const int64_t c = j->bf.k / j->bf.taps;
        for (int64_t i = i0; i < i1; i++) {
            uint16_t *dst = (uint16_t *)j->bf.xb + i * j->bf.kp2;
            for (int64_t tap = 0; tap < j->bf.taps; tap++) {
                const float *px = sana_tap_source(j->src.x, j->src.conv, j->src.oh, j->src.ow, j->src.row0 + i, tap);
                if (px) round(px, c, dst + tap * c);
                else memset(dst + tap * c, 0, (size_t)c * 2);
            }
            if (j->bf.kp2 > j->bf.k) dst[j->bf.k] = 0;
        }
        return;
    }
    int failed = 0;
    float *buf = patch_buffer(j, j->bf.k, &failed);
    if (failed) return;
    for (int64_t i = i0; i < i1; i++) {
        const float *src = source_row(&j->src, i, j->bf.k, buf);
        uint16_t *dst = (uint16_t *)j->bf.xb + i * j->bf.kp2;
        round(src, j->bf.k, dst);
        if (j->bf.kp2 > j->bf.k) dst[j->bf.k] = 0;
    }
}

/// Work item i = (weight tile t, row slice s), tiles major so each thread walks its own weight tiles.
static void item_bounds(const job *j, int64_t i, int64_t m, int64_t *m0, int64_t *m1, int64_t *b0, int64_t *b1) {
    int64_t t = i / j->msub, s = i % j->msub;
    *b0 = t * j->tile_blocks;
    *b1 = *b0 + j->tile_blocks < j->nblocks ? *b0 + j->tile_blocks : j->nblocks;
    *m0 = m * s / j->msub;
    *m1 = m * (s + 1) / j->msub;
}

static void qgemm_range(void *ctx, int64_t i0, int64_t i1) {
    job *j = (job *)ctx;
    sana_qgemm_fn fn = j->ks->qgemm[j->q.type] ? j->ks->qgemm[j->q.type] : sana_qgemm_ref;
    for (int64_t i = i0; i < i1; i++) {
        int64_t m0, m1, b0, b1;
        item_bounds(j, i, j->q.m, &m0, &m1, &b0, &b1);
        fn(&j->q, m0, m1, b0, b1);
    }
}

static void bgemm_range(void *ctx, int64_t i0, int64_t i1) {
    job *j = (job *)ctx;
    for (int64_t i = i0; i < i1; i++) {
        int64_t m0, m1, b0, b1;
        item_bounds(j, i, j->bf.m, &m0, &m1, &b0, &b1);
        j->ks->bgemm(&j->bf, m0, m1, b0, b1);
    }
}

static void bpack_range(void *ctx, int64_t t0, int64_t t1) {
    job *j = (job *)ctx;
    j->ks->bpack(&j->bf, t0, t1, (uint16_t *)j->bf.wt);
}

static void plan(job *j, int64_t m, int64_t n) {
    j->nblocks = (n + SANA_ROW_BLOCK - 1) / SANA_ROW_BLOCK;
    j->tile_blocks = 2;  // kernels take 32 output columns at a time
    j->tiles = (j->nblocks + j->tile_blocks - 1) / j->tile_blocks;
    int64_t threads = sana_pool_threads();
    j->msub = 1;
    if (j->tiles < 8 * threads) {  // few weight tiles: also split the rows
        j->msub = (m + MSUB - 1) / MSUB;
        if (j->msub > 4 * threads) j->msub = 4 * threads;
        if (j->msub < 1) j->msub = 1;
    }
}

static int64_t chunk_rows(int64_t m, int64_t row_bytes) {
    int64_t c = CHUNK_BYTES / (row_bytes > 0 ? row_bytes : 1);
    if (c < MCHUNK) c = MCHUNK;
    return m < c ? m : c;
}

/// The integer products y[p] = rows of j->src · W[p]ᵀ + bias[p], p < count, all weights of `type` (which has a
/// qgemm kernel in j->ks): each chunk of rows is quantized once, then multiplied by every weight in turn. Returns 0,
/// having written nothing, when scratch memory could not be had.
static int qgemm_products(job *j, int64_t m, int64_t k, int32_t type, int32_t count, const void *const *w,
                          const int64_t *n, const float *const *bias, float *const *y, int32_t silu) {
    const int64_t g = sana_qgroup(type), ng = sana_groups(k, g), kp = sana_kpad(k);
    const int64_t chunk = chunk_rows(m, kp), row0 = j->src.row0;
    // Scratch of the calling thread; workers only read it during this call.
    int8_t *xq = (int8_t *)sana_scratch(0, (size_t)(chunk * kp));
    float *xs = (float *)sana_scratch(1, (size_t)(chunk * ng) * 4);
    int32_t *xsum = (int32_t *)sana_scratch(2, (size_t)(chunk * ng) * 4);
    if (!xq || !xs || !xsum) return 0;
    const size_t block_bytes = sana_type_traits_of(type)->block_bytes(k);
    for (int64_t r0 = 0; r0 < m; r0 += chunk) {
        const int64_t rows = m - r0 < chunk ? m - r0 : chunk;
        j->src.row0 = row0 + r0;
        j->q = (sana_qgemm_args){type, rows, k, kp, 0, g, ng, xq, xs, xsum, NULL, block_bytes, NULL, NULL, silu};
        sana_parallel_for(rows, quantize_range, j);
        for (int32_t p = 0; p < count; p++) {
            j->q.n = n[p];
            j->q.w = (const uint8_t *)w[p];
            j->q.bias = bias[p];
            j->q.y = y[p] + r0 * n[p];
            plan(j, rows, n[p]);
            sana_parallel_for(j->tiles * j->msub, qgemm_range, j);
        }
    }
    return 1;
}

/// The SIMD product over all rows of `src`; returns 0 when this type has no SIMD kernel here (or scratch memory
/// could not be had), having written nothing.
static int linear_simd(const row_source *src, int64_t m, int64_t k, int32_t type, const void *w, int64_t n,
                       const float *bias, float *y) {
    const sana_kernel_set *ks = sana_kernels();
    job j = {.ks = ks, .src = *src};
    if (src->conv && !sana_scratch(7, (size_t)k * 4)) return 0;  // the calling thread's patch buffer
    if (has_qgemm(ks, type))
        return qgemm_products(&j, m, k, type, 1, &w, &n, &bias, &y, 0);
    if (type == SANA_TYPE_BF16 && ks->bgemm) {
        const int64_t kp2 = (k + 1) & ~(int64_t)1;
        const int64_t chunk = chunk_rows(m, kp2 * 2);
        uint16_t *xb = (uint16_t *)sana_scratch(3, (size_t)(chunk * kp2) * 2);
        if (!xb) return 0;
        // Convolutions use tap-major patches (a lossless permutation of K for bf16; the repack follows it).
        const int64_t taps = src->conv ? (int64_t)src->conv->kernel * src->conv->kernel : 0;
        j.bf = (sana_bgemm_args){chunk, k, kp2, n, taps, xb, (const uint16_t *)w, NULL, bias, y};
        // Weights repacked once for every chunk and row slice when that saves repacking (several chunks, or few
        // tiles split by rows) and the copy is small; otherwise each work item repacks its tile.
        plan(&j, chunk, n);
        const int64_t tiles32 = (n + 31) / 32, packed = tiles32 * kp2 * 32 * 2;
        if (ks->bpack && (m > chunk || j.msub > 1) && packed <= BPACK_MAX_BYTES) {
            j.bf.wt = (const uint16_t *)sana_scratch(6, (size_t)packed);
            if (j.bf.wt) sana_parallel_for(tiles32, bpack_range, &j);
        }
        for (int64_t r0 = 0; r0 < m; r0 += chunk) {
            int64_t rows = m - r0 < chunk ? m - r0 : chunk;
            j.src.row0 = src->row0 + r0;
            j.bf.m = rows;
            j.bf.y = y + r0 * n;
            sana_parallel_for(rows, bf16_range, &j);
            plan(&j, rows, n);
            sana_parallel_for(j.tiles * j.msub, bgemm_range, &j);
        }
        return 1;
    }
    return 0;
}

void sana_linear(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                 float *y) {
    if (m <= 0 || n <= 0 || k <= 0 || !sana_type_traits_of(type)) return;
    row_source src = {x, NULL, 0, 0, 0};
    if (!linear_simd(&src, m, k, type, w, n, bias, y)) sana_linear_ref(x, m, k, type, w, n, bias, y);
}

/// Products of one input: each 512-row chunk of x is quantized once and multiplied by every weight in turn, which
/// is what `count` separate sana_linear calls compute (same quantized rows, same kernels: bit-identical) minus
/// count − 1 quantization passes over x.
void sana_linear_shared(const float *x, int64_t m, int64_t k, int32_t type, int32_t count, const void *const *w,
                        const int64_t *n, const float *const *bias, float *const *y) {
    if (m <= 0 || k <= 0 || count <= 0 || !sana_type_traits_of(type)) return;
    const sana_kernel_set *ks = sana_kernels();
    int shared = has_qgemm(ks, type);
    for (int32_t p = 0; p < count; p++) shared = shared && n[p] > 0;
    job j = {.ks = ks, .src = {.x = x}};
    if (shared && qgemm_products(&j, m, k, type, count, w, n, bias, y, 0)) return;
    for (int32_t p = 0; p < count; p++) sana_linear(x, m, k, type, w[p], n[p], bias[p], y[p]);
}

void sana_linear_silu(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                      float *y) {
    if (m <= 0 || n <= 0 || k <= 0 || !sana_type_traits_of(type)) return;
    const sana_kernel_set *ks = sana_kernels();
    if (has_qgemm(ks, type) && ks->qgemm_silu) {
        job j = {.ks = ks, .src = {.x = x}};
        if (qgemm_products(&j, m, k, type, 1, &w, &n, &bias, &y, 1)) return;
    }
    sana_linear(x, m, k, type, w, n, bias, y);
    sana_dit_silu(y, m * n);
}

/// Output pixels per band of the tap-major quantized convolution: the input rows a band reads are quantized once,
/// so the band is large against the kernel's k − 1 extra rows (~3 % at 1024 wide) yet its quantized input stays a
/// few MB (reused, not a fresh full-frame map).
#define TAP_BAND_PIXELS ((int64_t)1 << 15)
static int64_t g_tap_band_pixels = TAP_BAND_PIXELS;

void sana_set_conv_band_pixels(int64_t pixels) { g_tap_band_pixels = pixels > 0 ? pixels : TAP_BAND_PIXELS; }

/// One band of the tap-major quantized convolution: input rows [lo, lo + rows) of image n quantized per (pixel,
/// group) into q [rows·w][c], qs / qsum [rows·w][c / g].
typedef struct {
    const sana_kernel_set *ks;
    const float *x;
    const sana_conv_shape *s;
    int64_t oh, ow, g, n, lo;
    int8_t *q;
    float *qs;
    int32_t *qsum;
    sana_qgemm_args a;
    int64_t row0;  // first output pixel of the current chunk
    job gemm;
} tap_job;

static void tap_quantize_range(void *ctx, int64_t p0, int64_t p1) {
    tap_job *t = (tap_job *)ctx;
    const int64_t c = t->s->c, ng1 = c / t->g;
    const float *x = t->x + ((t->n * t->s->h + t->lo) * t->s->w + p0) * c;  // [p1 − p0][c]
    t->ks->quantize(x, p1 - p0, c, t->g, t->q + p0 * c, t->qs + p0 * ng1, t->qsum + p0 * ng1);
}

/// Taps [t0, t0 + count) of a patch row in the zero padding: zeros, scale 0 and sum 0 (what the quantizer gives an
/// all-zero group).
static inline void tap_zero(int8_t *q, float *qs, int32_t *qsum, int64_t t0, int64_t count, int64_t c, int64_t ng1) {
    if (count <= 0) return;
    memset(q + t0 * c, 0, (size_t)(count * c));
    memset(qs + t0 * ng1, 0, (size_t)(count * ng1) * 4);
    memset(qsum + t0 * ng1, 0, (size_t)(count * ng1) * 4);
}

/// Taps [t0, t0 + count) of a patch row from `count` consecutive band pixels starting at b.
static inline void tap_copy(const tap_job *t, int8_t *q, float *qs, int32_t *qsum, int64_t t0, int64_t count,
                            int64_t b) {
    const int64_t c = t->s->c, ng1 = c / t->g;
    memcpy(q + t0 * c, t->q + b * c, (size_t)(count * c));
    memcpy(qs + t0 * ng1, t->qs + b * ng1, (size_t)(count * ng1) * 4);
    memcpy(qsum + t0 * ng1, t->qsum + b * ng1, (size_t)(count * ng1) * 4);
}

/// Patch rows [i0, i1) of the chunk: tap t of a row is its input pixel's quantized channels, scales and sums
/// (zeros, scale 0 and sum 0 in the padding, as the quantizer gives an all-zero group).
/// Stride 1 without up-sampling (every ResBlock conv): the in-frame taps of one kernel row read consecutive input
/// pixels, stored as consecutive rows of the band, so each kernel row is one copy (3 memcpy per row instead of 3
/// per tap); the bytes written are the same.
static void tap_gather_range(void *ctx, int64_t i0, int64_t i1) {
    tap_job *t = (tap_job *)ctx;
    const sana_conv_shape *s = t->s;
    const int64_t c = s->c, ng1 = c / t->g, kk = s->kernel, taps = kk * kk, pad = s->pad;
    const int64_t band0 = (t->n * s->h + t->lo) * s->w;  // stored pixel index of the band's first pixel
    const int rows_contiguous = s->stride == 1 && s->upsample == 1;
    for (int64_t i = i0; i < i1; i++) {
        int8_t *q = (int8_t *)t->a.xq + i * t->a.kp;     // [taps][c]
        float *qs = (float *)t->a.xs + i * t->a.ng;      // [taps][ng1]
        int32_t *qsum = (int32_t *)t->a.xsum + i * t->a.ng;
        if (rows_contiguous) {
            const int64_t pixel = t->row0 + i;
            const int64_t n = pixel / (t->oh * t->ow), oy = pixel / t->ow % t->oh, ox = pixel % t->ow;
            // in-frame kernel columns [kx0, kx1): input columns ox + kx − pad inside [0, w)
            const int64_t kx0 = ox < pad ? pad - ox : 0, kx1 = s->w + pad - ox < kk ? s->w + pad - ox : kk;
            for (int64_t ky = 0; ky < kk; ky++) {
                const int64_t iy = oy + ky - pad, t0 = ky * kk;
                if (iy < 0 || iy >= s->h || kx1 <= kx0) {
                    tap_zero(q, qs, qsum, t0, kk, c, ng1);
                    continue;
                }
                tap_zero(q, qs, qsum, t0, kx0, c, ng1);
                // inside the band by construction of lo / rows
                tap_copy(t, q, qs, qsum, t0 + kx0, kx1 - kx0, (n * s->h + iy) * s->w + ox + kx0 - pad - band0);
                tap_zero(q, qs, qsum, t0 + kx1, kk - kx1, c, ng1);
            }
            continue;
        }
        for (int64_t tap = 0; tap < taps; tap++) {
            const int64_t p = sana_tap_pixel(s, t->oh, t->ow, t->row0 + i, tap);
            if (p < 0) tap_zero(q, qs, qsum, tap, 1, c, ng1);
            else tap_copy(t, q, qs, qsum, tap, 1, p - band0);
        }
    }
}

/// The tap-major int8/int4 convolution (see sana_conv2d_ordered); returns 0, having written nothing, when it does
/// not apply (no SIMD kernel, c % group ≠ 0) or memory could not be had.
static int conv_tap_major_q(const float *x, const sana_conv_shape *s, int64_t oh, int64_t ow, int32_t type,
                            const void *w, int64_t cout, const float *bias, float *y) {
    const sana_kernel_set *ks = sana_kernels();
    if (!has_qgemm(ks, type)) return 0;
    const int64_t g = sana_qgroup(type), c = s->c;
    if (c % g != 0) return 0;
    const int64_t taps = (int64_t)s->kernel * s->kernel, k = taps * c, ng = k / g, up = s->upsample;
    // Output rows per band, and the stored input rows a band can read: virtual rows span (rows − 1)·stride + kernel,
    // which cover at most that / up + 1 stored rows.
    int64_t band = g_tap_band_pixels / ow;
    if (band < 1) band = 1;
    if (band > oh) band = oh;
    int64_t in_rows = ((band - 1) * s->stride + s->kernel) / up + 2;
    if (in_rows > s->h) in_rows = s->h;
    int8_t *bq = (int8_t *)malloc((size_t)(in_rows * s->w * c));
    float *bs = (float *)malloc((size_t)(in_rows * s->w * (c / g)) * 4);
    int32_t *bsum = (int32_t *)malloc((size_t)(in_rows * s->w * (c / g)) * 4);
    const int64_t chunk = chunk_rows(band * ow, k);
    int8_t *xq = (int8_t *)sana_scratch(0, (size_t)(chunk * k));
    float *xs = (float *)sana_scratch(1, (size_t)(chunk * ng) * 4);
    int32_t *xsum = (int32_t *)sana_scratch(2, (size_t)(chunk * ng) * 4);
    if (!bq || !bs || !bsum || !xq || !xs || !xsum) {
        free(bq);
        free(bs);
        free(bsum);
        return 0;
    }
    tap_job t;
    memset(&t, 0, sizeof t);
    t.ks = ks;
    t.x = x;
    t.s = s;
    t.oh = oh;
    t.ow = ow;
    t.g = g;
    t.q = bq;
    t.qs = bs;
    t.qsum = bsum;
    t.gemm.ks = ks;
    const size_t block_bytes = sana_type_traits_of(type)->block_bytes(k);
    for (int64_t n = 0; n < s->b; n++) {
        for (int64_t oy0 = 0; oy0 < oh; oy0 += band) {
            const int64_t oy1 = oy0 + band < oh ? oy0 + band : oh;
            // Virtual input rows [v0, v1] read by output rows [oy0, oy1), clamped to the grid, then stored rows.
            int64_t v0 = oy0 * s->stride - s->pad, v1 = (oy1 - 1) * s->stride - s->pad + s->kernel - 1;
            if (v0 < 0) v0 = 0;
            if (v1 > s->h * up - 1) v1 = s->h * up - 1;
            t.n = n;
            t.lo = v0 / up;
            const int64_t rows = v1 >= v0 ? v1 / up - t.lo + 1 : 0;  // ≤ in_rows; 0: every tap in the padding
            if (rows > 0) sana_parallel_for(rows * s->w, tap_quantize_range, &t);
            const int64_t p0 = (n * oh + oy0) * ow, p1 = (n * oh + oy1) * ow;
            for (int64_t r0 = p0; r0 < p1; r0 += chunk) {
                const int64_t m = p1 - r0 < chunk ? p1 - r0 : chunk;
                t.row0 = r0;
                t.a = (sana_qgemm_args){type, m, k, k, cout, g, ng, xq, xs, xsum, (const uint8_t *)w, block_bytes, bias,
                                        y + r0 * cout};
                sana_parallel_for(m, tap_gather_range, &t);
                t.gemm.q = t.a;
                plan(&t.gemm, m, cout);
                sana_parallel_for(t.gemm.tiles * t.gemm.msub, qgemm_range, &t.gemm);
            }
        }
    }
    free(bq);
    free(bs);
    free(bsum);
    return 1;
}

void sana_conv2d_ordered(const float *x, const sana_conv_shape *s, int32_t type, const void *w, int32_t order,
                         int64_t cout, const float *bias, float *y) {
    const int64_t oh = sana_conv_out_height(s), ow = sana_conv_out_width(s);
    const int64_t k = s->c * s->kernel * s->kernel, m = s->b * oh * ow;
    if (oh == 0 || ow == 0 || cout <= 0 || !sana_type_traits_of(type)) return;
    if (order == SANA_CONV_TAP_MAJOR) {
        if (conv_tap_major_q(x, s, oh, ow, type, w, cout, bias, y)) return;
    } else {
        row_source src = {x, s, oh, ow, 0};
        if (linear_simd(&src, m, k, type, w, cout, bias, y)) return;
    }
    // No SIMD path: im2col a band of output rows at a time (about CHUNK_BYTES of patches), then sana_linear.
    int64_t band = CHUNK_BYTES / (ow * k * 4);
    if (band < 1) band = 1;
    // Not a scratch slot: sana_linear's own kernels use them all (slot 6 holds the repacked bf16 weight).
    float *cols = (float *)malloc((size_t)(band * ow * k) * 4);
    if (!cols) return;
    for (int64_t r0 = 0; r0 < s->b * oh; r0 += band) {
        int64_t rows = s->b * oh - r0 < band ? s->b * oh - r0 : band;
        sana_im2col_rows_ordered(x, s, order, r0, rows, cols);
        sana_linear(cols, rows * ow, k, type, w, cout, bias, y + r0 * ow * cout);
    }
    free(cols);
}

void sana_conv2d(const float *x, const sana_conv_shape *s, int32_t type, const void *w, int64_t cout,
                 const float *bias, float *y) {
    sana_conv2d_ordered(x, s, type, w, SANA_CONV_REFERENCE, cout, bias, y);
}
