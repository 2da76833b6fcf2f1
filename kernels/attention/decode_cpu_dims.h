/* decode_cpu_body.h for the head sizes most models use (64, 128) and for any other, under
 * the instruction set ISA (a name suffix: scalar, avx2, avx512). */

#define CAT3_(a, b, c) a##_##b##_##c
#define CAT3(a, b, c) CAT3_(a, b, c)

#define DIM 64
#define BODY_NAME(x) CAT3(x, ISA, 64)
#include "decode_cpu_body.h"
#undef BODY_NAME
#undef DIM

#define DIM 128
#define BODY_NAME(x) CAT3(x, ISA, 128)
#include "decode_cpu_body.h"
#undef BODY_NAME
#undef DIM

#define DIM (a->d)
#define BODY_NAME(x) CAT3(x, ISA, any)
#include "decode_cpu_body.h"
#undef BODY_NAME
#undef DIM

#undef CAT3
#undef CAT3_
