// What one core can do with the int8/int4 GEMM's instruction mix (and the bf16 kernel's instruction) (docs/BENCHMARKS.md "GEMM kernels"): the rate of
// vpdpbusd alone, then the 6-row × 2-block micro-tile of x86_avx512.c (2 weight loads, 6 activation broadcasts and
// 12 vpdpbusd per 4 K-elements) with and without its per-group float epilogue (cvt, scale product, FMA into the
// float accumulators), activations streamed from a 1.1 MB panel as in the kernel. Not a test: a measuring tool.
//
//     clang -O2 tools/vnni_ceiling.c -o /tmp/vnni_ceiling && /tmp/vnni_ceiling
//     /tmp/vnni_ceiling & /tmp/vnni_ceiling; wait     # both cores at once
//
// 1 vpdpbusd on 512 bits = 64 multiply-adds = 128 ops; `sana bench gemm` reports ops per second of the whole product
// (activation quantization included), so its GOPS / 128 is comparable with the G vpdpbusd/s printed here.
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx512dq"), noinline))

enum { QUADS = 560, PANELS = 86 };  // K = 2240 (Sana-1.6B's width); 86 six-row panels ≈ 1.1 MB of activations
static int8_t X[PANELS * QUADS * 24 + 64] __attribute__((aligned(64)));
static uint8_t W[2][QUADS * 64] __attribute__((aligned(64)));
static float SX[PANELS][QUADS / 4][6], SW[2][QUADS / 4][16];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/// A function `name` timing `reps` rounds of one instruction on 12 independent accumulators of type `T` (no memory
/// operands; the empty asm keeps every accumulator live in a register each round, so nothing is hoisted or
/// spilled). Returns instructions per second.
#define PEAK_LOOP(name, isa, T, init, step, reduce)                                                                \
    __attribute__((target(isa), noinline)) static double name(long reps) {                                        \
        T a[12];                                                                                                    \
        for (int i = 0; i < 12; i++) a[i] = init(i);                                                                \
        double t0 = now();                                                                                          \
        for (long r = 0; r < reps; r++) {                                                                           \
            for (int i = 0; i < 12; i++) a[i] = step(a[i]);                                                         \
            __asm__ volatile("" ::"v"(a[0]), "v"(a[1]), "v"(a[2]), "v"(a[3]), "v"(a[4]), "v"(a[5]), "v"(a[6]),      \
                             "v"(a[7]), "v"(a[8]), "v"(a[9]), "v"(a[10]), "v"(a[11]));                              \
        }                                                                                                           \
        double s = now() - t0;                                                                                      \
        float sink = 0;                                                                                             \
        for (int i = 0; i < 12; i++) sink += (float)reduce(a[i]);                                                   \
        if (sink == 42.0f) puts("");                                                                                \
        return (double)reps * 12 / s;                                                                               \
    }

// vpdpbusd (64 multiply-adds on 512 bits) and vdpbf16ps (the bf16 kernel's instruction: 32 multiply-adds).
#define DPBUSD_STEP(acc) _mm512_dpbusd_epi32(acc, _mm512_set1_epi8(3), _mm512_set1_epi8(1))
#define DPBF16_STEP(acc) _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi16(0x3f80), (__m512bh)_mm512_set1_epi16(0x3c00))
PEAK_LOOP(peak, "avx512f,avx512bw,avx512vnni", __m512i, _mm512_set1_epi32, DPBUSD_STEP, _mm512_reduce_add_epi32)
#define SET1_PS(i) _mm512_set1_ps((float)(i))
PEAK_LOOP(peak_bf16, "avx512f,avx512bf16", __m512, SET1_PS, DPBF16_STEP, _mm512_reduce_add_ps)

