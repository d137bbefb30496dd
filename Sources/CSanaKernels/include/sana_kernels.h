// SanaEdge C kernels: the storage-format traits table (single source of truth for block sizes and bytes),
// scalar reference kernels (kept forever as the test oracle and portable fallback), and SIMD kernels chosen
// once at run time (AVX-512 VNNI/BF16, AVX2, NEON). Kernels never fail: callers validate shapes.
//
// Layout convention: matrices are row-major. A weight W of reference shape [N, d1, d2, ...] is the matrix
// [N, K] with K = d1*d2*... in the reference's element order (a conv weight [O, I, kh, kw] is [O, I*kh*kw]).
// A linear layer computes Y[M, N] = X[M, K] · Wᵀ + bias.
//
// Packed layouts (docs/FORMAT.md refers here):
//   f32, f16, bf16: plain row-major rows of K elements (row_block 1), the safetensors encodings.
//   int8, int4: blocks of SANA_ROW_BLOCK = 16 rows (the last block zero-padded to 16 rows). With
//     Kp = K rounded up to a multiple of 8 and G = group_size, ng = ceil(K / G), one block is
//       float32 scales[ng][16]                       (scale of group g of block row r at [g][r])
//       data: int8: uint8 [Kp/4][16][4]              (byte = q + 128, q in [-127, 127])
//             int4: uint8 [Kp/8][16][4]              (low nibble: element 4·(2t)+i, high nibble: element
//                                                     4·(2t+1)+i of row r at [t][r][i]; nibble = q + 8, q in [-7, 7])
//     Dequantized w[r][k] = q · scales[k / G][r]. Padding (rows ≥ N, columns ≥ K) has q = 0.
//     Rows [a, b) with a, b multiples of 16 (or b = N) are themselves a valid packed matrix of b − a rows.
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
    SANA_TYPE_Q8 = 3,   // int8, symmetric, one scale per group of group_size along K
    SANA_TYPE_Q4 = 4,   // int4, symmetric, one scale per group of group_size along K
    SANA_TYPE_COUNT = 5
} sana_type;

/// Rows per packed block of the integer formats (one AVX-512 register of int32 outputs).
#define SANA_ROW_BLOCK 16

typedef struct {
    const char *name;        // "f32", "f16", "bf16", "int8", "int4": the names the CLI and the bundle use
    int32_t is_quantized;    // 1 for integer types with group scales
    int32_t group_size;      // elements per scale group along K (1 for float types)
    int32_t row_block;       // rows per packed block: row ranges split at multiples of it stay valid matrices
    // Bytes of one packed block of row_block rows of K elements (scales and padding included); 0 when K is invalid.
    size_t (*block_bytes)(int64_t k);
    // Dequantizes rows [row0, row0 + rows) of a packed [n, k] matrix to float dst[rows, k].
    void (*unpack_rows)(const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows, float *dst);
    // The scalar reference product Y = X·Wᵀ (+ bias) for this type: the oracle of every SIMD path.
    void (*linear_ref)(const float *x, int64_t m, int64_t k, const void *w, int64_t n, const float *bias, float *y);
} sana_type_traits;

/// The traits of a storage type, or NULL for a value outside the enum.
const sana_type_traits *sana_type_traits_of(int32_t type);

/// Bytes of a packed [n, k] matrix; 0 on overflow or non-positive sizes.
size_t sana_matrix_bytes(int32_t type, int64_t n, int64_t k);

/// Packs (and for integer types quantizes, with scalar code so bundles are bit-identical across machines)
/// the row-major float matrix w[n, k] into dst, which holds sana_matrix_bytes(type, n, k) bytes.
void sana_matrix_pack(int32_t type, const float *w, int64_t n, int64_t k, void *dst);

/// Unpacks rows [row0, row0 + rows) of a packed [n, k] matrix to float dst[rows, k].
void sana_matrix_unpack_rows(int32_t type, const void *src, int64_t n, int64_t k, int64_t row0, int64_t rows,
                             float *dst);

/// Y[m, n] = X[m, k] · Wᵀ (+ bias[n] when bias is not NULL), W packed as `type`.
/// Integer-stored weights quantize X on the fly (int8 per (row, group) scales, see docs/NUMERICS.md);
/// bf16 weights use bf16 dot products (X rounded to bf16, fp32 accumulation) where the CPU has them.
void sana_linear(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                 float *y);

