// Hot non-GEMM operations of the three networks, portable C written so the compiler vectorizes the inner
// loops (channels are contiguous: channels-last), parallel over rows with the persistent pool.
// Reductions use 8 partial sums (vectorizable, and closer to torch's blocked summation than one running sum).
#include "internal.h"

#include <math.h>
#include <string.h>

/// Work per pool item below which an operation runs on the calling thread only.
#define SMALL_WORK 32768

static void run_rows(int64_t rows, int64_t work_per_row, sana_range_fn fn, void *ctx) {
    if (rows * work_per_row < SMALL_WORK) fn(ctx, 0, rows);
    else sana_parallel_for(rows, fn, ctx);
}

static float sum8(const float *x, int64_t c, float shift, int squares) {
    float p[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= c; j += 8)
        for (int l = 0; l < 8; l++) {
            float d = x[j + l] - shift;
            p[l] += squares ? d * d : d;
        }
    for (; j < c; j++) {
        float d = x[j] - shift;
        p[j & 7] += squares ? d * d : d;
    }
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

typedef struct {
    float *x;
    int64_t c;
    const float *weight, *bias;
    float eps;
} norm_ctx;

static void affine(float *x, int64_t c, float shift, float inv, const float *weight, const float *bias) {
    if (weight && bias) for (int64_t j = 0; j < c; j++) x[j] = (x[j] - shift) * inv * weight[j] + bias[j];
    else if (weight) for (int64_t j = 0; j < c; j++) x[j] = (x[j] - shift) * inv * weight[j];
    else if (bias) for (int64_t j = 0; j < c; j++) x[j] = (x[j] - shift) * inv + bias[j];
    else for (int64_t j = 0; j < c; j++) x[j] = (x[j] - shift) * inv;
}

static void rms_rows(void *p, int64_t r0, int64_t r1) {
    norm_ctx *n = (norm_ctx *)p;
    for (int64_t r = r0; r < r1; r++) {
        float *x = n->x + r * n->c;
        float inv = 1.0f / sqrtf(sum8(x, n->c, 0.0f, 1) / (float)n->c + n->eps);
        affine(x, n->c, 0.0f, inv, n->weight, n->bias);
    }
}

static void ln_rows(void *p, int64_t r0, int64_t r1) {
    norm_ctx *n = (norm_ctx *)p;
    for (int64_t r = r0; r < r1; r++) {
        float *x = n->x + r * n->c;
        float mean = sum8(x, n->c, 0.0f, 0) / (float)n->c;
        float inv = 1.0f / sqrtf(sum8(x, n->c, mean, 1) / (float)n->c + n->eps);
        affine(x, n->c, mean, inv, n->weight, n->bias);
    }
}

void sana_rms_norm(float *x, int64_t rows, int64_t c, const float *weight, const float *bias, float eps) {
    if (rows <= 0 || c <= 0) return;
    norm_ctx n = {x, c, weight, bias, eps};
    run_rows(rows, c, rms_rows, &n);
}

void sana_layer_norm(float *x, int64_t rows, int64_t c, const float *weight, const float *bias, float eps) {
    if (rows <= 0 || c <= 0) return;
    norm_ctx n = {x, c, weight, bias, eps};
    run_rows(rows, c, ln_rows, &n);
}

static void softmax_rows(void *p, int64_t r0, int64_t r1) {
    norm_ctx *n = (norm_ctx *)p;
    for (int64_t r = r0; r < r1; r++) {
        float *x = n->x + r * n->c;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n->c; j++) mx = fmaxf(mx, x[j]);
        for (int64_t j = 0; j < n->c; j++) x[j] = expf(x[j] - mx);
        float inv = 1.0f / sum8(x, n->c, 0.0f, 0);
        for (int64_t j = 0; j < n->c; j++) x[j] *= inv;
    }
}

void sana_softmax(float *x, int64_t rows, int64_t c) {
    if (rows <= 0 || c <= 0) return;
    norm_ctx n = {x, c, NULL, NULL, 0};
    run_rows(rows, c, softmax_rows, &n);
}

/// Wider vectors for the elementwise and convolution loops on x86-64: the compiler builds AVX-512 / AVX2 / baseline
/// copies and the loader picks one per CPU. Each such function starts with SANA_CONTRACT_OFF, so every copy rounds like
/// the baseline build (products and sums stay separate operations, no FMA): the copies are bit-identical.
#if defined(__x86_64__) && defined(__clang__)
#define WIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE_CLONES
#endif

