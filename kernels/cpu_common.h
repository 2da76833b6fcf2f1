/* What the CPU kernels' C extensions share (kernels/gguf_cpu.c, kernels/attention/decode_cpu.c):
 * bfloat16 conversions, and the instruction set a call runs on, picked at import and
 * changeable from Python (isa, supported_isas, set_isa). Include after Python.h. */
#ifndef LOOPCODER_CPU_COMMON_H
#define LOOPCODER_CPU_COMMON_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40);  /* nan stays nan */
    bits += 0x7FFF + ((bits >> 16) & 1);  /* round to nearest even */
    return (uint16_t)(bits >> 16);
}

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_X86 1
#include <immintrin.h>
#endif

enum { ISA_SCALAR, ISA_AVX2, ISA_AVX512 };
static const char *ISA_NAMES[] = {"scalar", "avx2", "avx512"};
static int best_isa = ISA_SCALAR, current_isa = ISA_SCALAR;

/* The best set this CPU (and OS) runs; AVX-512 also needs VNNI where `vnni` is set. */
static void detect_isa(int vnni) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        best_isa = ISA_AVX2;
    if (best_isa == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        (!vnni || __builtin_cpu_supports("avx512vnni")))
        best_isa = ISA_AVX512;
#else
    (void)vnni;
#endif
    current_isa = best_isa;
}

static PyObject *py_isa(PyObject *self, PyObject *unused) { return PyUnicode_FromString(ISA_NAMES[current_isa]); }

static PyObject *py_supported_isas(PyObject *self, PyObject *unused) {
    PyObject *t = PyTuple_New(best_isa + 1);
    if (!t) return NULL;
    for (int i = 0; i <= best_isa; i++) PyTuple_SET_ITEM(t, i, PyUnicode_FromString(ISA_NAMES[i]));
    return t;
}

static PyObject *py_set_isa(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    for (int i = 0; i <= best_isa; i++) {
        if (strcmp(name, ISA_NAMES[i]) == 0) {
            current_isa = i;
            return PyUnicode_FromString(ISA_NAMES[current_isa]);
        }
    }
    return PyErr_Format(PyExc_ValueError, "instruction set %R is not one this CPU has (it has up to %s)", arg,
                        ISA_NAMES[best_isa]);
}

#define ISA_METHODS                                                                                            \
    {"isa", py_isa, METH_NOARGS, "the instruction set in use"},                                                \
    {"supported_isas", py_supported_isas, METH_NOARGS, "the instruction sets this CPU runs, slowest first"},   \
    {"set_isa", py_set_isa, METH_O, "use this instruction set (scalar, avx2, avx512)"}

/* The module's init: detect the instruction set, create the module, add ABI_VERSION. */
static PyObject *create_module(struct PyModuleDef *def, int vnni, int abi) {
    detect_isa(vnni);
    PyObject *mod = PyModule_Create(def);
    if (mod && PyModule_AddIntConstant(mod, "ABI_VERSION", abi) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}

/* A capsule `api` on the module, holding `api` under `name` for other C extensions; 0 on error. */
static inline int add_capsule(PyObject *mod, void *api, const char *name) {
    PyObject *capsule = PyCapsule_New(api, name, NULL);
    if (!capsule) return 0;
    if (PyModule_AddObject(mod, "api", capsule) < 0) {
        Py_DECREF(capsule);
        return 0;
    }
    return 1;
}

#endif
