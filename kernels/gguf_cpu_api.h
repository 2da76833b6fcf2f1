/* The C interface of gguf_cpu.c for other C extensions (kernels/decoder_cpu.c): a capsule
 * `api` on the module holds a gguf_cpu_api, fetched with PyCapsule_Import(GGUF_CPU_API_NAME, 0). */
#ifndef LOOPCODER_GGUF_CPU_API_H
#define LOOPCODER_GGUF_CPU_API_H

#include <stdint.h>

typedef struct {
    /* out[i * ldo + j] = x (m, k) @ dequantized(w (n, k)).T, in the instruction set the
     * module uses; 0 when out of memory. The type and shape are the caller's to check. */
    int (*matmul)(int type, const uint8_t *w, int64_t n, int64_t k, const void *x, int x_bf16, int64_t m, void *out,
                  int out_bf16, int64_t ldo, int threads);
    int (*known_type)(int type, int *block_elems);  /* 1 where the type is computed here */
} gguf_cpu_api;

#define GGUF_CPU_API_NAME "loopcoder.kernels._gguf_cpu.api"

#endif