typedef struct {
    float *x;
    int32_t act;
} act_ctx;

#define ACT_CHUNK 4096

float sana_exp_vec_for_testing(float x) { return exp_vec(x); }

WIDE_CLONES static void act_chunks(void *p, int64_t c0, int64_t c1) {
    SANA_CONTRACT_OFF
    act_ctx *a = (act_ctx *)p;
    float *x = a->x + c0 * ACT_CHUNK;
    int64_t count = (c1 - c0) * ACT_CHUNK;
    switch (a->act) {
        case SANA_ACT_SILU:
            for (int64_t i = 0; i < count; i++) x[i] = x[i] / (1.0f + exp_vec(-x[i]));
            break;
        case SANA_ACT_RELU:
            for (int64_t i = 0; i < count; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
            break;
        case SANA_ACT_GELU:
            for (int64_t i = 0; i < count; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
            break;
        case SANA_ACT_GELU_TANH:
            for (int64_t i = 0; i < count; i++) {
                float v = x[i];
                x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
            }
            break;
    }
}

void sana_activate(float *x, int64_t count, int32_t activation) {
    if (count <= 0) return;
    act_ctx a = {x, activation};
    int64_t full = count / ACT_CHUNK;
    run_rows(full, ACT_CHUNK * 8, act_chunks, &a);
    // Tail shorter than one chunk: a one-chunk call on a local copy.
    int64_t rest = count - full * ACT_CHUNK;
    if (rest > 0) {
        float tail[ACT_CHUNK] = {0};
        memcpy(tail, x + full * ACT_CHUNK, (size_t)rest * 4);
        act_ctx t = {tail, activation};
        act_chunks(&t, 0, 1);
        memcpy(x + full * ACT_CHUNK, tail, (size_t)rest * 4);
    }
}

typedef struct {
    const float *x, *weight, *bias;
    float *y;
    int64_t h, w, c;
    int32_t kernel, pad;
} conv_ctx;

/// Channels per sweep of the depthwise convolution: a sweep's accumulators (2 KB) stay in L1 and the k input
/// rows it reads (k·w·DW_BLOCK floats, 384 KB for the DC-AE's widest 64-pixel rows) in L2.
#define DW_BLOCK 512

/// Output pixel (n, oy, ox), channels [c0, c0 + cn): init (bias or 0) + Σ over the in-frame taps, (ky, kx) in
/// order, of x·weight. Per channel the same sequence of roundings as one pass over the whole output row per tap
/// (product and sum never fused into an FMA): bit-identical to the unblocked loop this replaced.
static inline void dw_pixel(const conv_ctx *k, int64_t n, int64_t oy, int64_t ox, int64_t ky0, int64_t ky1,
                            int64_t c0, int64_t cn) {
    SANA_CONTRACT_OFF  // inlined into dw_rows' target copies
    const int64_t h = k->h, w = k->w, c = k->c, kk = k->kernel, pad = k->pad;
    const int64_t kx0 = ox < pad ? pad - ox : 0, kx1 = w + pad - ox < kk ? w + pad - ox : kk;
    float acc[DW_BLOCK];
    for (int64_t j = 0; j < cn; j++) acc[j] = k->bias ? k->bias[c0 + j] : 0.0f;
    for (int64_t ky = ky0; ky < ky1; ky++)
        for (int64_t kx = kx0; kx < kx1; kx++) {
            const float *in = k->x + ((n * h + oy + ky - pad) * w + ox + kx - pad) * c + c0;  // [cn]
            const float *wt = k->weight + (ky * kk + kx) * c + c0;  // transposed weight [k·k][c]
            for (int64_t j = 0; j < cn; j++) acc[j] += in[j] * wt[j];
        }
    float *out = k->y + ((n * h + oy) * w + ox) * c + c0;
    for (int64_t j = 0; j < cn; j++) out[j] = acc[j];
}

/// Output rows (image n, row oy) of the depthwise convolution; rows index n·h + oy. The rows are swept one block
/// of DW_BLOCK channels at a time, each output pixel's block accumulated over its taps and stored once, so the
/// inputs a block reads come from L1/L2 for all k² taps and the next row's. (The loop this replaced updated the
/// whole output row once per tap and streamed every tap's inputs, all channels, from L3.)
WIDE_CLONES static void dw_rows(void *p, int64_t r0, int64_t r1) {
    const conv_ctx *k = (const conv_ctx *)p;
    const int64_t h = k->h, w = k->w, c = k->c, kk = k->kernel, pad = k->pad;
    for (int64_t c0 = 0; c0 < c; c0 += DW_BLOCK) {
        for (int64_t row = r0; row < r1; row++) {
            const int64_t n = row / h, oy = row % h;
            const int64_t ky0 = oy < pad ? pad - oy : 0, ky1 = h + pad - oy < kk ? h + pad - oy : kk;  // in-frame rows
            if (c0 + DW_BLOCK <= c)
                for (int64_t ox = 0; ox < w; ox++) dw_pixel(k, n, oy, ox, ky0, ky1, c0, DW_BLOCK);
            else
                for (int64_t ox = 0; ox < w; ox++) dw_pixel(k, n, oy, ox, ky0, ky1, c0, c - c0);
        }
    }
}

void sana_depthwise_conv2d(const float *x, int64_t b, int64_t h, int64_t w, int64_t c, const float *weight,
                           const float *bias, int32_t kernel, float *y) {
    if (b <= 0 || h <= 0 || w <= 0 || c <= 0 || kernel <= 0) return;
    // weight [c][k·k] transposed to [k·k][c] so the per-tap loop over contiguous channels vectorizes.
    const int64_t taps = (int64_t)kernel * kernel;
    float *wt = (float *)sana_scratch(6, (size_t)(taps * c) * 4);
    if (!wt) return;
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t t = 0; t < taps; t++) wt[t * c + ch] = weight[ch * taps + t];
    conv_ctx k = {x, wt, bias, y, h, w, c, kernel, kernel / 2};
    run_rows(b * h, w * c * kernel * kernel, dw_rows, &k);
}

int64_t sana_conv_out_height(const sana_conv_shape *s) {
    if (s->b <= 0 || s->h <= 0 || s->w <= 0 || s->c <= 0 || s->kernel <= 0 || s->stride <= 0 || s->pad < 0 ||
        s->upsample <= 0)
        return 0;
    int64_t span = s->h * s->upsample + 2 * (int64_t)s->pad - s->kernel;
    return span < 0 ? 0 : span / s->stride + 1;
}

int64_t sana_conv_out_width(const sana_conv_shape *s) {
    if (sana_conv_out_height(s) == 0) return 0;
    int64_t span = s->w * s->upsample + 2 * (int64_t)s->pad - s->kernel;
    return span < 0 ? 0 : span / s->stride + 1;
}

const float *sana_tap_source(const float *x, const sana_conv_shape *s, int64_t oh, int64_t ow, int64_t pixel,
                             int64_t tap) {
    const int64_t p = sana_tap_pixel(s, oh, ow, pixel, tap);
    return p < 0 ? NULL : x + p * s->c;  // [c]
}

void sana_patch_row(const float *x, const sana_conv_shape *s, int64_t oh, int64_t ow, int64_t pixel, float *dst) {
    const int64_t c = s->c, taps = (int64_t)s->kernel * s->kernel;
    for (int64_t tap = 0; tap < taps; tap++) {
        const float *src = sana_tap_source(x, s, oh, ow, pixel, tap);
        float *d = dst + tap;  // patch [c][k·k]: channel ch of this tap at d[ch·k²]
        if (!src) {
            for (int64_t ch = 0; ch < c; ch++) d[ch * taps] = 0.0f;
        } else if (taps == 9) {  // the 3×3 case, with a constant stride the compiler unrolls
            for (int64_t ch = 0; ch < c; ch++) d[ch * 9] = src[ch];
        } else {
            for (int64_t ch = 0; ch < c; ch++) d[ch * taps] = src[ch];
        }
    }
}

/// The tap-major patch [k·k][c] of output pixel `pixel`: tap t is input pixel's c contiguous channels (or zeros).
static void tap_major_patch_row(const float *x, const sana_conv_shape *s, int64_t oh, int64_t ow, int64_t pixel,
                                float *dst) {
    const int64_t c = s->c, taps = (int64_t)s->kernel * s->kernel;
    for (int64_t tap = 0; tap < taps; tap++) {
        const float *src = sana_tap_source(x, s, oh, ow, pixel, tap);
        if (src) memcpy(dst + tap * c, src, (size_t)c * 4);
        else memset(dst + tap * c, 0, (size_t)c * 4);
    }
}

typedef struct {
    const float *x;
    const sana_conv_shape *s;
    int32_t order;
    int64_t oh, ow, row0;
    float *cols;
} im2col_ctx;

/// Output rows [r0, r1) of the band (row index n·oh + oy relative to row0): ow patches each.
static void im2col_range(void *p, int64_t r0, int64_t r1) {
    const im2col_ctx *k = (const im2col_ctx *)p;
    const int64_t patch = k->s->c * k->s->kernel * k->s->kernel;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t ox = 0; ox < k->ow; ox++) {
            const int64_t pixel = (k->row0 + r) * k->ow + ox;
            float *dst = k->cols + (r * k->ow + ox) * patch;
            if (k->order == SANA_CONV_TAP_MAJOR) tap_major_patch_row(k->x, k->s, k->oh, k->ow, pixel, dst);
            else sana_patch_row(k->x, k->s, k->oh, k->ow, pixel, dst);
        }
}

