// AVX-512 math shared by the DiT's elementwise kernels (dit_ops.c) and the GEMM epilogue (x86_avx512.c): e^x and
// SiLU on 16 lanes. Functions carry their own target attribute (the package builds without -march); include only
// from x86-64 code that the dispatcher calls on AVX-512 CPUs.
#ifndef SANA_X86_AVX512_MATH_H
#define SANA_X86_AVX512_MATH_H

#include <immintrin.h>

#define T512F __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/// e^x on 16 lanes: the same range reduction and polynomial as exp_vec (internal.h), with FMAs and 2ⁿ by vscalefps.
T512F static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

T512F static inline __m512 silu512(__m512 v) {
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

#endif
