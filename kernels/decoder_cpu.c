/* One decode step of a Llama-family decoder on the CPU, every layer in one call: the
 * Python of a layer (a dozen torch ops, each some microseconds to dispatch) costs more than
 * its arithmetic when one token is decoded, so the whole stack runs here.
 *
 * For each of the B rows (one new token of each sequence), layer by layer:
 *
 *     x = rms_norm(h) * in_norm
 *     q, k, v = x @ Wqkv.T (+ bias)        GGUF blocks, gguf_cpu.c's kernel; 1 or 3 matrices
 *     q, k = rms_norm per head (Qwen3)     then RoPE (rotate-half), k and v into the pages
 *     a = attention(q, the sequence's pages)   decode_cpu.c's kernel
 *     h += a @ Wo.T
 *     x = rms_norm(h) * post_norm
 *     h += (silu(x @ Wgate.T) * (x @ Wup.T)) @ Wdown.T    gate/up: 1 or 2 matrices
 *
 * h is float32 throughout (the residual stream is not rounded between layers); the caches
 * are float32 or bfloat16, and the query and the attention output take the cache's dtype.
 * The matrix products and attention are the other extensions' (their capsules, see
 * gguf_cpu_api.h and attention/decode_cpu_api.h), so they run in the instruction set each
 * of those uses; what is here (norms, RoPE, SiLU, the stores) is plain C.
 *
 * Python: step(plan, layers, hidden, hq, hkv, d, inter, eps, scale, h, rows, positions,
 *              slots, tables, max_blocks, caches, blocks, block_size, cache_bf16, cos, sin,
 *              rope_rows, threads)
 *   plan: (layers, PLAN_SLOTS) int64, the layer_t below per row (kernels/decoder_cpu.py
 *   writes it); every other pointer is a contiguous tensor's data, checked in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_common.h"
#include "gguf_cpu_api.h"
#include "attention/decode_cpu_api.h"

#define ABI_VERSION 1

/* One linear layer: GGUF blocks (type id, pointer, n outputs, k inputs) and a float32 bias or 0. */
typedef struct {
    int64_t type, w, n, k, bias;
} lin_t;

/* One decoder layer, as int64 slots (pointers as integers): the plan's row. */
typedef struct {
    int64_t in_norm, post_norm, q_norm, k_norm;  /* float32 weights; q_norm, k_norm 0 without them */
    int64_t window;                              /* 0: every key */
    int64_t nqkv;                                /* 1 (joined) or 3 */
    lin_t qkv[3];
    lin_t o;
    int64_t ngu;                                 /* 1 (joined) or 2 */
    lin_t gu[2];
    lin_t down;
} layer_t;

#define PLAN_SLOTS ((int)(sizeof(layer_t) / sizeof(int64_t)))

static const gguf_cpu_api *gguf;
static const decode_cpu_api *attention;

typedef struct {
    int64_t hidden, hq, hkv, d, inter;
    float eps, scale;
} shape_t;

static void rms_norm(const float *x, const float *w, int64_t n, float eps, float *out) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

/* Rotate-half RoPE of one head in place: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s). */
static void rope(float *x, const float *cos, const float *sin, int64_t d) {
    const int64_t half = d / 2;
    for (int64_t i = 0; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cos[i] - x2 * sin[i];
        x[i + half] = x2 * cos[i + half] + x1 * sin[i + half];
    }
}

static void put(void *dst, int bf16, int64_t at, const float *src, int64_t n) {
    if (bf16) {
        uint16_t *o = (uint16_t *)dst + at;
        for (int64_t i = 0; i < n; i++) o[i] = float_to_bf16(src[i]);
    } else {
        memcpy((float *)dst + at, src, sizeof(float) * (size_t)n);
    }
}

/* out (rows, sum of the parts' n) = x @ [parts].T + biases, the parts side by side. */
static int project(const lin_t *parts, int64_t nparts, const void *x, int x_bf16, int64_t rows, float *out, int threads) {
    int64_t width = 0, at = 0;
    for (int64_t p = 0; p < nparts; p++) width += parts[p].n;
    for (int64_t p = 0; p < nparts; p++) {
        const lin_t *l = &parts[p];
        if (!gguf->matmul((int)l->type, (const uint8_t *)(uintptr_t)l->w, l->n, l->k, x, x_bf16, rows, out + at, 0, width,
                          threads))
            return 0;
        if (l->bias) {
            const float *b = (const float *)(uintptr_t)l->bias;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t i = 0; i < l->n; i++) out[r * width + at + i] += b[i];
        }
        at += l->n;
    }
    return 1;
}

typedef struct {
    float *x, *qkv, *q, *attn, *tmp, *gu;
} buffers_t;

