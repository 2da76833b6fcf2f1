/* The SIMD body of gguf_cpu.c, included once per instruction set with SIMD_NAME (the
 * function's name) and DOT_U8S8(u, s) (eight int32 sums of four u8 x s8 products each:
 * lane i holds bytes 4i..4i+3) defined, inside that set's `#pragma GCC target`. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(x) CAT(SIMD_NAME, x)

static inline float FN(_half)(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }

static inline float FN(_hsum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Bit i of h -> byte i = 0x10. */
static inline __m256i FN(_bits32)(uint32_t h) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* 16 bytes of nibbles: the low nibbles are codes 0..15, the high ones 16..31. */
static inline __m256i FN(_nibbles16)(const uint8_t *qs) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs), low = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low));
}

/* 32 bytes: their low nibbles (hi = 0) or high nibbles (hi = 1). */
static inline __m256i FN(_nibbles32)(const uint8_t *qs, int hi) {
    __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    if (hi) v = _mm256_srli_epi16(v, 4);
    return _mm256_and_si256(v, _mm256_set1_epi8(0xF));
}

/* Bits `shift`, `shift`+1 ... of 32 bytes, masked, moved to bit 4: a K-quant's high bits. */
static inline __m256i FN(_high)(const uint8_t *qh, int shift, int mask) {
    __m256i v = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)qh), _mm_cvtsi32_si128(shift));
    return _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi8((char)mask)), 4);
}

/* Per type: BLOCK(b, par) fills the parameters (s_lo, s_hi, m_lo, m_hi) of every sub-block
 * of the block at b, once; CODES(b, sub) returns sub-block sub's 32 codes. */
#define BLOCK(name) static inline void FN(name##_params)(const uint8_t *b, float par[8][4])
#define CODES(name) static inline __m256i FN(name##_codes)(const uint8_t *b, int sub)

static inline void FN(_same)(float p[4], float s, float m) { p[0] = p[1] = s; p[2] = p[3] = m; }

BLOCK(_q4_0) { float d = FN(_half)(b); FN(_same)(par[0], d, -8.0f * d); }
CODES(_q4_0) { return FN(_nibbles16)(b + 2); }

BLOCK(_q4_1) { FN(_same)(par[0], FN(_half)(b), FN(_half)(b + 2)); }
CODES(_q4_1) { return FN(_nibbles16)(b + 4); }

BLOCK(_q5_0) { float d = FN(_half)(b); FN(_same)(par[0], d, -16.0f * d); }
CODES(_q5_0) {
    uint32_t h;
    memcpy(&h, b + 2, 4);
    return _mm256_or_si256(FN(_nibbles16)(b + 6), FN(_bits32)(h));
}

BLOCK(_q5_1) { FN(_same)(par[0], FN(_half)(b), FN(_half)(b + 2)); }
CODES(_q5_1) {
    uint32_t h;
    memcpy(&h, b + 4, 4);
    return _mm256_or_si256(FN(_nibbles16)(b + 8), FN(_bits32)(h));
}

BLOCK(_q8_0) { FN(_same)(par[0], FN(_half)(b), 0.0f); }
CODES(_q8_0) { return _mm256_loadu_si256((const __m256i *)(b + 2)); }

BLOCK(_q4_k) {
    float d = FN(_half)(b), dmin = FN(_half)(b + 2);
    for (int sub = 0; sub < 8; sub++) {
        int sc, mn;
        k4_scale_min(sub, b + 4, &sc, &mn);
        FN(_same)(par[sub], d * (float)sc, -dmin * (float)mn);
    }
}
CODES(_q4_k) { return FN(_nibbles32)(b + 16 + (sub >> 1) * 32, sub & 1); }

BLOCK(_q5_k) { FN(_q4_k_params)(b, par); }  /* the same scales and mins */
CODES(_q5_k) {
    return _mm256_or_si256(FN(_nibbles32)(b + 48 + (sub >> 1) * 32, sub & 1), FN(_high)(b + 16, sub, 1));
}

BLOCK(_q6_k) {
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = FN(_half)(b + 208);
    for (int sub = 0; sub < 8; sub++) {  /* scales per 16 weights, in order */
        par[sub][0] = d * (float)scales[2 * sub];
        par[sub][1] = d * (float)scales[2 * sub + 1];
        par[sub][2] = -32.0f * par[sub][0];
        par[sub][3] = -32.0f * par[sub][1];
    }
}
CODES(_q6_k) {
    int half = sub >> 2, within = sub & 3;
    __m256i low = FN(_nibbles32)(b + half * 64 + (within & 1) * 32, within >= 2);
    return _mm256_or_si256(low, FN(_high)(b + 128 + half * 32, 2 * within, 3));
}

/* One sub-block (codes c, parameters p, index j) against activation row mi: acc gets
 * d_x * scale * sum(code * q), offset the weights' offsets times the row's sums. EQUAL: one
 * scale and offset for all 32 (every type but Q6_K): one fused multiply-add, one scalar
 * one. SIGNED: int8 codes (Q8_0), summed through the sign trick. */
