/* Decode attention on the CPU: one query row per sequence over its paged K/V, read once at
 * memory speed.
 *
 * The keys of a sequence are cut into chunks of CHUNK; a task is one (sequence, KV head,
 * chunk), so two cores share even one sequence of one KV head (split-K). A task scores
 * the n_rep query heads of its KV head against each key (K read once for all of them),
 * takes exp(score - max) and sums probability-weighted V rows, leaving (max, sum, acc)
 * for its chunk; the chunks of each head are then merged. float32 or bfloat16 caches, the
 * query and output in the same dtype; the math in float32.
 *
 * The loops are plain C that GCC vectorizes under each instruction set's target pragma
 * (the file's body is compiled three times: portable, AVX2, AVX-512), chosen at run time.
 *
 * Python: decode(q, k, v, out, tables, positions, nseq, hq, hkv, d, block_size, max_blocks,
 *                window, scale, bf16, threads)        every pointer from a contiguous tensor
 *         isa() -> str, set_isa(str) -> str, supported_isas() -> tuple
 * C: the capsule `api` (decode_cpu_api.h), for kernels/decoder_cpu.c
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu_common.h"

#define ABI_VERSION 1
#define CHUNK 256      /* keys per task */
#define MAX_REP 64     /* query heads per KV head */

#include "decode_cpu_api.h"  /* args_t */

typedef struct {
    int64_t seq, head, lo, hi;  /* KV head `head` of sequence `seq`, keys [lo, hi) */
} task_t;

/* q . k over d floats. The SIMD versions sum the lanes as a tree: a compiler's reduction
 * adds them one after another, and those dependent adds cost more than the products. */
static inline float dot_scalar(const float *q, const float *k, int64_t d) {
    float sum = 0.0f;
    for (int64_t i = 0; i < d; i++) sum += q[i] * k[i];
    return sum;
}

/* q against four keys at once: out[i] = q . k[i]. */
static inline void dot4_scalar(const float *q, const float *const k[4], int64_t d, float out[4]) {
    for (int u = 0; u < 4; u++) out[u] = dot_scalar(q, k[u], d);
}

#define ISA scalar
#define DOT4 dot4_scalar
#include "decode_cpu_dims.h"
#undef DOT4
#undef ISA

#ifdef HAVE_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
static inline float dot_avx2(const float *q, const float *k, int64_t d) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float sum = _mm_cvtss_f32(s);
    for (; i < d; i++) sum += q[i] * k[i];
    return sum;
}
/* Four keys' dot products in four accumulators, summed together at the end (three hadds
 * for the four): more independent work per load, fewer shuffles per score. */
static inline void dot4_avx2(const float *q, const float *const k[4], int64_t d, float out[4]) {
    if (d % 8) {
        for (int u = 0; u < 4; u++) out[u] = dot_avx2(q, k[u], d);
        return;
    }
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 8) {
        const __m256 qv = _mm256_loadu_ps(q + i);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[0] + i), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[1] + i), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[2] + i), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[3] + i), a3);
    }
    const __m256 s01 = _mm256_hadd_ps(a0, a1), s23 = _mm256_hadd_ps(a2, a3), s = _mm256_hadd_ps(s01, s23);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
}

#define ISA avx2
#define DOT4 dot4_avx2
#include "decode_cpu_dims.h"
#undef DOT4
#undef ISA
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")
static inline float dot_avx512(const float *q, const float *k, int64_t d) {
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(k + i), acc);
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < d; i++) sum += q[i] * k[i];
    return sum;
}
static inline __m256 fold512(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

static inline void dot4_avx512(const float *q, const float *const k[4], int64_t d, float out[4]) {
    if (d % 16) {
        for (int u = 0; u < 4; u++) out[u] = dot_avx512(q, k[u], d);
        return;
    }
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
        const __m512 qv = _mm512_loadu_ps(q + i);
        a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k[0] + i), a0);
        a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k[1] + i), a1);
        a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k[2] + i), a2);
        a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k[3] + i), a3);
    }
    const __m256 s01 = _mm256_hadd_ps(fold512(a0), fold512(a1)), s23 = _mm256_hadd_ps(fold512(a2), fold512(a3));
    const __m256 s = _mm256_hadd_ps(s01, s23);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
}

#define ISA avx512
#define DOT4 dot4_avx512
#include "decode_cpu_dims.h"
#undef DOT4
#undef ISA
#pragma GCC pop_options
#endif

typedef void (*task_fn)(const args_t *, const task_t *, float *, float *, float *);

#define BY_DIM(isa) (d == 64 ? task_##isa##_64 : d == 128 ? task_##isa##_128 : task_##isa##_any)

static task_fn pick(int64_t d) {
#ifdef HAVE_X86
    if (current_isa == ISA_AVX512) return BY_DIM(avx512);
    if (current_isa == ISA_AVX2) return BY_DIM(avx2);
#endif
    return BY_DIM(scalar);
}

