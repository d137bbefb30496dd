// Linear layer: scalar reference and the dispatch point.
// PROVISIONAL: the reference dequantizes one weight row at a time and accumulates in double-free float;
// the SIMD kernels (issue 3) replace the dispatch below and quantize activations on the fly.
#include "sana_kernels.h"

#include <stdlib.h>
#include <string.h>

static int32_t g_threads = 0;
static int32_t g_force_reference = -1;

void sana_set_threads(int32_t threads) { g_threads = threads < 1 ? 0 : threads; }
int32_t sana_get_threads(void) { return g_threads; }

void sana_force_reference(int32_t on) { g_force_reference = on ? 1 : 0; }

const char *sana_kernel_family(void) { return "reference"; }

void sana_linear_ref(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                     float *y) {
    float row[4096];
    float *wrow = k <= 4096 ? row : (float *)malloc((size_t)k * sizeof(float));
    if (!wrow) return;
    for (int64_t j = 0; j < n; j++) {
        sana_matrix_unpack_rows(type, w, n, k, j, 1, wrow);
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * k;
            float acc = 0.0f;
            for (int64_t p = 0; p < k; p++) acc += xi[p] * wrow[p];
            y[i * n + j] = acc + (bias ? bias[j] : 0.0f);
        }
    }
    if (wrow != row) free(wrow);
}

void sana_linear(const float *x, int64_t m, int64_t k, int32_t type, const void *w, int64_t n, const float *bias,
                 float *y) {
    sana_linear_ref(x, m, k, type, w, n, bias, y);
}
