// Storage-format traits table, scalar pack/unpack (deterministic: bundles are bit-identical on every machine),
// the scalar activation quantizer and the scalar reference products (the oracle of every SIMD kernel).
// Packed layouts are specified in include/sana_kernels.h.
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- Sizes ----

static size_t block_bytes_f32(int64_t k) { return k > 0 ? (size_t)k * 4 : 0; }
static size_t block_bytes_16(int64_t k) { return k > 0 ? (size_t)k * 2 : 0; }
static size_t block_bytes_q(int32_t type, int64_t k) {
    if (k <= 0) return 0;
    size_t scales = (size_t)sana_groups(k, sana_qgroup(type)) * SANA_ROW_BLOCK * 4;
    size_t data = (size_t)sana_kpad(k) * SANA_ROW_BLOCK / (type == SANA_TYPE_Q8 ? 1 : 2);
    return scales + data;
}
static size_t block_bytes_q8(int64_t k) { return block_bytes_q(SANA_TYPE_Q8, k); }
static size_t block_bytes_q4(int64_t k) { return block_bytes_q(SANA_TYPE_Q4, k); }

// ---- Quantized element access (block layout, see the header) ----

/// The stored (offset) value of element k of row r within one block's data.
static inline int q_stored(int32_t type, const uint8_t *data, int r, int64_t k) {
    if (type == SANA_TYPE_Q8) return data[(k / 4) * 64 + r * 4 + (k % 4)];
    int64_t quad = k / 4;
    uint8_t byte = data[(quad / 2) * 64 + r * 4 + (k % 4)];
    return (quad % 2) ? byte >> 4 : byte & 0xf;
}

static void pack_q(int32_t type, const float *w, int64_t n, int64_t k, uint8_t *dst) {
    const int64_t g = sana_qgroup(type), ng = sana_groups(k, g), kp = sana_kpad(k);
    const int qmax = type == SANA_TYPE_Q8 ? 127 : 7, off = sana_qoffset(type);
    const size_t bb = block_bytes_q(type, k);
    const int64_t nblocks = (n + SANA_ROW_BLOCK - 1) / SANA_ROW_BLOCK;
    for (int64_t b = 0; b < nblocks; b++) {
        uint8_t *blk = dst + (size_t)b * bb;
        float *scales = (float *)blk;  // block starts are 64-byte multiples: aligned for floats
        uint8_t *data = blk + ng * SANA_ROW_BLOCK * 4;
        // Padding elements store q = 0.
        memset(data, type == SANA_TYPE_Q8 ? off : off | (off << 4), (size_t)kp * SANA_ROW_BLOCK / (type == SANA_TYPE_Q8 ? 1 : 2));
        for (int r = 0; r < SANA_ROW_BLOCK; r++) {
            int64_t row = b * SANA_ROW_BLOCK + r;
            for (int64_t gi = 0; gi < ng; gi++) {
                if (row >= n) { scales[gi * SANA_ROW_BLOCK + r] = 0.0f; continue; }
                const float *src = w + row * k;
                int64_t k0 = gi * g, k1 = k0 + g < k ? k0 + g : k;
                float amax = 0.0f;
                for (int64_t i = k0; i < k1; i++) amax = fmaxf(amax, fabsf(src[i]));
                float scale = amax / (float)qmax;
                float inv = amax > 0.0f ? (float)qmax / amax : 0.0f;
                scales[gi * SANA_ROW_BLOCK + r] = scale;
                for (int64_t i = k0; i < k1; i++) {
                    int v = (int)nearbyintf(src[i] * inv);
                    if (v > qmax) v = qmax;
                    if (v < -qmax) v = -qmax;
                    int u = v + off;
                    if (type == SANA_TYPE_Q8) {
                        data[(i / 4) * 64 + r * 4 + (i % 4)] = (uint8_t)u;
                    } else {
                        int64_t quad = i / 4;
                        uint8_t *byte = &data[(quad / 2) * 64 + r * 4 + (i % 4)];
                        *byte = (quad % 2) ? (uint8_t)((*byte & 0x0f) | (u << 4)) : (uint8_t)((*byte & 0xf0) | u);
                    }
                }
            }
        }
    }
}