/// y[p] = X · W[p]ᵀ (+ bias[p]) for p < count: products of one input X [m, k] with weights W[p] [n[p], k], all of
/// storage `type` (bias[p] may be NULL). Bit-identical to `count` sana_linear calls; with int8/int4 SIMD kernels X
/// is quantized once for all of them (e.g. the attention's q, k and v projections of one normed input).
void sana_linear_shared(const float *x, int64_t m, int64_t k, int32_t type, int32_t count, const void *const *w,
                        const int64_t *n, const float *const *bias, float *const *y);

/// Y = silu(X · Wᵀ + bias): sana_linear followed by sana_dit_silu on Y, fused into the store of the int8/int4 AVX-512
/// kernels (the same SiLU on the same values: bit-identical to the two steps; one pass over Y less).
void sana_linear_silu(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                      float *y);

/// The scalar reference of sana_linear: the oracle for every SIMD path.
void sana_linear_ref(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                     float *y);

/// 1 when sana_linear has a SIMD kernel for `type` on this CPU (else callers may prefer BLAS for float types).
int32_t sana_linear_has_kernel(int32_t type);

/// Threads used by the kernels (default: all online cores). Values < 1 mean the default.
void sana_set_threads(int32_t threads);
int32_t sana_get_threads(void);
/// Test hook of the thread pool: runs `items` work items over the current threads, each range adding 1 to
/// visits[i] for its items i (a correct split visits every item exactly once).
void sana_pool_visit_for_testing(int64_t items, int32_t *visits);

/// Forces the scalar reference path everywhere (also set by the environment variable SANA_FORCE_REFERENCE=1).
void sana_force_reference(int32_t on);
int32_t sana_reference_forced(void);

/// Selects a kernel family by name for tests and benchmarks ("reference" or one this CPU supports, e.g. "avx2" on
/// an AVX-512 machine); NULL or "" restores the probed choice. Returns 1 when selected, 0 when unavailable.
int32_t sana_select_kernel_family(const char *name);

/// Name of the kernel family chosen for this CPU ("avx512vnni", "avx2", "neon-dotprod", "neon", "reference").
const char *sana_kernel_family(void);

// Scalar conversions shared by Swift and C (round-to-nearest-even).
uint16_t sana_f32_to_f16(float f);
float sana_f16_to_f32(uint16_t h);
uint16_t sana_f32_to_bf16(float f);
float sana_bf16_to_f32(uint16_t h);

// ---- Hot operations (rows of a row-major [rows, c] matrix; in place where `x` is both input and output) ----

/// RMSNorm over each row: x / sqrt(mean(x²) + eps) · weight (+ bias); weight/bias may be NULL.
void sana_rms_norm(float *x, int64_t rows, int64_t c, const float *weight, const float *bias, float eps);
/// LayerNorm over each row (biased variance); weight/bias may be NULL.
void sana_layer_norm(float *x, int64_t rows, int64_t c, const float *weight, const float *bias, float eps);
/// Softmax over each row.
void sana_softmax(float *x, int64_t rows, int64_t c);

/// Pointwise activations, in place over count elements.
typedef enum { SANA_ACT_SILU = 0, SANA_ACT_RELU = 1, SANA_ACT_GELU = 2, SANA_ACT_GELU_TANH = 3 } sana_activation;
/// SiLU (here and in sana_glu_silu) uses a vectorizable exp within 2 ulp of expf (sana_exp_vec_for_testing).
void sana_activate(float *x, int64_t count, int32_t activation);
/// The vectorizable exp of sana_activate's SiLU, exposed for its accuracy test.
float sana_exp_vec_for_testing(float x);

/// Depthwise k×k convolution, stride 1, zero padding k/2, channels-last: x [b, h, w, c], weight [c, k·k],
/// bias [c] or NULL, y [b, h, w, c]. Writes every element of y (it need not be initialized).
void sana_depthwise_conv2d(const float *x, int64_t b, int64_t h, int64_t w, int64_t c, const float *weight,
                           const float *bias, int32_t kernel, float *y);

/// Geometry of a k×k convolution of a channels-last map x [b, h, w, c]. The input is read as its `upsample`×
/// nearest-neighbour enlargement (F.interpolate(mode="nearest"); 1 = as is) without building it: virtual pixel
/// (y, x) is stored pixel (y / upsample, x / upsample). Zero padding `pad`, stride `stride`; the output is
/// [b, oh, ow, cout] with oh = (h·upsample + 2·pad − kernel) / stride + 1 (ow alike).
typedef struct {
    int64_t b, h, w, c;
    int32_t kernel, stride, pad, upsample;
} sana_conv_shape;

