/* test_cuda_probe: the CUDA part of the build links and answers; skips
 * (exit 77) when built without CUDA or when no GPU is present. */
#include <stdio.h>

#include "tt.h"

#ifdef TIS_HAVE_CUDA
#include "cuda/cuda_probe.h"
#endif

int main(void) {
#ifdef TIS_HAVE_CUDA
    char buf[2048];
    int n = cuda_probe(buf, sizeof buf);
    TT_CHECK(n >= 0);
    printf("%s\n", buf);
    if (n == 0) {
        printf("test_cuda_probe: skipped: no CUDA device here\n");
        return 77;
    }
    TT_CHECK(buf[0] == 'c'); /* "cuda:0 ..." */
    return tt_done("test_cuda_probe");
#else
    printf("test_cuda_probe: skipped: built without CUDA (TIS_CUDA=OFF)\n");
    return 77;
#endif
}