void sana_im2col_rows_ordered(const float *x, const sana_conv_shape *s, int32_t order, int64_t row0, int64_t rows,
                              float *cols) {
    const int64_t oh = sana_conv_out_height(s), ow = sana_conv_out_width(s);
    if (oh == 0 || ow == 0 || row0 < 0 || rows <= 0 || row0 + rows > s->b * oh) return;
    im2col_ctx k = {x, s, order, oh, ow, row0, cols};
    run_rows(rows, ow * s->c * s->kernel * s->kernel, im2col_range, &k);
}

void sana_im2col_rows(const float *x, const sana_conv_shape *s, int64_t row0, int64_t rows, float *cols) {
    sana_im2col_rows_ordered(x, s, SANA_CONV_REFERENCE, row0, rows, cols);
}

void sana_im2col(const float *x, int64_t b, int64_t h, int64_t w, int64_t c, int32_t kernel, int32_t pad,
                 float *cols) {
    sana_conv_shape s = {b, h, w, c, kernel, 1, pad, 1};
    int64_t oh = sana_conv_out_height(&s);
    if (oh > 0) sana_im2col_rows(x, &s, 0, b * oh, cols);
}

typedef struct {
    float *x;
    const float *a;
} add_ctx;

#define ADD_CHUNK 16384

