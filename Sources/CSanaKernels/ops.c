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

typedef struct {
    float *x;
    int32_t act;
} act_ctx;

#define ACT_CHUNK 4096

static void act_chunks(void *p, int64_t c0, int64_t c1) {
    act_ctx *a = (act_ctx *)p;
    float *x = a->x + c0 * ACT_CHUNK;
    int64_t count = (c1 - c0) * ACT_CHUNK;
    switch (a->act) {
        case SANA_ACT_SILU:
            for (int64_t i = 0; i < count; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
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

/// Output rows (image n, row oy) of the depthwise convolution; rows index n·h + oy.
static void dw_rows(void *p, int64_t r0, int64_t r1) {
    const conv_ctx *k = (const conv_ctx *)p;
    const int64_t h = k->h, w = k->w, c = k->c, kk = k->kernel, pad = k->pad;
    for (int64_t row = r0; row < r1; row++) {
        int64_t n = row / h, oy = row % h;
        for (int64_t ox = 0; ox < w; ox++) {
            float *out = k->y + ((n * h + oy) * w + ox) * c;  // [c]
            if (k->bias) memcpy(out, k->bias, (size_t)c * 4);
            else memset(out, 0, (size_t)c * 4);
            for (int64_t ky = 0; ky < kk; ky++) {
                int64_t iy = oy + ky - pad;
                if (iy < 0 || iy >= h) continue;
                for (int64_t kx = 0; kx < kk; kx++) {
                    int64_t ix = ox + kx - pad;
                    if (ix < 0 || ix >= w) continue;
                    const float *in = k->x + ((n * h + iy) * w + ix) * c;  // [c]
                    const float *wt = k->weight + ky * kk + kx;              // weight[ch * kk·kk + ky·kk + kx]
                    for (int64_t ch = 0; ch < c; ch++) out[ch] += in[ch] * wt[ch * kk * kk];
                }
            }
        }
    }
}

void sana_depthwise_conv2d(const float *x, int64_t b, int64_t h, int64_t w, int64_t c, const float *weight,
                           const float *bias, int32_t kernel, float *y) {
    if (b <= 0 || h <= 0 || w <= 0 || c <= 0 || kernel <= 0) return;
    conv_ctx k = {x, weight, bias, y, h, w, c, kernel, kernel / 2};
    run_rows(b * h, w * c * kernel * kernel, dw_rows, &k);
}

/// Output rows (image n, row oy) of im2col: cols[n, oy, ox, ch·k·k + ky·k + kx] = x[n, oy+ky−pad, ox+kx−pad, ch].
static void im2col_rows(void *p, int64_t r0, int64_t r1) {
    const conv_ctx *k = (const conv_ctx *)p;
    const int64_t h = k->h, w = k->w, c = k->c, kk = k->kernel, pad = k->pad;
    const int64_t oh = h + 2 * pad - kk + 1, ow = w + 2 * pad - kk + 1, patch = c * kk * kk;
    for (int64_t row = r0; row < r1; row++) {
        int64_t n = row / oh, oy = row % oh;
        for (int64_t ox = 0; ox < ow; ox++) {
            float *dst = k->y + ((n * oh + oy) * ow + ox) * patch;  // [c·k·k]
            for (int64_t ky = 0; ky < kk; ky++) {
                int64_t iy = oy + ky - pad;
                for (int64_t kx = 0; kx < kk; kx++) {
                    int64_t ix = ox + kx - pad;
                    float *d = dst + ky * kk + kx;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                        for (int64_t ch = 0; ch < c; ch++) d[ch * kk * kk] = 0.0f;
                        continue;
                    }
                    const float *s = k->x + ((n * h + iy) * w + ix) * c;  // [c]
                    for (int64_t ch = 0; ch < c; ch++) d[ch * kk * kk] = s[ch];
                }
            }
        }
    }
}

void sana_im2col(const float *x, int64_t b, int64_t h, int64_t w, int64_t c, int32_t kernel, int32_t pad,
                 float *cols) {
    int64_t oh = h + 2 * (int64_t)pad - kernel + 1;
    if (b <= 0 || oh <= 0 || w + 2 * (int64_t)pad - kernel + 1 <= 0 || c <= 0 || kernel <= 0) return;
    conv_ctx k = {x, NULL, NULL, cols, h, w, c, kernel, pad};
    run_rows(b * oh, w * c * kernel * kernel, im2col_rows, &k);
}
