/* GGUF-quantized weights times activations on the CPU, computed from the blocks as the
 * file stores them: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K.
 *
 * Every type is read as sub-blocks of 32 weights: 32 integer codes and, per half of 16,
 * a scale s and an offset m with w = s * code + m (Q8_0's codes are signed, the others'
 * unsigned). The activations are quantized to int8 per 32 (d = max|x| / 127, with the sum
 * of the codes per 16), so a sub-block's dot product is
 *
 *     d * (s_lo * sum_lo(code * q) + s_hi * sum_hi(code * q)) + m_lo * d * sum_lo(q) + m_hi * ...
 *
 * with the integer sums in SIMD registers: AVX2 (maddubs + madd) or AVX-512 VNNI (dpbusd),
 * chosen at run time, and portable C elsewhere. The weight bytes are read once per call,
 * whatever the number of activation rows, so batch-1 decode runs at memory speed.
 *
 * Python calls (the GIL is released; every pointer comes from a contiguous torch tensor
 * that kernels/gguf_linear.py checked):
 *   matmul(type, w, n, k, x, x_bf16, m, out, out_bf16, threads)  out (m, n) = x (m, k) @ w.T
 *   dequantize(type, w, n, k, out, threads)                       out (n, k) float32
 *   isa() -> str, set_isa(str) -> str, supported_isas() -> tuple
 * and, for other C extensions (kernels/decoder_cpu.c), the capsule `api` (gguf_cpu_api.h).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_common.h"
#include "gguf_cpu_api.h"

#define ABI_VERSION 1

/* ggml's type ids, as GGUF files store them. */
enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };

typedef struct {
    int block_elems;  /* weights per block */
    int block_bytes;  /* bytes per block */
} type_info;

static int type_lookup(int type, type_info *info) {
    *info = (type_info){32, 0};
    switch (type) {
    case T_Q4_0: *info = (type_info){32, 18}; return 1;
    case T_Q4_1: *info = (type_info){32, 20}; return 1;
    case T_Q5_0: *info = (type_info){32, 22}; return 1;
    case T_Q5_1: *info = (type_info){32, 24}; return 1;
    case T_Q8_0: *info = (type_info){32, 34}; return 1;
    case T_Q4_K: *info = (type_info){256, 144}; return 1;
    case T_Q5_K: *info = (type_info){256, 176}; return 1;
    case T_Q6_K: *info = (type_info){256, 210}; return 1;
    default: return 0;
    }
}

/* -- scalars ------------------------------------------------------------------- */

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);  /* inf, nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  /* subnormal: normalize */
        exp = 113;
        while (!(mant & 0x400)) { mant <<= 1; exp--; }
        bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float rdh(const uint8_t *p) { return half_to_float(rd16(p)); }

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block. */
static inline void k4_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Sub-block j of a row: its scale and offset per half of 16 (sm = s_lo, s_hi, m_lo, m_hi). */
static inline void sub_params(int type, const uint8_t *row, int j, float sm[4]) {
    const uint8_t *b;
    float d, s, m;
    int sc, mn;
    switch (type) {
    case T_Q4_0: d = rdh(row + j * 18); s = d; m = -8.0f * d; break;
    case T_Q4_1: b = row + j * 20; s = rdh(b); m = rdh(b + 2); break;
    case T_Q5_0: d = rdh(row + j * 22); s = d; m = -16.0f * d; break;
    case T_Q5_1: b = row + j * 24; s = rdh(b); m = rdh(b + 2); break;
    case T_Q8_0: s = rdh(row + j * 34); m = 0.0f; break;
    case T_Q4_K:
    case T_Q5_K:
        b = row + (j >> 3) * (type == T_Q4_K ? 144 : 176);
        k4_scale_min(j & 7, b + 4, &sc, &mn);
        s = rdh(b) * (float)sc;
        m = -rdh(b + 2) * (float)mn;
        break;
    default: {  /* T_Q6_K: scales per 16, codes 0..63 centred on 32 */
        b = row + (j >> 3) * 210;
        const int8_t *scales = (const int8_t *)(b + 192);
        int sub = j & 7, base = (sub >> 2) * 8 + 2 * (sub & 3);
        d = rdh(b + 208);
        sm[0] = d * (float)scales[base];
        sm[1] = d * (float)scales[base + 1];
        sm[2] = -32.0f * sm[0];
        sm[3] = -32.0f * sm[1];
        return;
    }
    }
    sm[0] = sm[1] = s;
    sm[2] = sm[3] = m;
}

