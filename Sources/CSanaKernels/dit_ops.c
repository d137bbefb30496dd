// The Linear DiT's work between its products (SanaTransformerBlock+Streamed.swift, diffusers GLUMBConv and
// SanaAttnProcessor2_0): SiLU over conv_inverted's output, the depthwise 3×3 convolution fused with the GLU gate,
// the residual bookkeeping, and the cross-attention core. They run on every block, so they get AVX-512 versions (the
// package builds without -march: the portable versions run on SSE2) chosen by the one dispatch point, sana_kernels():
// the AVX-512 families use them, everything else (AVX2, NEON, the forced reference) the portable code, same formulas.
// The bf16 cross-attention runs where the family has a bf16 GEMM kernel (and has a scalar reference, for the tests):
// elsewhere the caller keeps the float32 path.
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
// rounded to bf16 and every product is summed in float32, as a bf16 PyTorch pipeline computes the attention; f32
// DiTs keep the float32 path (SanaTransformerBlock+Streamed.swift). Both products run on the family's bf16 GEMM
// kernel (bgemm, vdpbf16ps on AVX-512 BF16): scores = q·K_hᵀ with W = K_h [lk, d], out = p·V_h with W = V_hᵀ
// [dv, lk], both weights repacked once per block by the family's bpack. On these small per-head shapes (d = 112,
// ~120 keys) that is ~4× cheaper than sgemm with its packing.

/// Sizes of one batch element's packed keys and values: per head, the bpack tiles of K_h (k2 = d rounded up to even
/// columns) and then those of V_hᵀ (v2 = lk rounded up to even columns), 32 rows per tile.
typedef struct {
    int64_t lk, heads, d, dv, k2, v2, key_elems, head_elems;
} cross_layout;

static cross_layout cross_layout_of(int64_t lk, int64_t heads, int64_t d, int64_t dv) {
    cross_layout l = {lk, heads, d, dv, (d + 1) & ~(int64_t)1, (lk + 1) & ~(int64_t)1, 0, 0};
    l.key_elems = (lk + 31) / 32 * 32 * l.k2;
    l.head_elems = l.key_elems + (dv + 31) / 32 * 32 * l.v2;
    return l;
}

int sana_dit_cross_attention_has_kernel(void) {
    const sana_kernel_set *ks = sana_kernels();
    return ks->bgemm != NULL && ks->bpack != NULL;
}

int64_t sana_dit_cross_kv_bytes(int64_t lk, int64_t heads, int64_t d, int64_t dv) {
    if (lk <= 0 || heads <= 0 || d <= 0 || dv <= 0) return 0;
    const cross_layout l = cross_layout_of(lk, heads, d, dv);
    return l.heads * l.head_elems * 2;
}

int sana_dit_cross_kv_pack(const float *k, const float *v, int64_t lk, int64_t heads, int64_t d, int64_t dv,
                           uint16_t *packed) {
    const sana_kernel_set *ks = sana_kernels();
    if (!sana_dit_cross_attention_has_kernel()) return 0;
    if (sana_dit_cross_kv_bytes(lk, heads, d, dv) == 0) return 1;
    const cross_layout l = cross_layout_of(lk, heads, d, dv);
    uint16_t *kh = (uint16_t *)malloc((size_t)(lk * d) * 2), *vt = (uint16_t *)malloc((size_t)(dv * lk) * 2);
    if (kh && vt) {
        for (int64_t h = 0; h < heads; h++) {
            for (int64_t j = 0; j < lk; j++)
                for (int64_t c = 0; c < d; c++) kh[j * d + c] = sana_f32_to_bf16(k[j * heads * d + h * d + c]);  // K_h [lk, d]
            for (int64_t c = 0; c < dv; c++)
                for (int64_t j = 0; j < lk; j++) vt[c * lk + j] = sana_f32_to_bf16(v[j * heads * dv + h * dv + c]);  // V_hᵀ [dv, lk]
            uint16_t *dst = packed + h * l.head_elems;
            const sana_bgemm_args ka = {.k = d, .kp2 = l.k2, .n = lk, .w = kh}, va = {.k = lk, .kp2 = l.v2, .n = dv, .w = vt};
            ks->bpack(&ka, 0, (lk + 31) / 32, dst);
            ks->bpack(&va, 0, (dv + 31) / 32, dst + l.key_elems);
        }
    }
    const int ok = kh && vt;
    free(kh);
    free(vt);
    return ok;
}

/// Query rows per work item: the item's scores [CROSS_ROWS, lk] stay in L1.
#define CROSS_ROWS 12

typedef struct {
    const sana_kernel_set *ks;
    const float *q;
    const uint16_t *packed;
    const float *bias;
    float *att;
    float scale;
    int64_t m, rblocks;
    cross_layout l;
    int failed;  // a worker could not get its scratch (the caller then takes the f32 path)
} cross_job;

