// Compares every kernel family this CPU (or emulator) supports against the scalar reference on odd and aligned
// shapes, for int8, int4 and bf16 weights. Built by tools/test_neon.sh for aarch64 (run under qemu) and usable
// natively:  cc -O2 -ISources/CSanaKernels/include tools/kernel_check.c Sources/CSanaKernels/*.c -lpthread -lm
// Prints "N passed, N failed" and exits non-zero on failure.
#include "sana_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float gauss(void) {
    double u1, u2;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    u1 = ((rng >> 11) + 1.0) / 9007199254740994.0;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    u2 = (rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static int passed = 0, failed = 0;

static double rel_err(const float *a, const float *b, size_t count) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

static void check(const char *family, int32_t type, int64_t m, int64_t k, int64_t n, double tol) {
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k), *bias = malloc(sizeof(float) * n);
    float *y = malloc(sizeof(float) * m * n), *yr = malloc(sizeof(float) * m * n);
    for (int64_t i = 0; i < m * k; i++) x[i] = gauss() * (i % 97 == 0 ? 20.0f : 1.0f);
    if (type == SANA_TYPE_BF16)  // bf16 kernels round activations to bf16: give the reference the same inputs
        for (int64_t i = 0; i < m * k; i++) x[i] = sana_bf16_to_f32(sana_f32_to_bf16(x[i]));
    for (int64_t i = 0; i < n * k; i++) w[i] = gauss() * 0.05f;
    for (int64_t i = 0; i < n; i++) bias[i] = gauss();
    size_t bytes = sana_matrix_bytes(type, n, k);
    void *packed = malloc(bytes);
    sana_matrix_pack(type, w, n, k, packed);
    sana_select_kernel_family(family);
    sana_linear(x, m, k, type, packed, n, bias, y);
    sana_select_kernel_family("reference");
    sana_linear_ref(x, m, k, type, packed, n, bias, yr);
    double e = rel_err(y, yr, (size_t)(m * n));
    int ok = e <= tol;
    if (ok) passed++; else failed++;
    printf("%-16s %-5s m=%-4lld k=%-5lld n=%-4lld rel=%.3g %s\n", family, sana_type_traits_of(type)->name,
           (long long)m, (long long)k, (long long)n, e, ok ? "ok" : "FAIL");
    sana_select_kernel_family(NULL);
    free(x); free(w); free(bias); free(y); free(yr); free(packed);
}

/// The tap-major quantized convolution (sana_conv2d_ordered, input quantized once per pixel) against the scalar
/// reference product on the tap-major im2col matrix: bit-identical.
static void check_tap_major_conv(const char *family, int32_t type, sana_conv_shape s, int64_t cout) {
    const int64_t oh = sana_conv_out_height(&s), ow = sana_conv_out_width(&s), k = s.c * s.kernel * s.kernel;
    const int64_t m = s.b * oh * ow;
    float *x = malloc(sizeof(float) * s.b * s.h * s.w * s.c), *w = malloc(sizeof(float) * cout * k);
    float *bias = malloc(sizeof(float) * cout), *cols = malloc(sizeof(float) * m * k);
    float *y = malloc(sizeof(float) * m * cout), *yr = malloc(sizeof(float) * m * cout);
    for (int64_t i = 0; i < s.b * s.h * s.w * s.c; i++) x[i] = gauss() * (i % 97 == 0 ? 20.0f : 1.0f);
    for (int64_t i = 0; i < cout * k; i++) w[i] = gauss() * 0.05f;
    for (int64_t i = 0; i < cout; i++) bias[i] = gauss();
    void *packed = malloc(sana_matrix_bytes(type, cout, k));
    sana_matrix_pack(type, w, cout, k, packed);
    sana_select_kernel_family(family);
    sana_conv2d_ordered(x, &s, type, packed, SANA_CONV_TAP_MAJOR, cout, bias, y);
    sana_im2col_rows_ordered(x, &s, SANA_CONV_TAP_MAJOR, 0, s.b * oh, cols);
    sana_linear_ref(cols, m, k, type, packed, cout, bias, yr);
    double e = rel_err(y, yr, (size_t)(m * cout));
    int ok = e == 0;
    if (ok) passed++; else failed++;
    printf("%-16s %-5s tap-major conv c=%lld k=%d stride=%d up=%d rel=%.3g %s\n", family, sana_type_traits_of(type)->name,
           (long long)s.c, s.kernel, s.stride, s.upsample, e, ok ? "ok" : "FAIL");
    sana_select_kernel_family(NULL);
    free(x); free(w); free(bias); free(cols); free(y); free(yr); free(packed);
}

int main(void) {
    const char *families[] = {"avx512vnni+bf16", "avx512vnni", "avx2", "neon-dotprod", "neon"};
    const int64_t shapes[][3] = {{1, 8, 1}, {7, 37, 19}, {13, 200, 33}, {6, 256, 32}, {25, 1000, 70}, {3, 129, 17}, {64, 576, 48}};
    printf("probed family: %s\n", sana_kernel_family());
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (!sana_select_kernel_family(families[f])) continue;
        sana_select_kernel_family(NULL);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            check(families[f], SANA_TYPE_Q8, shapes[s][0], shapes[s][1], shapes[s][2], 1e-6);
            check(families[f], SANA_TYPE_Q4, shapes[s][0], shapes[s][1], shapes[s][2], 1e-6);
            if (sana_select_kernel_family(families[f]) && sana_linear_has_kernel(SANA_TYPE_BF16))
                check(families[f], SANA_TYPE_BF16, shapes[s][0], shapes[s][1], shapes[s][2], 1e-5);
            sana_select_kernel_family(NULL);
        }
        // (b, h, w, c, kernel, stride, pad, upsample): c fills whole int8 (128) / int4 (64) groups.
        const sana_conv_shape convs[] = {{2, 5, 7, 128, 3, 1, 1, 1}, {1, 6, 5, 64, 3, 2, 1, 1}, {1, 3, 4, 128, 3, 1, 1, 2}};
        for (size_t c = 0; c < sizeof convs / sizeof convs[0]; c++) {
            check_tap_major_conv(families[f], SANA_TYPE_Q8, convs[c], 19);
            check_tap_major_conv(families[f], SANA_TYPE_Q4, convs[c], 19);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
