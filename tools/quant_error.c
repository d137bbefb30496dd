// Measures the error of the quantization schemes considered for the kernels (docs/NUMERICS.md "Kernels"):
// weight group size × activation scale granularity, against the float64 product, on Gaussian weights and
// Gaussian activations with outlier channels (a few input channels ×20 in every row, as in transformer
// activations). Deterministic.  cc -O2 tools/quant_error.c -lm -o /tmp/qe && /tmp/qe
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 42;
static double gauss(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    double u1 = ((rng >> 11) + 1.0) / 9007199254740994.0;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    double u2 = (rng >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/// Symmetric quantize-dequantize of v[0..len) in groups of g with levels ±qmax (scale = amax/qmax, float32 math).
static void fake_quant(const float *v, float *out, int len, int g, int qmax) {
    for (int k0 = 0; k0 < len; k0 += g) {
        int k1 = k0 + g < len ? k0 + g : len;
        float amax = 0;
        for (int i = k0; i < k1; i++) amax = fmaxf(amax, fabsf(v[i]));
        float inv = amax > 0 ? qmax / amax : 0, s = amax / qmax;
        for (int i = k0; i < k1; i++) out[i] = nearbyintf(v[i] * inv) * s;
    }
}

int main(void) {
    const int m = 64, k = 2240, n = 256;
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
    float *xq = malloc(sizeof(float) * m * k), *wq = malloc(sizeof(float) * n * k);
    for (int outl = 0; outl < 2; outl++) {
        for (int i = 0; i < m * k; i++) x[i] = (float)gauss() * ((outl && (i % k) % 113 == 7) ? 20.0f : 1.0f);
        for (int i = 0; i < n * k; i++) w[i] = (float)(gauss() * 0.02);
        printf("activations: Gaussian%s\n", outl ? " with outlier channels (1 in 113, x20)" : "");
        struct { const char *name; int wq, wg, xg; } cases[] = {
            {"int8 W/row   X/row", 127, k, k},     {"int8 W g256  X g256", 127, 256, 256},
            {"int8 W g128  X/row", 127, 128, k},   {"int8 W g128  X g128", 127, 128, 128},
            {"int4 W g128  X g128", 7, 128, 128},  {"int4 W g64   X/row", 7, 64, k},
            {"int4 W g64   X g64", 7, 64, 64},     {"int4 W g32   X g32", 7, 32, 32},
            {"float W      X g128 (act only)", 0, 0, 128},
        };
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            for (int j = 0; j < n; j++) {
                if (cases[c].wq) fake_quant(w + j * k, wq + j * k, k, cases[c].wg, cases[c].wq);
                else for (int i = 0; i < k; i++) wq[j * k + i] = w[j * k + i];
            }
            for (int i = 0; i < m; i++) fake_quant(x + i * k, xq + i * k, k, cases[c].xg, 127);
            double num = 0, den = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double exact = 0, approx = 0;
                    for (int p = 0; p < k; p++) {
                        exact += (double)x[i * k + p] * w[j * k + p];
                        approx += (double)xq[i * k + p] * wq[j * k + p];
                    }
                    num += (approx - exact) * (approx - exact);
                    den += exact * exact;
                }
            printf("  %-32s rel RMS error of Y: %.4f%%\n", cases[c].name, 100 * sqrt(num / den));
        }
    }
    return 0;
}