WIDE_CLONES static void add_chunks(void *p, int64_t c0, int64_t c1) {
    SANA_CONTRACT_OFF
    add_ctx *a = (add_ctx *)p;
    for (int64_t i = c0 * ADD_CHUNK; i < c1 * ADD_CHUNK; i++) a->x[i] += a->a[i];
}

void sana_add(float *x, const float *a, int64_t count) {
    if (count <= 0) return;
    add_ctx ctx = {x, a};
    int64_t full = count / ADD_CHUNK;
    run_rows(full, ADD_CHUNK / 4, add_chunks, &ctx);
    for (int64_t i = full * ADD_CHUNK; i < count; i++) x[i] += a[i];
}

typedef struct {
    const float *x;
    float *y;
    int64_t hidden;
} glu_ctx;

WIDE_CLONES static void glu_rows(void *p, int64_t r0, int64_t r1) {
    SANA_CONTRACT_OFF
    const glu_ctx *g = (const glu_ctx *)p;
    for (int64_t r = r0; r < r1; r++) {
        const float *a = g->x + r * 2 * g->hidden, *gate = a + g->hidden;  // [hidden] value, [hidden] gate
        float *y = g->y + r * g->hidden;
        for (int64_t j = 0; j < g->hidden; j++) y[j] = a[j] * (gate[j] / (1.0f + exp_vec(-gate[j])));
    }
}

void sana_glu_silu(const float *x, int64_t rows, int64_t hidden, float *y) {
    if (rows <= 0 || hidden <= 0) return;
    glu_ctx g = {x, y, hidden};
    run_rows(rows, hidden * 8, glu_rows, &g);
}

typedef struct {
    float *out;
    const float *x;
    int64_t h, w, cin, cout;
} shuffle_ctx;

