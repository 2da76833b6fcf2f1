/* One decode-attention task of decode_cpu.c, compiled once per instruction set and head
 * size: BODY_NAME(x) names its functions, DIM is the head size (a constant, 64 or 128,
 * so the loops over it unroll without peeling, or `a->d`), DOT4(q, k[4], d, out[4]) the
 * instruction set's dot products of q with four keys. Plain loops elsewhere: `omp simd` lets GCC vectorize them, and exp
 * is a polynomial (Cephes' expf) that vectorizes where libm's would not. */

/* exp(x) for x <= 0 (a score minus the maximum): relative error about 1e-7. */
static inline float BODY_NAME(exp_neg)(float x) {
    x = x < -87.0f ? -87.0f : x;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick: plain additions, which vectorize. */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t i; float f; } scale;
    scale.i = (uint32_t)((int32_t)n + 127) << 23;
    return p * scale.f;
}

/* Row `at` (d values) of a float32 or bfloat16 tensor, as float32 (in buf for bfloat16). */
static inline const float *BODY_NAME(row)(const void *base, int bf16, int64_t at, int64_t d, float *buf) {
    if (!bf16) return (const float *)base + at;
    const uint16_t *src = (const uint16_t *)base + at;
#pragma omp simd
    for (int64_t i = 0; i < d; i++) {
        union { uint32_t i; float f; } u;
        u.i = (uint32_t)src[i] << 16;
        buf[i] = u.f;
    }
    return buf;
}

/* The next four (or the last m < 4) rows of the chunk's keys or values, walking their
 * blocks (the block and the offset in it move with the key, no division). Rows past m
 * repeat row 0: scored or weighted by 0, never kept. */
static inline void BODY_NAME(gather4)(const args_t *a, const int64_t *table, const void *base, int64_t head,
                                      int64_t m, int64_t *block, int64_t *offset, float buf[4][DIM],
                                      const float *rows[4]) {
    for (int64_t u = 0; u < 4; u++) {
        if (u < m) {
            const int64_t slot = table[*block] * a->bs + *offset;
            if (++*offset == a->bs) *offset = 0, ++*block;
            rows[u] = BODY_NAME(row)(base, a->bf16, (slot * a->hkv + head) * DIM, DIM, buf[u]);
        } else {
            rows[u] = rows[0];
        }
    }
}

static void BODY_NAME(task)(const args_t *a, const task_t *t, float *m_out, float *l_out, float *acc) {
    const int64_t rep = a->hq / a->hkv, d = DIM, n = t->hi - t->lo;
    const int64_t *table = a->tables + t->seq * a->max_blocks;
    float qf[rep][DIM], s[rep][CHUNK], buf[DIM];
    for (int64_t r = 0; r < rep; r++) {
        const float *src = BODY_NAME(row)(a->q, a->bf16, (t->seq * a->hq + t->head * rep + r) * d, d, buf);
        for (int64_t i = 0; i < d; i++) qf[r][i] = src[i] * a->scale;
    }
    /* Keys four at a time: each query head's dot products with the four are one DOT4. */
    float kbuf[4][DIM], vbuf[4][DIM];
    const float *kv[4];
    int64_t block = t->lo / a->bs, offset = t->lo % a->bs;
    for (int64_t j = 0; j < n; j += 4) {
        const int64_t m = n - j < 4 ? n - j : 4;
        BODY_NAME(gather4)(a, table, a->k, t->head, m, &block, &offset, kbuf, kv);
        for (int64_t r = 0; r < rep; r++) {
            float four[4];
            DOT4(qf[r], kv, d, four);
            for (int64_t u = 0; u < m; u++) s[r][j + u] = four[u];
        }
    }
    for (int64_t r = 0; r < rep; r++) {
        float top = -INFINITY, total = 0.0f;
#pragma omp simd reduction(max : top)
        for (int64_t j = 0; j < n; j++) top = s[r][j] > top ? s[r][j] : top;
#pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < n; j++) {
            const float p = BODY_NAME(exp_neg)(s[r][j] - top);
            s[r][j] = p;
            total += p;
        }
        m_out[r] = top;
        l_out[r] = total;
    }
    memset(acc, 0, sizeof(float) * (size_t)(rep * d));
    /* V four keys at a time: each output row is loaded and stored once per four keys, so
     * consecutive keys do not wait on each other's store. */
    const float *v[4];
    block = t->lo / a->bs, offset = t->lo % a->bs;
    for (int64_t j = 0; j < n; j += 4) {
        const int64_t m = n - j < 4 ? n - j : 4;
        BODY_NAME(gather4)(a, table, a->v, t->head, m, &block, &offset, vbuf, v);
        for (int64_t r = 0; r < rep; r++) {
            const float p0 = s[r][j], p1 = m > 1 ? s[r][j + 1] : 0.0f, p2 = m > 2 ? s[r][j + 2] : 0.0f,
                        p3 = m > 3 ? s[r][j + 3] : 0.0f;
            float *o = acc + r * d;
#pragma omp simd
            for (int64_t i = 0; i < d; i++) o[i] += p0 * v[0][i] + p1 * v[1][i] + p2 * v[2][i] + p3 * v[3][i];
        }
    }
}