static void unpack_q(int32_t type, const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    (void)n;
    const int64_t g = sana_qgroup(type), ng = sana_groups(k, g);
    const int off = sana_qoffset(type);
    const size_t bb = block_bytes_q(type, k);
    for (int64_t i = 0; i < rows; i++) {
        int64_t row = row0 + i, b = row / SANA_ROW_BLOCK;
        int r = (int)(row % SANA_ROW_BLOCK);
        const uint8_t *blk = (const uint8_t *)src + (size_t)b * bb;
        const float *scales = (const float *)blk;
        const uint8_t *data = blk + ng * SANA_ROW_BLOCK * 4;
        for (int64_t j = 0; j < k; j++)
            dst[i * k + j] = (float)(q_stored(type, data, r, j) - off) * scales[(j / g) * SANA_ROW_BLOCK + r];
    }
}

static void unpack_f32(const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    (void)n;
    memcpy(dst, (const float *)src + row0 * k, (size_t)(rows * k) * 4);
}
static void unpack_f16(const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    (void)n;
    const uint16_t *s = (const uint16_t *)src + row0 * k;
    for (int64_t i = 0; i < rows * k; i++) dst[i] = sana_f16_to_f32(s[i]);
}
static void unpack_bf16(const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    (void)n;
    const uint16_t *s = (const uint16_t *)src + row0 * k;
    for (int64_t i = 0; i < rows * k; i++) dst[i] = sana_bf16_to_f32(s[i]);
}
static void unpack_q8(const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    unpack_q(SANA_TYPE_Q8, src, n, k, row0, rows, dst);
}
static void unpack_q4(const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst) {
    unpack_q(SANA_TYPE_Q4, src, n, k, row0, rows, dst);
}

// ---- Reference products ----

/// Float weights: dequantize one weight row at a time, float accumulation in K order.
static void linear_ref_float(int32_t type, const float *x, int64_t m, int64_t k, const void *w, int64_t n,
                             const float *bias, float *y) {
    const sana_type_traits *t = sana_type_traits_of(type);
    float *wrow = (float *)malloc((size_t)k * sizeof(float));
    if (!wrow) return;
    for (int64_t j = 0; j < n; j++) {
        t->unpack_rows(w, n, k, j, 1, wrow);
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * k;
            float acc = 0.0f;
            for (int64_t p = 0; p < k; p++) acc += xi[p] * wrow[p];
            y[i * n + j] = acc + (bias ? bias[j] : 0.0f);
        }
    }
    free(wrow);
}
static void linear_ref_f32(const float *x, int64_t m, int64_t k, const void *w, int64_t n, const float *b, float *y) {
    linear_ref_float(SANA_TYPE_F32, x, m, k, w, n, b, y);
}
static void linear_ref_f16(const float *x, int64_t m, int64_t k, const void *w, int64_t n, const float *b, float *y) {
    linear_ref_float(SANA_TYPE_F16, x, m, k, w, n, b, y);
}
static void linear_ref_bf16(const float *x, int64_t m, int64_t k, const void *w, int64_t n, const float *b, float *y) {
    linear_ref_float(SANA_TYPE_BF16, x, m, k, w, n, b, y);
}