/* The 32 codes of sub-block j, portable C (Q8_0's as int8 stored in the same bytes). */
static inline void sub_codes(int type, const uint8_t *row, int j, uint8_t c[32]) {
    const uint8_t *b, *qs, *qh;
    uint32_t h;
    int i, sub, chunk;
    switch (type) {
    case T_Q4_0:
    case T_Q4_1:
        qs = row + j * (type == T_Q4_0 ? 18 : 20) + (type == T_Q4_0 ? 2 : 4);
        for (i = 0; i < 16; i++) { c[i] = qs[i] & 0xF; c[i + 16] = qs[i] >> 4; }
        break;
    case T_Q5_0:
    case T_Q5_1:
        b = row + j * (type == T_Q5_0 ? 22 : 24) + (type == T_Q5_0 ? 2 : 4);
        memcpy(&h, b, 4);
        qs = b + 4;
        for (i = 0; i < 16; i++) {
            c[i] = (qs[i] & 0xF) | (((h >> i) & 1) << 4);
            c[i + 16] = (qs[i] >> 4) | (((h >> (i + 16)) & 1) << 4);
        }
        break;
    case T_Q8_0: memcpy(c, row + j * 34 + 2, 32); break;
    case T_Q4_K:
    case T_Q5_K:
        sub = j & 7, chunk = sub >> 1;
        b = row + (j >> 3) * (type == T_Q4_K ? 144 : 176);
        qs = b + (type == T_Q4_K ? 16 : 48) + chunk * 32;
        for (i = 0; i < 32; i++) c[i] = (sub & 1) ? qs[i] >> 4 : qs[i] & 0xF;
        if (type == T_Q5_K) {
            qh = b + 16;
            for (i = 0; i < 32; i++) c[i] |= ((qh[i] >> sub) & 1) << 4;
        }
        break;
    default: {  /* T_Q6_K */
        sub = j & 7;
        int half = sub >> 2, within = sub & 3;
        b = row + (j >> 3) * 210;
        const uint8_t *ql = b + half * 64 + (within & 1) * 32;
        qh = b + 128 + half * 32;
        for (i = 0; i < 32; i++) {
            uint8_t lo = (within >= 2) ? ql[i] >> 4 : ql[i] & 0xF;
            c[i] = lo | (((qh[i] >> (2 * within)) & 3) << 4);
        }
    }
    }
}

/* -- activations: int8 per 32 ------------------------------------------------------ */

typedef struct {
    int8_t *q;   /* (m, k) codes */
    float *d;    /* (m, k / 32) scales */
    float *s;    /* (m, k / 32, 3) d * (sum of the codes): first 16, last 16, all 32 */
} qact;

static void quantize_row(const void *x, int bf16, int64_t k, int8_t *q, float *d, float *s) {
    float buf[32];
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            float v = bf16 ? bf16_to_float(((const uint16_t *)x)[b * 32 + i]) : ((const float *)x)[b * 32 + i];
            buf[i] = v;
            amax = fmaxf(amax, fabsf(v));
        }
        float dd = amax / 127.0f, inv = dd > 0.0f ? 1.0f / dd : 0.0f;
        int sum_lo = 0, sum_hi = 0;
        for (int i = 0; i < 32; i++) {
            int v = (int)nearbyintf(buf[i] * inv);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[b * 32 + i] = (int8_t)v;
            if (i < 16) sum_lo += v; else sum_hi += v;
        }
        d[b] = dd;
        s[3 * b] = dd * (float)sum_lo;
        s[3 * b + 1] = dd * (float)sum_hi;
        s[3 * b + 2] = dd * (float)(sum_lo + sum_hi);
    }
}