/// Output height and width of a convolution; 0 when the geometry is invalid (non-positive sizes, empty output).
int64_t sana_conv_out_height(const sana_conv_shape *s);
int64_t sana_conv_out_width(const sana_conv_shape *s);

/// im2col of output rows [row0, row0 + rows) (row index n·oh + oy): cols [rows·ow, c·k·k], each output pixel's
/// patch in the weight's (cin, ky, kx) order, zeros where the window leaves the (upsampled) input. Threaded.
void sana_im2col_rows(const float *x, const sana_conv_shape *s, int64_t row0, int64_t rows, float *cols);

/// im2col for a k×k convolution, stride 1, zero padding `pad`, channels-last x [b, h, w, c]:
/// cols [b, oh, ow, c·k·k] in the weight's (cin, ky, kx) order, oh = h + 2·pad − k + 1.
void sana_im2col(const float *x, int64_t b, int64_t h, int64_t w, int64_t c, int32_t kernel, int32_t pad,
                 float *cols);

/// Convolution y [b, oh, ow, cout] = conv(x, W) (+ bias) with W packed as `type` [cout, c·k·k] (reference order
/// (cin, ky, kx)), without building the im2col matrix: patch rows are gathered straight into the kernels'
/// activation panels a chunk of rows at a time. int8/int4: exactly sana_linear on the im2col matrix (same patch
/// order, same activation groups: bit-identical). bf16: patches in tap-major order (each tap one pixel's contiguous
/// channels, rounded once) with the weight repack permuted to match — the same products summed in another order.
/// Types without a SIMD kernel (and SANA_FORCE_REFERENCE) run im2col chunks through sana_linear.
void sana_conv2d(const float *x, const sana_conv_shape *s, int32_t type, const void *w, int64_t cout,
                 const float *bias, float *y);

/// Column order of a k×k convolution's weight matrix [cout, c·k·k] (and of its patch rows).
/// SANA_CONV_REFERENCE: (cin, ky, kx), PyTorch's [O, I, kh, kw]. SANA_CONV_TAP_MAJOR: (ky, kx, cin), i.e. the weight
/// permuted to [O, kh, kw, I] before packing. With int8/int4 weights and c a multiple of the type's group size, every
/// quantization group then lies within one tap, so the input can be quantized once per pixel (docs/FORMAT.md
/// "Convolution weight layout").
typedef enum { SANA_CONV_REFERENCE = 0, SANA_CONV_TAP_MAJOR = 1 } sana_conv_order;

/// sana_conv2d with the weight's column order given. Tap-major int8/int4 weights with c % group == 0 and a SIMD
/// kernel: the input is quantized once per (pixel, group), a band of input rows at a time, and each patch row is
/// assembled from already-quantized bytes, scales and sums — bit-identical to sana_linear on the tap-major im2col
/// matrix (each activation group is one pixel's group either way). Every other case (other types, c % group ≠ 0,
/// no SIMD kernel, SANA_FORCE_REFERENCE) runs tap-major im2col chunks through sana_linear.
void sana_conv2d_ordered(const float *x, const sana_conv_shape *s, int32_t type, const void *w, int32_t order,
                         int64_t cout, const float *bias, float *y);

/// Testing hook: output pixels per band of the tap-major quantized convolution (0 restores the default, 32768), so
/// small tests cross band boundaries.
void sana_set_conv_band_pixels(int64_t pixels);

/// sana_im2col_rows with the patch columns in `order` (sana_conv_order).
void sana_im2col_rows_ordered(const float *x, const sana_conv_shape *s, int32_t order, int64_t row0, int64_t rows,
                              float *cols);

/// Direct f32 convolution for few output channels (the DC-AE's conv_out: 128 → 3 at full resolution), where
/// im2col + sgemm would write a c·k²-wide patch matrix to produce 3 values per pixel. w is f32 [cout, c·k·k] in
/// `order`'s column order; y [b, oh, ow, cout]. Per output value: per tap an 8-way partial-sum dot product over the
/// channels, taps summed in order (another fp32 summation order than sgemm: ≤ 1e-5 relative, ConvTests).
/// Threaded over output rows. Returns 0 (nothing written) when scratch memory could not be had.
int32_t sana_conv2d_f32_direct(const float *x, const sana_conv_shape *s, int32_t order, const float *w, int64_t cout,
                               const float *bias, float *y);

/// x[i] += a[i] over count elements (threaded).
void sana_add(float *x, const float *a, int64_t count);