void sana_quantize_rows_ref(const float *x, int64_t rows, int64_t k, int64_t g, int8_t *q, float *scale,
                            int32_t *sum) {
    const int64_t kp = sana_kpad(k), ng = sana_groups(k, g);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        int8_t *qr = q + r * kp;
        for (int64_t gi = 0; gi < ng; gi++) {
            int64_t k0 = gi * g, k1 = k0 + g < k ? k0 + g : k;
            float amax = 0.0f;
            for (int64_t i = k0; i < k1; i++) amax = fmaxf(amax, fabsf(xr[i]));
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t s = 0;
            for (int64_t i = k0; i < k1; i++) {
                int v = (int)nearbyintf(xr[i] * inv);
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                qr[i] = (int8_t)v;
                s += v;
            }
            scale[r * ng + gi] = amax / 127.0f;
            sum[r * ng + gi] = s;
        }
        for (int64_t i = k; i < kp; i++) qr[i] = 0;
    }
}

/// The integer arithmetic every SIMD path performs: per (row, output, group) an exact int32 dot product of the
/// quantized values, then acc = fma(float(dot), xscale·wscale, acc) in group order, then acc + bias.
void sana_qgemm_ref(const sana_qgemm_args *a, int64_t m0, int64_t m1, int64_t b0, int64_t b1) {
    const int off = sana_qoffset(a->type);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *blk = a->w + (size_t)b * a->block_bytes;
        const float *ws = (const float *)blk;
        const uint8_t *data = blk + a->ng * SANA_ROW_BLOCK * 4;
        for (int r = 0; r < SANA_ROW_BLOCK; r++) {
            int64_t j = b * SANA_ROW_BLOCK + r;
            if (j >= a->n) break;
            for (int64_t i = m0; i < m1; i++) {
                const int8_t *xq = a->xq + i * a->kp;
                float acc = 0.0f;
                for (int64_t gi = 0; gi < a->ng; gi++) {
                    int64_t k0 = gi * a->g, k1 = k0 + a->g < a->k ? k0 + a->g : a->k;
                    int32_t dot = 0;
                    for (int64_t p = k0; p < k1; p++) dot += (q_stored(a->type, data, r, p) - off) * xq[p];
                    acc = fmaf((float)dot, a->xs[i * a->ng + gi] * ws[gi * SANA_ROW_BLOCK + r], acc);
                }
                a->y[i * a->n + j] = acc + (a->bias ? a->bias[j] : 0.0f);
            }
        }
    }
}

static void linear_ref_q(int32_t type, const float *x, int64_t m, int64_t k, const void *w, int64_t n,
                         const float *bias, float *y) {
    const int64_t g = sana_qgroup(type), ng = sana_groups(k, g), kp = sana_kpad(k);
    int8_t *q = (int8_t *)malloc((size_t)(m * kp));
    float *s = (float *)malloc((size_t)(m * ng) * sizeof(float));
    int32_t *sum = (int32_t *)malloc((size_t)(m * ng) * sizeof(int32_t));
    if (q && s && sum) {
        sana_quantize_rows_ref(x, m, k, g, q, s, sum);
        sana_qgemm_args a = {type, m, k, kp, n, g, ng, q, s, sum, (const uint8_t *)w, block_bytes_q(type, k), bias, y};
        sana_qgemm_ref(&a, 0, m, 0, (n + SANA_ROW_BLOCK - 1) / SANA_ROW_BLOCK);
    }
    free(q);
    free(s);
    free(sum);
}
static void linear_ref_q8(const float *x, int64_t m, int64_t k, const void *w, int64_t n, const float *b, float *y) {
    linear_ref_q(SANA_TYPE_Q8, x, m, k, w, n, b, y);
}
static void linear_ref_q4(const float *x, int64_t m, int64_t k, const void *w, int64_t n, const float *b, float *y) {
    linear_ref_q(SANA_TYPE_Q4, x, m, k, w, n, b, y);
}

// ---- The table ----