static int quantize_acts(const void *x, int bf16, int64_t m, int64_t k, qact *a) {
    a->q = malloc((size_t)(m * k));
    a->d = malloc(sizeof(float) * (size_t)(m * (k / 32)));
    a->s = malloc(sizeof(float) * (size_t)(m * (k / 32) * 3));
    if (!a->q || !a->d || !a->s) return 0;
    for (int64_t r = 0; r < m; r++) {
        const char *xr = (const char *)x + r * k * (bf16 ? 2 : 4);
        quantize_row(xr, bf16, k, a->q + r * k, a->d + r * (k / 32), a->s + r * (k / 32) * 3);
    }
    return 1;
}

static void free_acts(qact *a) { free(a->q); free(a->d); free(a->s); }

static inline void store(void *out, int bf16, int64_t i, float v) {
    if (bf16) ((uint16_t *)out)[i] = float_to_bf16(v);
    else ((float *)out)[i] = v;
}

/* -- the kernels -------------------------------------------------------------------- */

/* Rows [n0, n1) of the weight against every activation row: portable C. */
static void rows_scalar(int type, const uint8_t *w, int64_t row_bytes, int64_t n0, int64_t n1, int64_t k,
                        const qact *a, int64_t m, void *out, int out_bf16, int64_t n) {
    int is_signed = type == T_Q8_0;
    int64_t subs = k / 32;
    uint8_t c[32];
    float sm[4];
    for (int64_t r = n0; r < n1; r++) {
        const uint8_t *row = w + r * row_bytes;
        for (int64_t mi = 0; mi < m; mi++) {
            const int8_t *q = a->q + mi * k;
            const float *d = a->d + mi * subs, *s = a->s + mi * 3 * subs;
            float acc = 0.0f;
            for (int64_t j = 0; j < subs; j++) {
                sub_codes(type, row, (int)j, c);
                sub_params(type, row, (int)j, sm);
                int lo = 0, hi = 0;
                for (int i = 0; i < 16; i++) {
                    int cl = is_signed ? (int8_t)c[i] : c[i], ch = is_signed ? (int8_t)c[i + 16] : c[i + 16];
                    lo += cl * q[j * 32 + i];
                    hi += ch * q[j * 32 + 16 + i];
                }
                acc += d[j] * (sm[0] * (float)lo + sm[1] * (float)hi) + sm[2] * s[3 * j] + sm[3] * s[3 * j + 1];
            }
            store(out, out_bf16, mi * n + r, acc);
        }
    }
}

#ifdef HAVE_X86
/* How far ahead of the block in use the weights are prefetched: the decode loop does too
 * much per byte for the out-of-order window to cover memory latency on its own. */
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 2048
#endif

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SIMD_NAME rows_avx2
#define DOT_U8S8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#include "gguf_cpu_simd.h"
#undef SIMD_NAME
#undef DOT_U8S8
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#define SIMD_NAME rows_avx512
#define DOT_U8S8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#include "gguf_cpu_simd.h"
#undef SIMD_NAME
#undef DOT_U8S8
#pragma GCC pop_options
#endif

typedef void (*rows_fn)(int, const uint8_t *, int64_t, int64_t, int64_t, int64_t, const qact *, int64_t, void *, int,
                        int64_t);

static rows_fn pick_rows(void) {
#ifdef HAVE_X86
    if (current_isa == ISA_AVX512) return rows_avx512;
    if (current_isa == ISA_AVX2) return rows_avx2;
#endif
    return rows_scalar;
}

/* Output rows per task: a multiple of 4 keeps every thread's rows apart in the cache. */
#define ROW_TILE 16

static int run_matmul(int type, const uint8_t *w, int64_t n, int64_t k, const void *x, int x_bf16, int64_t m,
                      void *out, int out_bf16, int64_t ldo, int threads) {
    type_info info;
    type_lookup(type, &info);
    int64_t row_bytes = k / info.block_elems * info.block_bytes;
    qact a;
    if (!quantize_acts(x, x_bf16, m, k, &a)) { free_acts(&a); return 0; }
    rows_fn fn = pick_rows();
    int64_t tiles = (n + ROW_TILE - 1) / ROW_TILE;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (int64_t t = 0; t < tiles; t++) {
        int64_t n0 = t * ROW_TILE, n1 = n0 + ROW_TILE < n ? n0 + ROW_TILE : n;
        fn(type, w, row_bytes, n0, n1, k, &a, m, out, out_bf16, ldo);
    }
    (void)threads;
    free_acts(&a);
    return 1;
}