/* Merge the chunks of every (sequence, query head) and write the output row. */
static void merge(const args_t *a, const task_t *tasks, int64_t ntasks, const float *m, const float *l,
                  const float *acc) {
    const int64_t rep = a->hq / a->hkv, d = a->d;
    int64_t t = 0;
    while (t < ntasks) {
        int64_t end = t;
        while (end < ntasks && tasks[end].seq == tasks[t].seq && tasks[end].head == tasks[t].head) end++;
        for (int64_t r = 0; r < rep; r++) {
            float top = -INFINITY, total = 0.0f;
            for (int64_t c = t; c < end; c++) top = fmaxf(top, m[c * rep + r]);
            float row[1024];
            for (int64_t i = 0; i < d; i++) row[i] = 0.0f;
            for (int64_t c = t; c < end; c++) {
                float w = m[c * rep + r] == -INFINITY ? 0.0f : expf(m[c * rep + r] - top);
                total += w * l[c * rep + r];
                const float *src = acc + (c * rep + r) * d;
                for (int64_t i = 0; i < d; i++) row[i] += w * src[i];
            }
            float inv = total > 0.0f ? 1.0f / total : 0.0f;
            int64_t at = (tasks[t].seq * a->hq + tasks[t].head * rep + r) * d;
            for (int64_t i = 0; i < d; i++) {
                if (a->bf16) ((uint16_t *)a->out)[at + i] = float_to_bf16(row[i] * inv);
                else ((float *)a->out)[at + i] = row[i] * inv;
            }
        }
        t = end;
    }
}

static int run(const args_t *a, int threads) {
    const int64_t rep = a->hq / a->hkv;
    int64_t ntasks = 0;
    for (int64_t s = 0; s < a->nseq; s++) {
        int64_t hi = a->positions[s] + 1, lo = a->window > 0 && hi > a->window ? hi - a->window : 0;
        ntasks += a->hkv * ((hi - lo + CHUNK - 1) / CHUNK);
    }
    task_t *tasks = malloc(sizeof(task_t) * (size_t)ntasks);
    float *m = malloc(sizeof(float) * (size_t)(ntasks * rep)), *l = malloc(sizeof(float) * (size_t)(ntasks * rep));
    float *acc = malloc(sizeof(float) * (size_t)(ntasks * rep * a->d));
    if (!tasks || !m || !l || !acc) {
        free(tasks); free(m); free(l); free(acc);
        return 0;
    }
    int64_t n = 0;
    for (int64_t s = 0; s < a->nseq; s++) {
        int64_t hi = a->positions[s] + 1, lo = a->window > 0 && hi > a->window ? hi - a->window : 0;
        for (int64_t h = 0; h < a->hkv; h++)
            for (int64_t c = lo; c < hi; c += CHUNK) tasks[n++] = (task_t){s, h, c, c + CHUNK < hi ? c + CHUNK : hi};
    }
    task_fn fn = pick(a->d);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && ntasks > 1)
#endif
    for (int64_t t = 0; t < ntasks; t++) fn(a, &tasks[t], m + t * rep, l + t * rep, acc + t * rep * a->d);
    (void)threads;
    merge(a, tasks, ntasks, m, l, acc);
    free(tasks); free(m); free(l); free(acc);
    return 1;
}

static PyObject *py_decode(PyObject *self, PyObject *args) {
    unsigned long long q, k, v, out, tables, positions;
    long long nseq, hq, hkv, d, bs, max_blocks, window;
    double scale;
    int bf16, threads;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLLLLdii", &q, &k, &v, &out, &tables, &positions, &nseq, &hq, &hkv, &d, &bs,
                          &max_blocks, &window, &scale, &bf16, &threads))
        return NULL;
    if (nseq < 1 || hkv < 1 || hq % hkv || hq / hkv > MAX_REP || d < 1 || d > 1024 || bs < 1 || max_blocks < 1)
        return PyErr_Format(PyExc_ValueError, "decode attention cannot take %lld sequences, %lld query heads over "
                            "%lld KV heads of %lld (at most %d query heads a KV head, head size 1024), block size %lld",
                            nseq, hq, hkv, d, MAX_REP, bs);
    const int64_t *pos = (const int64_t *)(uintptr_t)positions;
    for (long long s = 0; s < nseq; s++)
        if (pos[s] < 0 || pos[s] >= max_blocks * bs)
            return PyErr_Format(PyExc_ValueError, "sequence %lld is at position %lld, past its %lld blocks of %lld",
                                s, (long long)pos[s], max_blocks, bs);
    args_t a = {(const void *)(uintptr_t)q, (const void *)(uintptr_t)k, (const void *)(uintptr_t)v, (void *)(uintptr_t)out,
                (const int64_t *)(uintptr_t)tables, pos, nseq, hq, hkv, d, bs, max_blocks, window, (float)scale, bf16};
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = run(&a, threads < 1 ? 1 : threads);
    Py_END_ALLOW_THREADS
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", py_decode, METH_VARARGS, "one query row per sequence over its paged K/V"},
    ISA_METHODS,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode_cpu", NULL, -1, methods, NULL, NULL, NULL, NULL};

static const decode_cpu_api api = {run};

PyMODINIT_FUNC PyInit__decode_cpu(void) {
    PyObject *mod = create_module(&module, 0, ABI_VERSION);
    if (mod && !add_capsule(mod, (void *)&api, DECODE_CPU_API_NAME)) Py_CLEAR(mod);
    return mod;
}