/// The micro-tile over all panels: group = quads per scale group (16: int4's 64, 32: int8's 128); epilogue 0 skips
/// the float work (the integer sums just add up across groups).
T512 static double tile(int group, int epilogue, long reps) {
    __m512 f[6][2];
    for (int m = 0; m < 6; m++) f[m][0] = f[m][1] = _mm512_setzero_ps();
    __m512i keep = _mm512_setzero_si512();
    double t0 = now();
    for (long r = 0; r < reps; r++) {
        const int p = (int)(r % PANELS);
        for (int g = 0; g < QUADS / group; g++) {
            __m512i a[6][2];
            for (int m = 0; m < 6; m++) a[m][0] = a[m][1] = _mm512_set1_epi32(m);
            for (int t = g * group; t < (g + 1) * group; t++) {
                const __m512i w0 = _mm512_load_si512(W[0] + t * 64), w1 = _mm512_load_si512(W[1] + t * 64);
                for (int m = 0; m < 6; m++) {
                    int32_t v;
                    memcpy(&v, X + ((size_t)p * QUADS + t) * 24 + 4 * m, 4);
                    const __m512i xb = _mm512_set1_epi32(v);
                    a[m][0] = _mm512_dpbusd_epi32(a[m][0], w0, xb);
                    a[m][1] = _mm512_dpbusd_epi32(a[m][1], w1, xb);
                }
            }
            if (epilogue) {
                const __m512 sw0 = _mm512_loadu_ps(SW[0][g]), sw1 = _mm512_loadu_ps(SW[1][g]);
                for (int m = 0; m < 6; m++) {
                    const __m512 sx = _mm512_set1_ps(SX[p][g][m]);
                    f[m][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[m][0]), _mm512_mul_ps(sx, sw0), f[m][0]);
                    f[m][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[m][1]), _mm512_mul_ps(sx, sw1), f[m][1]);
                }
            } else {
                for (int m = 0; m < 6; m++) keep = _mm512_add_epi32(keep, _mm512_add_epi32(a[m][0], a[m][1]));
            }
        }
    }
    double s = now() - t0;
    float sink = _mm512_reduce_add_epi32(keep);
    for (int m = 0; m < 6; m++) sink += _mm512_reduce_add_ps(_mm512_add_ps(f[m][0], f[m][1]));
    if (sink == 42.0f) puts("");
    return (double)reps * QUADS * 12 / s;
}

int main(void) {
    for (size_t i = 0; i < sizeof X; i++) X[i] = (int8_t)(i * 7 % 255 - 127);
    for (size_t i = 0; i < sizeof W; i++) ((uint8_t *)W)[i] = (uint8_t)(i * 13 % 256);
    for (int p = 0; p < PANELS; p++)
        for (int g = 0; g < QUADS / 4; g++)
            for (int m = 0; m < 6; m++) SX[p][g][m] = 1e-3f * (float)(1 + (p + g + m) % 7);
    for (int v = 0; v < 2; v++)
        for (int g = 0; g < QUADS / 4; g++)
            for (int j = 0; j < 16; j++) SW[v][g][j] = 1e-2f * (float)(1 + (g + j + v) % 5);
    tile(16, 1, 2000);  // warm-up
    const double pk = peak(200000000L);
    printf("vpdpbusd alone:                        %.2f G/s  (%.0f GOPS)\n", pk / 1e9, pk * 128 / 1e9);
    const double bf = peak_bf16(200000000L);
    printf("vdpbf16ps alone:                       %.2f G/s  (%.0f GFLOPS)\n", bf / 1e9, bf * 64 / 1e9);
    const struct { const char *name; int group, epilogue; } cases[] = {
        {"6x2 tile, no epilogue:                ", 16, 0},
        {"6x2 tile, int8 epilogue (group 128):  ", 32, 1},
        {"6x2 tile, int4 epilogue (group 64):   ", 16, 1},
    };
    for (int c = 0; c < 3; c++) {
        const double r = tile(cases[c].group, cases[c].epilogue, 300000L);
        printf("%s %.2f G/s  (%.0f GOPS, %.0f %% of vpdpbusd alone)\n", cases[c].name, r / 1e9, r * 128 / 1e9,
               100 * r / pk);
    }
    return 0;
}