/// Work items (head h, block of CROSS_ROWS query rows): q rows → bf16, scores = q·K_hᵀ (bgemm), ·scale, softmax
/// with the bias, p → bf16, out = p·V_h (bgemm) copied into att's head columns.
static void cross_items(void *ctx, int64_t i0, int64_t i1) {
    cross_job *c = (cross_job *)ctx;
    const cross_layout *l = &c->l;
    const size_t qbytes = CROSS_ROWS * l->k2 * 2, sbytes = CROSS_ROWS * l->lk * 4, pbytes = CROSS_ROWS * l->v2 * 2;
    uint8_t *scratch = (uint8_t *)sana_scratch(5, qbytes + sbytes + pbytes + CROSS_ROWS * l->dv * 4);
    if (!scratch) {
        c->failed = 1;
        return;
    }
    uint16_t *qb = (uint16_t *)scratch;             // [CROSS_ROWS][k2]
    float *s = (float *)(scratch + qbytes);         // [CROSS_ROWS][lk]
    uint16_t *pb = (uint16_t *)((uint8_t *)s + sbytes);  // [CROSS_ROWS][v2]
    float *o = (float *)((uint8_t *)pb + pbytes);   // [CROSS_ROWS][dv]
    void (*round)(const float *, int64_t, uint16_t *) = c->ks->round_bf16 ? c->ks->round_bf16 : sana_round_bf16;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t h = it / c->rblocks, r0 = (it % c->rblocks) * CROSS_ROWS;
        const int64_t rows = c->m - r0 < CROSS_ROWS ? c->m - r0 : CROSS_ROWS;
        const uint16_t *kp = c->packed + h * l->head_elems, *vp = kp + l->key_elems;
        for (int64_t r = 0; r < rows; r++) {
            round(c->q + (r0 + r) * l->heads * l->d + h * l->d, l->d, qb + r * l->k2);  // q [m, heads·d]
            if (l->k2 > l->d) qb[r * l->k2 + l->d] = 0;
        }
        const sana_bgemm_args sa = {.m = rows, .k = l->d, .kp2 = l->k2, .n = l->lk, .xb = qb, .wt = kp, .y = s};
        c->ks->bgemm(&sa, 0, rows, 0, (l->lk + 15) / 16);
        for (int64_t i = 0; i < rows * l->lk; i++) s[i] *= c->scale;
        sana_dit_softmax_bias(s, rows, l->lk, c->bias);
        for (int64_t r = 0; r < rows; r++) {
            round(s + r * l->lk, l->lk, pb + r * l->v2);
            if (l->v2 > l->lk) pb[r * l->v2 + l->lk] = 0;
        }
        const sana_bgemm_args oa = {.m = rows, .k = l->lk, .kp2 = l->v2, .n = l->dv, .xb = pb, .wt = vp, .y = o};
        c->ks->bgemm(&oa, 0, rows, 0, (l->dv + 15) / 16);
        // att [m, heads·dv]: this item's rows, head h's columns
        for (int64_t r = 0; r < rows; r++)
            memcpy(c->att + (r0 + r) * l->heads * l->dv + h * l->dv, o + r * l->dv, (size_t)l->dv * 4);
    }
}

int sana_dit_cross_attention(const float *q, int64_t m, int64_t heads, int64_t d, int64_t dv, const uint16_t *packed,
                             int64_t lk, const float *bias, float scale, float *att) {
    if (!sana_dit_cross_attention_has_kernel()) return 0;
    if (m <= 0 || sana_dit_cross_kv_bytes(lk, heads, d, dv) == 0) return 1;
    cross_job j = {sana_kernels(), q, packed, bias, att, scale, m, (m + CROSS_ROWS - 1) / CROSS_ROWS,
                   cross_layout_of(lk, heads, d, dv), 0};
    sana_parallel_for(heads * j.rblocks, cross_items, &j);
    return !j.failed;
}

/// x[i] rounded to bf16 and back, 0 beyond `count` (the pairs' zero padding).
static inline float bf16_at(const float *x, int64_t i, int64_t count) {
    return i < count ? sana_bf16_to_f32(sana_f32_to_bf16(x[i])) : 0.0f;
}

/// Σ a[i]·b[i] over `count` values rounded to bf16, in vdpbf16ps's order: pair after pair, the odd element's product
/// added first (products of bf16 values are exact in f32).
static float bf16_dot(const float *a, const float *b, int64_t count) {
    SANA_CONTRACT_OFF
    float acc = 0.0f;
    for (int64_t i = 0; i < count; i += 2) {
        acc += bf16_at(a, i + 1, count) * bf16_at(b, i + 1, count);
        acc += bf16_at(a, i, count) * bf16_at(b, i, count);
    }
    return acc;
}

void sana_dit_cross_attention_ref(const float *q, int64_t m, int64_t heads, int64_t d, int64_t dv, const float *k,
                                  const float *v, int64_t lk, const float *bias, float scale, float *att) {
    if (m <= 0 || sana_dit_cross_kv_bytes(lk, heads, d, dv) == 0) return;
    float *s = (float *)malloc((size_t)lk * 4), *kr = (float *)malloc((size_t)d * 4), *vc = (float *)malloc((size_t)lk * 4);
    if (s && kr && vc) {
        for (int64_t h = 0; h < heads; h++) {
            for (int64_t r = 0; r < m; r++) {
                const float *qr = q + r * heads * d + h * d;  // q [m, heads·d]
                for (int64_t j = 0; j < lk; j++) {
                    for (int64_t c = 0; c < d; c++) kr[c] = k[j * heads * d + h * d + c];  // k [lk, heads·d]
                    s[j] = bf16_dot(qr, kr, d) * scale;
                }
                softmax_bias_generic(s, lk, bias);
                float *out = att + r * heads * dv + h * dv;
                for (int64_t c = 0; c < dv; c++) {
                    for (int64_t j = 0; j < lk; j++) vc[j] = v[j * heads * dv + h * dv + c];  // v [lk, heads·dv]
                    out[c] = bf16_dot(s, vc, lk);
                }
            }
        }
    }
    free(s);
    free(kr);
    free(vc);
}