#define SUB_DOT(acc, offset, mi, SIGNED, EQUAL)                                                                \
    do {                                                                                                       \
        __m256i q = _mm256_loadu_si256((const __m256i *)(a->q + (mi) * k + j * 32));                          \
        if (SIGNED) q = _mm256_sign_epi8(q, c);                                                                \
        const __m256 prod = _mm256_cvtepi32_ps(DOT_U8S8(u, q));                                                \
        const float dx = a->d[(mi) * subs + j], *s = a->s + ((mi) * subs + j) * 3;                             \
        if (EQUAL) {                                                                                           \
            acc = _mm256_fmadd_ps(prod, _mm256_set1_ps(p[0] * dx), acc);                                       \
            if (!SIGNED) offset = fmaf(p[2], s[2], offset);                                                    \
        } else {                                                                                               \
            const __m256 scale = _mm256_set_m128(_mm_set1_ps(p[1] * dx), _mm_set1_ps(p[0] * dx));              \
            acc = _mm256_fmadd_ps(prod, scale, acc);                                                           \
            offset = fmaf(p[3], s[1], fmaf(p[2], s[0], offset));                                               \
        }                                                                                                      \
    } while (0)

/* Sub-block j: its parameters p (from par, refilled at each block's first sub-block) and codes. */
#define SUB_START(name, SUBS, BYTES, SIGNED)                                                                   \
    const uint8_t *b = row + (j / (SUBS)) * (BYTES);                                                           \
    const int sub = (int)(j % (SUBS));                                                                         \
    if (sub == 0) {                                                                                            \
        _mm_prefetch((const char *)b + PREFETCH_BYTES, _MM_HINT_T0);                                           \
        FN(name##_params)(b, par);                                                                             \
    }                                                                                                          \
    const float *p = par[sub];                                                                                 \
    const __m256i c = FN(name##_codes)(b, sub);                                                                \
    const __m256i u = SIGNED ? _mm256_sign_epi8(c, c) : c;

/* Rows [n0, n1) against the activation rows. Even and odd sub-blocks add into two
 * accumulators (half the chain of dependent additions), in the same order for one row
 * (decode: its own loop, locals in registers) as for several (the codes decoded once per
 * sub-block, four rows at a time), so a row's result does not depend on its batch. */
#define ROWS_LOOP(name, SUBS, BYTES, SIGNED, EQUAL)                                                            \
    for (int64_t r = n0; r < n1; r++) {                                                                        \
        const uint8_t *row = w + r * row_bytes;                                                                \
        float par[8][4];                                                                                       \
        if (m == 1) {                                                                                          \
            __m256 acc_e = _mm256_setzero_ps(), acc_o = _mm256_setzero_ps();                                   \
            float off_e = 0.0f, off_o = 0.0f;                                                                  \
            for (int64_t j = 0; j < subs; j++) {                                                               \
                SUB_START(name, SUBS, BYTES, SIGNED)                                                           \
                if (j & 1) SUB_DOT(acc_o, off_o, 0, SIGNED, EQUAL);                                            \
                else SUB_DOT(acc_e, off_e, 0, SIGNED, EQUAL);                                                  \
            }                                                                                                  \
            store(out, out_bf16, r, FN(_hsum)(_mm256_add_ps(acc_e, acc_o)) + (off_e + off_o));                 \
            continue;                                                                                          \
        }                                                                                                      \
        for (int64_t m0 = 0; m0 < m; m0 += 4) {                                                                \
            const int mt = m - m0 < 4 ? (int)(m - m0) : 4;                                                     \
            __m256 acc_e[4], acc_o[4];                                                                         \
            float off_e[4] = {0.0f, 0.0f, 0.0f, 0.0f}, off_o[4] = {0.0f, 0.0f, 0.0f, 0.0f};                    \
            for (int i = 0; i < 4; i++) acc_e[i] = acc_o[i] = _mm256_setzero_ps();                             \
            for (int64_t j = 0; j < subs; j++) {                                                               \
                SUB_START(name, SUBS, BYTES, SIGNED)                                                           \
                for (int i = 0; i < mt; i++) {                                                                 \
                    if (j & 1) SUB_DOT(acc_o[i], off_o[i], m0 + i, SIGNED, EQUAL);                             \
                    else SUB_DOT(acc_e[i], off_e[i], m0 + i, SIGNED, EQUAL);                                   \
                }                                                                                              \
            }                                                                                                  \
            for (int i = 0; i < mt; i++)                                                                       \
                store(out, out_bf16, (m0 + i) * n + r,                                                         \
                      FN(_hsum)(_mm256_add_ps(acc_e[i], acc_o[i])) + (off_e[i] + off_o[i]));                   \
        }                                                                                                      \
    }

static void SIMD_NAME(int type, const uint8_t *w, int64_t row_bytes, int64_t n0, int64_t n1, int64_t k,
                      const qact *a, int64_t m, void *out, int out_bf16, int64_t n) {
    const int64_t subs = k / 32;
    switch (type) {
    case T_Q4_0: ROWS_LOOP(_q4_0, 1, 18, 0, 1) break;
    case T_Q4_1: ROWS_LOOP(_q4_1, 1, 20, 0, 1) break;
    case T_Q5_0: ROWS_LOOP(_q5_0, 1, 22, 0, 1) break;
    case T_Q5_1: ROWS_LOOP(_q5_1, 1, 24, 0, 1) break;
    case T_Q8_0: ROWS_LOOP(_q8_0, 1, 34, 1, 1) break;
    case T_Q4_K: ROWS_LOOP(_q4_k, 8, 144, 0, 1) break;
    case T_Q5_K: ROWS_LOOP(_q5_k, 8, 176, 0, 1) break;
    case T_Q6_K: ROWS_LOOP(_q6_k, 8, 210, 0, 0) break;
    }
}

#undef SUB_DOT
#undef SUB_START
#undef BLOCK
#undef CODES
#undef ROWS_LOOP
#undef FN
#undef CAT
#undef CAT_
