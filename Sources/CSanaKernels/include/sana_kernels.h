// SanaEdge C kernels: the storage-format traits table (single source of truth for block sizes and bytes),
// scalar reference kernels (kept forever as the test oracle and portable fallback), and SIMD kernels chosen
// once at run time. C kernels never allocate on the hot path and never fail: callers validate shapes.
//
// Layout convention: matrices are row-major. A weight W of reference shape [N, d1, d2, ...] is the matrix
// [N, K] with K = d1*d2*... in the reference's element order (a conv weight [O, I, kh, kw] is [O, I*kh*kw]).
// A linear layer computes Y[M, N] = X[M, K] · Wᵀ + bias.
#ifndef SANA_KERNELS_H
#define SANA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Storage types. Values are part of the bundle format (docs/FORMAT.md): never renumber.
typedef enum {
    SANA_TYPE_F32 = 0,
    SANA_TYPE_F16 = 1,
    SANA_TYPE_BF16 = 2,
    SANA_TYPE_Q8 = 3,   // int8, symmetric, one scale per group along K
    SANA_TYPE_Q4 = 4,   // int4, symmetric, one scale per group along K
    SANA_TYPE_COUNT = 5
} sana_type;

typedef struct {
    const char *name;        // "f32", "f16", "bf16", "int8", "int4": the names the CLI and the bundle use
    int32_t is_quantized;    // 1 for integer types with group scales
    int32_t group_size;      // elements per scale group along K (1 for float types)
    // Bytes of one packed row of K elements (including its scales and padding). 0 when K is invalid.
    size_t (*row_bytes)(int64_t k);
} sana_type_traits;

/// The traits of a storage type, or NULL for a value outside the enum.
const sana_type_traits *sana_type_traits_of(int32_t type);

/// Bytes of a packed [n, k] matrix; 0 on overflow or non-positive sizes.
size_t sana_matrix_bytes(int32_t type, int64_t n, int64_t k);

/// Packs (and for integer types quantizes, with the scalar reference code so bundles are bit-identical
/// across machines) the row-major float matrix w[n, k] into dst, which holds sana_matrix_bytes(type, n, k) bytes.
void sana_matrix_pack(int32_t type, const float *w, int64_t n, int64_t k, void *dst);

/// Unpacks rows [row0, row0 + rows) of a packed [n, k] matrix to float dst[rows, k].
void sana_matrix_unpack_rows(int32_t type, const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                             float *dst);

/// Y[m, n] = X[m, k] · Wᵀ (+ bias[n] when bias is not NULL), W packed as `type`.
/// Float-stored weights are computed in float; integer-stored weights quantize X on the fly.
void sana_linear(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                 float *y);

/// The scalar reference of sana_linear: the oracle for every SIMD path.
void sana_linear_ref(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                     float *y);

/// Threads used by the kernels (default: all online cores). Values < 1 mean the default.
void sana_set_threads(int32_t threads);
int32_t sana_get_threads(void);

/// Forces the scalar reference path everywhere (also set by the environment variable SANA_FORCE_REFERENCE=1).
void sana_force_reference(int32_t on);

/// Name of the kernel family chosen for this CPU ("avx512vnni", "avx2", "neon", "reference").
const char *sana_kernel_family(void);

// Scalar conversions shared by Swift and C (round-to-nearest-even).
uint16_t sana_f32_to_f16(float f);
float sana_f16_to_f32(uint16_t h);
uint16_t sana_f32_to_bf16(float f);
float sana_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