/// GLU with SiLU gate over rows of x [rows, 2·hidden]: y[r, j] = x[r, j] · silu(x[r, hidden + j]), y [rows, hidden].
void sana_glu_silu(const float *x, int64_t rows, int64_t hidden, float *y);

/// DC-AE up-block shortcut, channels-last: out [b, 2h, 2w, cout] += pixel_shuffle(2) of x [b, h, w, cin] with each
/// channel repeated `repeats` = 4·cout / cin times (repeat_interleave), i.e.
/// out[n, 2y+i, 2x+j, c] += x[n, y, x, (4c + 2i + j) / repeats].
void sana_add_shuffled_repeat(float *out, const float *x, int64_t b, int64_t h, int64_t w, int64_t cin, int64_t cout);

// ---- The Linear DiT feed-forward's elementwise work (dit_ops.c; AVX-512 where the dispatcher chose it) ----

/// SiLU in place over count values (threaded): x / (1 + e^−x) with a polynomial e^x (within a few ulp of expf).
void sana_dit_silu(float *x, int64_t count);

/// Depthwise 3×3 convolution (stride 1, zero padding at the left and right edges) fused with the GLU gate, on a
/// band of rows with their halo rows: t [rows + 2, width, wide] (output row r reads t rows r .. r + 2; the caller
/// puts zero rows where the frame ends), taps [9, wide] (tap ky·3 + kx), bias [wide] →
/// gated [rows, width, wide / 2] = conv[:hidden] · silu(conv[hidden:]). Threaded over positions.
void sana_dit_depthwise_glu(const float *t, int64_t rows, int64_t width, int64_t wide, const float *taps,
                            const float *bias, float *gated);

/// x[r] += gate[(row0 + r) / n] ⊙ y[r] for rows r of x, y [rows, c] (rows row0 + r of a [B·n, c] stream; gate
/// [B, c]); gate NULL: x[r] += y[r]. Threaded over rows.
void sana_dit_add_gated(float *x, const float *y, const float *gate, int64_t row0, int64_t rows, int64_t n, int64_t c);

/// Rows of scores x [rows, c] = softmax(x + bias) per row, bias [c] (the cross-attention's mask bias). On the calling
/// thread (callers run it per attention head in parallel).
void sana_dit_softmax_bias(float *x, int64_t rows, int64_t c, const float *bias);

/// dst[i] = src[i] over count floats (threaded; the regions do not overlap).
void sana_dit_copy(float *dst, const float *src, int64_t count);

/// The cross-attention core with bf16 operands (dit_ops.c): per head h,
///     att[:, h·dv ..< (h+1)·dv] = softmax(scale · q_h · k_hᵀ + bias) · v_h
/// with q_h, k_h, the probabilities and v_h rounded to bf16 and every sum in float32 (the family's bf16 GEMM).
/// Bytes of one batch element's packed keys and values (lk kept keys; 0 when any size is not positive).
int64_t sana_dit_cross_kv_bytes(int64_t lk, int64_t heads, int64_t d, int64_t dv);
/// Packs k [lk, heads·d] and v [lk, heads·dv] (float32, head-major channels) into `packed` (sana_dit_cross_kv_bytes)
/// in this CPU family's layout. Returns 0 when there is no kernel or memory could not be had.
int sana_dit_cross_kv_pack(const float *k, const float *v, int64_t lk, int64_t heads, int64_t d, int64_t dv,
                           uint16_t *packed);
/// 1 when this CPU runs sana_dit_cross_attention (a family with a bf16 GEMM kernel, not forced to the reference).
int sana_dit_cross_attention_has_kernel(void);
/// att [m, heads·dv] from q [m, heads·d], the packed keys and values, bias [lk] (threaded over heads and row blocks).
/// Returns 0 when there is no kernel (nothing written) or a worker could not get scratch memory (att partly written):
/// the caller then computes att another way.
int sana_dit_cross_attention(const float *q, int64_t m, int64_t heads, int64_t d, int64_t dv, const uint16_t *packed,
                             int64_t lk, const float *bias, float scale, float *att);
/// The scalar reference of sana_dit_cross_attention on the unpacked k and v (same roundings, sums in the kernel's
/// order; tests).
void sana_dit_cross_attention_ref(const float *q, int64_t m, int64_t heads, int64_t d, int64_t dv, const float *k,
                                  const float *v, int64_t lk, const float *bias, float scale, float *att);

#ifdef __cplusplus
}
#endif
#endif