/// Input rows (image n, row y) r0..r1: each writes output rows 2y and 2y + 1.
static void shuffle_rows(void *p, int64_t r0, int64_t r1) {
    const shuffle_ctx *k = (const shuffle_ctx *)p;
    const int64_t repeats = 4 * k->cout / k->cin;
    for (int64_t row = r0; row < r1; row++) {
        const int64_t n = row / k->h, y = row % k->h;
        for (int64_t xx = 0; xx < k->w; xx++) {
            const float *src = k->x + ((n * k->h + y) * k->w + xx) * k->cin;  // [cin]
            for (int64_t i = 0; i < 2; i++)
                for (int64_t j = 0; j < 2; j++) {
                    float *dst = k->out + ((n * 2 * k->h + 2 * y + i) * 2 * k->w + 2 * xx + j) * k->cout;  // [cout]
                    // src index (4c + 2i + j) / repeats; the common ratios spelled out as strided loads (no
                    // division per element) so the loop vectorizes: repeats 2 (the DC-AE's interpolate up blocks,
                    // cin = 2·cout) reads 2c + i, repeats 4 reads c, repeats 1 reads 4c + 2i + j.
                    if (repeats == 2)
                        for (int64_t c = 0; c < k->cout; c++) dst[c] += src[2 * c + i];
                    else if (repeats == 4)
                        for (int64_t c = 0; c < k->cout; c++) dst[c] += src[c];
                    else if (repeats == 1)
                        for (int64_t c = 0; c < k->cout; c++) dst[c] += src[4 * c + 2 * i + j];
                    else
                        for (int64_t c = 0; c < k->cout; c++) dst[c] += src[(c * 4 + i * 2 + j) / repeats];
                }
        }
    }
}

void sana_add_shuffled_repeat(float *out, const float *x, int64_t b, int64_t h, int64_t w, int64_t cin, int64_t cout) {
    if (b <= 0 || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 || (4 * cout) % cin != 0) return;
    shuffle_ctx k = {out, x, h, w, cin, cout};
    run_rows(b * h, w * 4 * cout, shuffle_rows, &k);
}

typedef struct {
    const float *x;
    const sana_conv_shape *s;
    const float *wt;  // [taps][cout][c]
    const float *bias;
    float *y;
    int64_t oh, ow, cout;
} direct_ctx;

/// Output rows [r0, r1) (row index n·oh + oy) of sana_conv2d_f32_direct. Built in AVX-512 / AVX2 / baseline copies
/// like the depthwise loop (its 8 partial sums are one 8-wide vector); contraction off keeps every copy's roundings
/// those of the baseline build (no FMA).
WIDE_CLONES static void direct_rows(void *p, int64_t r0, int64_t r1) {
    SANA_CONTRACT_OFF
    const direct_ctx *d = (const direct_ctx *)p;
    const int64_t c = d->s->c, taps = (int64_t)d->s->kernel * d->s->kernel, cout = d->cout;
    for (int64_t row = r0; row < r1; row++)
        for (int64_t ox = 0; ox < d->ow; ox++) {
            const int64_t pixel = row * d->ow + ox;
            float *out = d->y + pixel * cout;  // [cout]
            for (int64_t co = 0; co < cout; co++) out[co] = d->bias ? d->bias[co] : 0.0f;
            for (int64_t tap = 0; tap < taps; tap++) {
                const float *src = sana_tap_source(d->x, d->s, d->oh, d->ow, pixel, tap);  // [c] or NULL
                if (!src) continue;
                for (int64_t co = 0; co < cout; co++) {
                    const float *w = d->wt + (tap * cout + co) * c;
                    float q[8] = {0};
                    int64_t j = 0;
                    for (; j + 8 <= c; j += 8)
                        for (int l = 0; l < 8; l++) q[l] += src[j + l] * w[j + l];
                    for (; j < c; j++) q[j & 7] += src[j] * w[j];
                    out[co] += ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
                }
            }
        }
}

int32_t sana_conv2d_f32_direct(const float *x, const sana_conv_shape *s, int32_t order, const float *w, int64_t cout,
                               const float *bias, float *y) {
    const int64_t oh = sana_conv_out_height(s), ow = sana_conv_out_width(s);
    if (oh == 0 || ow == 0 || cout <= 0) return 1;
    const int64_t c = s->c, taps = (int64_t)s->kernel * s->kernel;
    float *wt = (float *)sana_scratch(6, (size_t)(taps * cout * c) * 4);
    if (!wt) return 0;
    // w [cout][c][taps] (reference) or [cout][taps][c] (tap-major) → wt [taps][cout][c]
    for (int64_t co = 0; co < cout; co++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t t = 0; t < taps; t++)
                wt[(t * cout + co) * c + ch] = order == SANA_CONV_TAP_MAJOR ? w[(co * taps + t) * c + ch] : w[(co * c + ch) * taps + t];
    direct_ctx d = {x, s, wt, bias, y, oh, ow, cout};
    run_rows(s->b * oh, ow * taps * c * cout, direct_rows, &d);
    return 1;
}
