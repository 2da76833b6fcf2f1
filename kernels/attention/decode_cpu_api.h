/* The C interface of decode_cpu.c for other C extensions (kernels/decoder_cpu.c): a
 * capsule `api` on the module holds a decode_cpu_api, fetched with
 * PyCapsule_Import(DECODE_CPU_API_NAME, 0). */
#ifndef LOOPCODER_DECODE_CPU_API_H
#define LOOPCODER_DECODE_CPU_API_H

#include <stdint.h>

typedef struct {
    const void *q, *k, *v;  /* q (nseq, hq, d); caches (blocks, bs, hkv, d); q, caches and out in one dtype */
    void *out;              /* (nseq, hq, d) */
    const int64_t *tables, *positions;  /* (nseq, max_blocks), (nseq,): the query's position, the last key */
    int64_t nseq, hq, hkv, d, bs, max_blocks, window;  /* window 0: every key */
    float scale;
    int bf16;
} args_t;

typedef struct {
    /* One query row per sequence over its paged K/V; 0 when out of memory. */
    int (*decode)(const args_t *a, int threads);
} decode_cpu_api;

#define DECODE_CPU_API_NAME "loopcoder.kernels.attention._decode_cpu.api"

#endif