static int run(const layer_t *plan, int64_t layers, const shape_t *s, float *h, int64_t rows, const int64_t *positions,
               const int64_t *slots, const int64_t *tables, int64_t max_blocks, const int64_t *caches,
               int64_t block_size, int cache_bf16, const float *cos, const float *sin, int threads) {
    const int64_t H = s->hidden, D = s->d, qw = s->hq * D, kw = s->hkv * D, qkvw = qw + 2 * kw, I = s->inter;
    const size_t el = cache_bf16 ? 2 : 4;
    buffers_t b = {
        malloc(sizeof(float) * (size_t)(rows * H)), malloc(sizeof(float) * (size_t)(rows * qkvw)),
        malloc(el * (size_t)(rows * qw)), malloc(el * (size_t)(rows * qw)),
        malloc(sizeof(float) * (size_t)(rows * H)), malloc(sizeof(float) * (size_t)(rows * 2 * I)),
    };
    int ok = b.x && b.qkv && b.q && b.attn && b.tmp && b.gu;
    for (int64_t li = 0; ok && li < layers; li++) {
        const layer_t *L = &plan[li];
        void *kc = (void *)(uintptr_t)caches[2 * li], *vc = (void *)(uintptr_t)caches[2 * li + 1];
        for (int64_t r = 0; r < rows; r++) rms_norm(h + r * H, (const float *)(uintptr_t)L->in_norm, H, s->eps, b.x + r * H);
        if (!(ok = project(L->qkv, L->nqkv, b.x, 0, rows, b.qkv, threads))) break;
        for (int64_t r = 0; r < rows; r++) {
            float *row = b.qkv + r * qkvw;
            const float *c = cos + positions[r] * D, *sn = sin + positions[r] * D;
            for (int64_t hd = 0; hd < s->hq + s->hkv; hd++) {
                float *x = row + hd * D;
                const int64_t is_q = hd < s->hq;
                const int64_t norm = is_q ? L->q_norm : L->k_norm;
                if (norm) rms_norm(x, (const float *)(uintptr_t)norm, D, s->eps, x);
                rope(x, c, sn, D);
            }
            put(b.q, cache_bf16, r * qw, row, qw);
            const int64_t at = slots[r] * kw;
            put(kc, cache_bf16, at, row + qw, kw);
            put(vc, cache_bf16, at, row + qw + kw, kw);
        }
        const args_t a = {b.q, kc, vc, b.attn, tables, positions, rows, s->hq, s->hkv, D, block_size, max_blocks,
                          L->window, s->scale, cache_bf16};
        if (!(ok = attention->decode(&a, threads))) break;
        if (!(ok = project(&L->o, 1, b.attn, cache_bf16, rows, b.tmp, threads))) break;
        for (int64_t i = 0; i < rows * H; i++) h[i] += b.tmp[i];
        for (int64_t r = 0; r < rows; r++)
            rms_norm(h + r * H, (const float *)(uintptr_t)L->post_norm, H, s->eps, b.x + r * H);
        if (!(ok = project(L->gu, L->ngu, b.x, 0, rows, b.gu, threads))) break;
        float *act = b.gu;  /* silu(gate) * up, packed into the first I columns of each row, rows in place */
        for (int64_t r = 0; r < rows; r++) {
            const float *g = b.gu + r * 2 * I, *u = g + I;
            float *o = act + r * I;
            for (int64_t i = 0; i < I; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        }
        if (!(ok = project(&L->down, 1, act, 0, rows, b.tmp, threads))) break;
        for (int64_t i = 0; i < rows * H; i++) h[i] += b.tmp[i];
    }
    free(b.x); free(b.qkv); free(b.q); free(b.attn); free(b.tmp); free(b.gu);
    return ok;
}

/* The plan's shapes against each other, so a bad plan is refused, never run. */
static int check_plan(const layer_t *plan, int64_t layers, const shape_t *s) {
    const int64_t widths[3] = {s->hq * s->d, s->hkv * s->d, s->hkv * s->d};
    for (int64_t li = 0; li < layers; li++) {
        const layer_t *L = &plan[li];
        if (!L->in_norm || !L->post_norm || (L->nqkv != 1 && L->nqkv != 3) || (L->ngu != 1 && L->ngu != 2)) goto bad;
        int64_t total = 0;
        const lin_t *all[8];
        int n = 0;
        for (int64_t p = 0; p < L->nqkv; p++) {
            if (L->nqkv == 3 && L->qkv[p].n != widths[p]) goto bad;
            total += L->qkv[p].n;
            all[n++] = &L->qkv[p];
        }
        if (total != widths[0] + widths[1] + widths[2]) goto bad;
        total = 0;
        for (int64_t p = 0; p < L->ngu; p++) {
            total += L->gu[p].n;
            all[n++] = &L->gu[p];
        }
        if (total != 2 * s->inter || (L->ngu == 2 && L->gu[0].n != s->inter)) goto bad;
        all[n++] = &L->o;
        all[n++] = &L->down;
        if (L->o.n != s->hidden || L->o.k != widths[0] || L->down.n != s->hidden || L->down.k != s->inter) goto bad;
        for (int i = 0; i < n; i++) {
            int block = 0;
            if (!all[i]->w || !gguf->known_type((int)all[i]->type, &block) || all[i]->k % block) goto bad;
            if (i < n - 2 && all[i]->k != s->hidden) goto bad;
        }
        continue;
    bad:
        PyErr_Format(PyExc_ValueError, "decoder plan: layer %lld does not fit the model's shapes", (long long)li);
        return 0;
    }
    return 1;
}

static PyObject *py_step(PyObject *self, PyObject *args) {
    unsigned long long plan, h, positions, slots, tables, caches, cos, sin;
    long long layers, hidden, hq, hkv, d, inter, rows, max_blocks, blocks, block_size, rope_rows;
    double eps, scale;
    int cache_bf16, threads;
    if (!PyArg_ParseTuple(args, "KLLLLLLddKLKKKLKLLiKKLi", &plan, &layers, &hidden, &hq, &hkv, &d, &inter, &eps, &scale,
                          &h, &rows, &positions, &slots, &tables, &max_blocks, &caches, &blocks, &block_size,
                          &cache_bf16, &cos, &sin, &rope_rows, &threads))
        return NULL;
    if (layers < 1 || hidden < 1 || hkv < 1 || hq % hkv || d < 2 || d % 2 || d > 1024 || inter < 1 || rows < 1 ||
        block_size < 1 || max_blocks < 1 || blocks < 1)
        return PyErr_Format(PyExc_ValueError, "decoder step: %lld layers, hidden %lld, %lld/%lld heads of %lld, "
                            "intermediate %lld, %lld rows, block size %lld: not a shape it runs", layers, hidden, hq,
                            hkv, d, inter, rows, block_size);
    const shape_t s = {hidden, hq, hkv, d, inter, (float)eps, (float)scale};
    const layer_t *p = (const layer_t *)(uintptr_t)plan;
    if (!check_plan(p, layers, &s)) return NULL;
    const int64_t *pos = (const int64_t *)(uintptr_t)positions, *slot = (const int64_t *)(uintptr_t)slots;
    const int64_t *table = (const int64_t *)(uintptr_t)tables;
    for (long long r = 0; r < rows; r++) {
        if (pos[r] < 0 || pos[r] >= rope_rows || pos[r] >= max_blocks * block_size || slot[r] < 0 ||
            slot[r] >= blocks * block_size)
            return PyErr_Format(PyExc_ValueError, "decoder step: row %lld at position %lld, slot %lld, is outside its "
                                "%lld blocks of %lld, the cache of %lld blocks or the RoPE table of %lld rows",
                                r, (long long)pos[r], (long long)slot[r], max_blocks, block_size, blocks, rope_rows);
        for (long long i = 0; i <= pos[r] / block_size; i++)
            if (table[r * max_blocks + i] < 0 || table[r * max_blocks + i] >= blocks)
                return PyErr_Format(PyExc_ValueError, "decoder step: row %lld's block table names block %lld of a "
                                    "cache of %lld", r, (long long)table[r * max_blocks + i], blocks);
    }
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = run(p, layers, &s, (float *)(uintptr_t)h, rows, pos, slot, table, max_blocks, (const int64_t *)(uintptr_t)caches,
             block_size, cache_bf16, (const float *)(uintptr_t)cos, (const float *)(uintptr_t)sin,
             threads < 1 ? 1 : threads);
    Py_END_ALLOW_THREADS
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"step", py_step, METH_VARARGS, "every layer of one decode step, h (rows, hidden) float32 in place"},
    ISA_METHODS,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decoder_cpu", NULL, -1, methods, NULL, NULL, NULL, NULL};

/* The capsule `api` of the extension `module` (imported first: PyCapsule_Import only walks attributes). */
static const void *import_api(const char *module, const char *name) {
    PyObject *mod = PyImport_ImportModule(module);
    if (!mod) return NULL;
    Py_DECREF(mod);
    return PyCapsule_Import(name, 0);
}

PyMODINIT_FUNC PyInit__decoder_cpu(void) {
    gguf = import_api("loopcoder.kernels._gguf_cpu", GGUF_CPU_API_NAME);
    if (!gguf) return NULL;
    attention = import_api("loopcoder.kernels.attention._decode_cpu", DECODE_CPU_API_NAME);
    if (!attention) return NULL;
    PyObject *mod = create_module(&module, 0, ABI_VERSION);
    if (mod && PyModule_AddIntConstant(mod, "PLAN_SLOTS", PLAN_SLOTS) < 0) Py_CLEAR(mod);
    return mod;
}