static void run_dequantize(int type, const uint8_t *w, int64_t n, int64_t k, float *out, int threads) {
    type_info info;
    type_lookup(type, &info);
    int64_t row_bytes = k / info.block_elems * info.block_bytes;
    int is_signed = type == T_Q8_0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n > 1)
#endif
    for (int64_t r = 0; r < n; r++) {
        uint8_t c[32];
        float sm[4];
        for (int64_t j = 0; j < k / 32; j++) {
            sub_codes(type, w + r * row_bytes, (int)j, c);
            sub_params(type, w + r * row_bytes, (int)j, sm);
            float *o = out + r * k + j * 32;
            for (int i = 0; i < 32; i++) {
                float code = is_signed ? (float)(int8_t)c[i] : (float)c[i];
                o[i] = sm[i >> 4] * code + sm[2 + (i >> 4)];
            }
        }
    }
    (void)threads;
}

/* -- Python -------------------------------------------------------------------------- */

static int check_shape(int type, long long n, long long k) {
    type_info info;
    if (!type_lookup(type, &info)) {
        PyErr_Format(PyExc_ValueError, "GGUF type id %d is not one this kernel computes", type);
        return 0;
    }
    if (n <= 0 || k <= 0 || k % info.block_elems) {
        PyErr_Format(PyExc_ValueError, "a (%lld, %lld) weight of GGUF type %d: the input size must be a positive "
                     "multiple of %d", n, k, type, info.block_elems);
        return 0;
    }
    return 1;
}

static PyObject *py_matmul(PyObject *self, PyObject *args) {
    int type, x_bf16, out_bf16, threads;
    unsigned long long w, x, out;
    long long n, k, m;
    if (!PyArg_ParseTuple(args, "iKLLKiLKii", &type, &w, &n, &k, &x, &x_bf16, &m, &out, &out_bf16, &threads))
        return NULL;
    if (!check_shape(type, n, k)) return NULL;
    if (m <= 0) return PyErr_Format(PyExc_ValueError, "matmul needs at least one activation row, got %lld", m);
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = run_matmul(type, (const uint8_t *)(uintptr_t)w, n, k, (const void *)(uintptr_t)x, x_bf16, m,
                    (void *)(uintptr_t)out, out_bf16, n, threads < 1 ? 1 : threads);
    Py_END_ALLOW_THREADS
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_dequantize(PyObject *self, PyObject *args) {
    int type, threads;
    unsigned long long w, out;
    long long n, k;
    if (!PyArg_ParseTuple(args, "iKLLKi", &type, &w, &n, &k, &out, &threads)) return NULL;
    if (!check_shape(type, n, k)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    run_dequantize(type, (const uint8_t *)(uintptr_t)w, n, k, (float *)(uintptr_t)out, threads < 1 ? 1 : threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"matmul", py_matmul, METH_VARARGS, "out (m, n) = x (m, k) @ dequantized(w (n, k)).T"},
    {"dequantize", py_dequantize, METH_VARARGS, "out (n, k) float32 = the weights the blocks hold"},
    ISA_METHODS,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gguf_cpu", NULL, -1, methods, NULL, NULL, NULL, NULL};

static int known_type(int type, int *block_elems) {
    type_info info;
    int ok = type_lookup(type, &info);
    *block_elems = info.block_elems;
    return ok;
}

static const gguf_cpu_api api = {run_matmul, known_type};

PyMODINIT_FUNC PyInit__gguf_cpu(void) {
    PyObject *mod = create_module(&module, 1, ABI_VERSION);
    if (mod && !add_capsule(mod, (void *)&api, GGUF_CPU_API_NAME)) Py_CLEAR(mod);
    return mod;
}
