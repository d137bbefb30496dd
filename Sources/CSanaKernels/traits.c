// Storage-format traits table and scalar reference pack/unpack.
// PROVISIONAL formats (to be finalized with the SIMD kernels, issue 3): Q8 and Q4 rows hold
// ceil(K/32) float32 scales followed by the ceil(K/32)*32 quantized values (zero padded).
#include "sana_kernels.h"

#include <math.h>
#include <string.h>

#define SANA_GROUP 32

static int64_t groups_of(int64_t k) { return (k + SANA_GROUP - 1) / SANA_GROUP; }

static size_t row_bytes_f32(int64_t k) { return k > 0 ? (size_t)k * 4 : 0; }
static size_t row_bytes_16(int64_t k) { return k > 0 ? (size_t)k * 2 : 0; }
static size_t row_bytes_q8(int64_t k) { return k > 0 ? (size_t)groups_of(k) * (4 + SANA_GROUP) : 0; }
static size_t row_bytes_q4(int64_t k) { return k > 0 ? (size_t)groups_of(k) * (4 + SANA_GROUP / 2) : 0; }

static const sana_type_traits traits_table[SANA_TYPE_COUNT] = {
    [SANA_TYPE_F32] = {"f32", 0, 1, row_bytes_f32},
    [SANA_TYPE_F16] = {"f16", 0, 1, row_bytes_16},
    [SANA_TYPE_BF16] = {"bf16", 0, 1, row_bytes_16},
    [SANA_TYPE_Q8] = {"int8", 1, SANA_GROUP, row_bytes_q8},
    [SANA_TYPE_Q4] = {"int4", 1, SANA_GROUP, row_bytes_q4},
};

const sana_type_traits *sana_type_traits_of(int32_t type) {
    if (type < 0 || type >= SANA_TYPE_COUNT) return NULL;
    return &traits_table[type];
}

size_t sana_matrix_bytes(int32_t type, int64_t n, int64_t k) {
    const sana_type_traits *t = sana_type_traits_of(type);
    if (!t || n <= 0 || k <= 0 || k > ((int64_t)1 << 40)) return 0;
    size_t rb = t->row_bytes(k);
    if (rb == 0 || (size_t)n > SIZE_MAX / rb) return 0;
    return rb * (size_t)n;
}

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

float sana_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static void pack_q_row(int bits, const float *w, int64_t k, uint8_t *dst) {
    const int64_t ng = groups_of(k);
    const int qmax = bits == 8 ? 127 : 7;
    float *scales = (float *)dst;  // row starts are 4-byte aligned: row_bytes is a multiple of 4
    uint8_t *q = dst + ng * 4;
    for (int64_t g = 0; g < ng; g++) {
        int64_t k0 = g * SANA_GROUP, k1 = k0 + SANA_GROUP < k ? k0 + SANA_GROUP : k;
        float amax = 0.0f;
        for (int64_t i = k0; i < k1; i++) amax = fmaxf(amax, fabsf(w[i]));
        float scale = amax / (float)qmax;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        scales[g] = scale;
        for (int64_t i = 0; i < SANA_GROUP; i++) {
            int64_t idx = k0 + i;
            int v = idx < k1 ? (int)lrintf(w[idx] * inv) : 0;
            if (v > qmax) v = qmax;
            if (v < -qmax - (bits == 4)) v = -qmax - (bits == 4);
            if (bits == 8) {
                ((int8_t *)q)[idx] = (int8_t)v;
            } else {
                uint8_t nib = (uint8_t)(v + 8);
                uint8_t *byte = q + idx / 2;
                if (idx % 2 == 0) *byte = nib; else *byte |= (uint8_t)(nib << 4);
            }
        }
    }
}

static void unpack_q_row(int bits, const uint8_t *src, int64_t k, float *dst) {
    const int64_t ng = groups_of(k);
    const float *scales = (const float *)src;
    const uint8_t *q = src + ng * 4;
    for (int64_t i = 0; i < k; i++) {
        int v = bits == 8 ? ((const int8_t *)q)[i] : (int)((q[i / 2] >> ((i % 2) * 4)) & 0xf) - 8;
        dst[i] = (float)v * scales[i / SANA_GROUP];
    }
}

void sana_matrix_pack(int32_t type, const float *w, int64_t n, int64_t k, void *dst) {
    const sana_type_traits *t = sana_type_traits_of(type);
    if (!t) return;
    size_t rb = t->row_bytes(k);
    for (int64_t r = 0; r < n; r++) {
        const float *src = w + r * k;
        uint8_t *out = (uint8_t *)dst + (size_t)r * rb;
        switch (type) {
            case SANA_TYPE_F32: memcpy(out, src, (size_t)k * 4); break;
            case SANA_TYPE_F16: for (int64_t i = 0; i < k; i++) ((uint16_t *)out)[i] = sana_f32_to_f16(src[i]); break;
            case SANA_TYPE_BF16: for (int64_t i = 0; i < k; i++) ((uint16_t *)out)[i] = sana_f32_to_bf16(src[i]); break;
            case SANA_TYPE_Q8: memset(out, 0, rb); pack_q_row(8, src, k, out); break;
            case SANA_TYPE_Q4: memset(out, 0, rb); pack_q_row(4, src, k, out); break;
        }
    }
}

void sana_matrix_unpack_rows(int32_t type, const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                             float *dst) {
    const sana_type_traits *t = sana_type_traits_of(type);
    if (!t || row0 < 0 || rows < 0 || row0 + rows > n) return;
    size_t rb = t->row_bytes(k);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *in = (const uint8_t *)src + (size_t)(row0 + r) * rb;
        float *out = dst + r * k;
        switch (type) {
            case SANA_TYPE_F32: memcpy(out, in, (size_t)k * 4); break;
            case SANA_TYPE_F16: for (int64_t i = 0; i < k; i++) out[i] = sana_f16_to_f32(((const uint16_t *)in)[i]); break;
            case SANA_TYPE_BF16: for (int64_t i = 0; i < k; i++) out[i] = sana_bf16_to_f32(((const uint16_t *)in)[i]); break;
            case SANA_TYPE_Q8: unpack_q_row(8, in, k, out); break;
            case SANA_TYPE_Q4: unpack_q_row(4, in, k, out); break;
        }
    }
}