static const sana_type_traits traits_table[SANA_TYPE_COUNT] = {
    [SANA_TYPE_F32] = {"f32", 0, 1, 1, block_bytes_f32, unpack_f32, linear_ref_f32},
    [SANA_TYPE_F16] = {"f16", 0, 1, 1, block_bytes_16, unpack_f16, linear_ref_f16},
    [SANA_TYPE_BF16] = {"bf16", 0, 1, 1, block_bytes_16, unpack_bf16, linear_ref_bf16},
    [SANA_TYPE_Q8] = {"int8", 1, SANA_Q8_GROUP, SANA_ROW_BLOCK, block_bytes_q8, unpack_q8, linear_ref_q8},
    [SANA_TYPE_Q4] = {"int4", 1, SANA_Q4_GROUP, SANA_ROW_BLOCK, block_bytes_q4, unpack_q4, linear_ref_q4},
};

const sana_type_traits *sana_type_traits_of(int32_t type) {
    if (type < 0 || type >= SANA_TYPE_COUNT) return NULL;
    return &traits_table[type];
}

size_t sana_matrix_bytes(int32_t type, int64_t n, int64_t k) {
    const sana_type_traits *t = sana_type_traits_of(type);
    if (!t || n <= 0 || k <= 0 || k > ((int64_t)1 << 40) || n > ((int64_t)1 << 40)) return 0;
    size_t bb = t->block_bytes(k);
    size_t blocks = (size_t)((n + t->row_block - 1) / t->row_block);
    if (bb == 0 || blocks > SIZE_MAX / bb) return 0;
    return bb * blocks;
}

void sana_matrix_pack(int32_t type, const float *w, int64_t n, int64_t k, void *dst) {
    if (sana_matrix_bytes(type, n, k) == 0) return;
    uint8_t *out = (uint8_t *)dst;
    switch (type) {
        case SANA_TYPE_F32: memcpy(out, w, (size_t)(n * k) * 4); break;
        case SANA_TYPE_F16: for (int64_t i = 0; i < n * k; i++) ((uint16_t *)out)[i] = sana_f32_to_f16(w[i]); break;
        case SANA_TYPE_BF16: for (int64_t i = 0; i < n * k; i++) ((uint16_t *)out)[i] = sana_f32_to_bf16(w[i]); break;
        case SANA_TYPE_Q8: case SANA_TYPE_Q4: pack_q(type, w, n, k, out); break;
    }
}

void sana_matrix_unpack_rows(int32_t type, const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                             float *dst) {
    const sana_type_traits *t = sana_type_traits_of(type);
    if (!t || row0 < 0 || rows < 0 || row0 + rows > n || k <= 0) return;
    t->unpack_rows(src, n, k, row0, rows, dst);
}

void sana_linear_ref(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                     float *y) {
    const sana_type_traits *t = sana_type_traits_of(type);
    if (!t || m <= 0 || n <= 0 || k <= 0) return;
    t->linear_ref(x, m, k, w, n, bias, y);
}

// ---- Conversions ----

uint16_t sana_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));  // inf / nan
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                                     // overflow -> inf
    if (mag < 0x38800000u) {                                                                        // subnormal or zero
        if (mag < 0x33000000u) return (uint16_t)sign;
        uint32_t e = mag >> 23;
        uint32_t m = (mag & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;  // 14 + (112 - e) + ... maps to a 10-bit subnormal mantissa
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((mag - 0x38000000u) >> 13);
    uint32_t rem = mag & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float sana_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1f;
    uint32_t m = h & 0x3ff;
    uint32_t x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else {  // subnormal: normalize
            e = 127 - 15 + 1;
            while (!(m & 0x400)) { m <<= 1; e--; }
            x = sign | (e << 23) | ((m & 0x3ff) << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t sana_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);  // quiet nan
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void sana_round_bf16(const float *src, int64_t count, uint16_t *dst) {
    // sana_f32_to_bf16 written branch-free so the compiler vectorizes it (bit-identical, NaN included).
    for (int64_t i = 0; i < count; i++) {
        uint32_t x;
        memcpy(&x, &src[i], 4);
        uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1)) >> 16, quiet = (x >> 16) | 0x40u;
        dst[i] = (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
    }
}

float sana_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

