// dextlink/testing.h: the CHECK macros of dextlink's own C++ tests (the shim's
// test, the generated dispatch driven through the shim, the NullDriver port).
//
// Each failed check prints file, line and expression and is counted; a test
// program ends by printing `g_pass`/`g_fail` and exiting non-zero on failure,
// so that one run reports every failure, not just the first.

#ifndef DEXTLINK_TESTING_H
#define DEXTLINK_TESTING_H

#include <stdio.h>

static int g_pass = 0;
static int g_fail = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) {                                                              \
            g_pass++;                                                            \
        } else {                                                                 \
            g_fail++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                           \
    do {                                                                         \
        unsigned long long va_ = (unsigned long long)(a);                        \
        unsigned long long vb_ = (unsigned long long)(b);                        \
        if (va_ == vb_) {                                                        \
            g_pass++;                                                            \
        } else {                                                                 \
            g_fail++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s == %s (0x%llx != 0x%llx)\n",         \
                    __FILE__, __LINE__, #a, #b, va_, vb_);                       \
        }                                                                        \
    } while (0)

#endif // DEXTLINK_TESTING_H
