/* test_sampler: greedy, temperature and top-p sampling; determinism by seed. */
#include <math.h>
#include <string.h>

#include "sampler.h"
#include "tt.h"

int main(void) {
    float logits[6] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    TT_CASE("greedy and bad settings");
    TT_CHECK(sampler_argmax(logits, 6) == 1); /* first of the tie */

    sampler s;
    TT_OK(sampler_init(&s, 6, 0.0f, 1.0f, 1));
    TT_CHECK(sampler_sample(&s, logits) == 1);
    sampler_free(&s);

    TT_FAILS(sampler_init(&s, 6, 1.0f, 0.0f, 1), TIS_EINVAL);
    TT_FAILS(sampler_init(&s, 6, -1.0f, 1.0f, 1), TIS_EINVAL);
    TT_FAILS(sampler_init(&s, 0, 1.0f, 1.0f, 1), TIS_EINVAL);

    /* Same seed, same draws; another seed, other draws. */
    TT_CASE("seeded draws");
    int a[64], b[64], c[64];
    TT_OK(sampler_init(&s, 6, 1.0f, 1.0f, 42));
    for (int i = 0; i < 64; i++) a[i] = sampler_sample(&s, logits);
    sampler_free(&s);
    TT_OK(sampler_init(&s, 6, 1.0f, 1.0f, 42));
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(&s, logits);
    sampler_free(&s);
    TT_OK(sampler_init(&s, 6, 1.0f, 1.0f, 43));
    for (int i = 0; i < 64; i++) c[i] = sampler_sample(&s, logits);
    sampler_free(&s);
    TT_CHECK(memcmp(a, b, sizeof a) == 0);
    TT_CHECK(memcmp(a, c, sizeof a) != 0);

    /* Frequencies follow softmax(logits / T): 40000 draws, 4 sd bounds. */
    TT_CASE("temperature frequencies");
    const int N = 40000;
    float temp = 0.7f;
    double p[6], z = 0;
    for (int i = 0; i < 6; i++) z += (p[i] = exp(logits[i] / temp));
    int count[6] = {0};
    TT_OK(sampler_init(&s, 6, temp, 1.0f, 7));
    for (int i = 0; i < N; i++) count[sampler_sample(&s, logits)]++;
    sampler_free(&s);
    for (int i = 0; i < 6; i++) {
        p[i] /= z;
        double sd = sqrt(p[i] * (1 - p[i]) / N);
        TT_NEAR((double)count[i] / N, p[i], 4 * sd + 1e-4);
    }

    /* top_p: the nucleus of {1, 3} (mass ~0.73 at T=1 with 2 next) only. */
    TT_CASE("top_p");
    z = 0;
    for (int i = 0; i < 6; i++) z += (p[i] = exp(logits[i]));
    double top2 = (p[1] + p[3]) / z; /* ~0.58 */
    TT_OK(sampler_init(&s, 6, 1.0f, (float)top2 - 0.01f, 9));
    int outside = 0, n1 = 0;
    for (int i = 0; i < 4000; i++) {
        int id = sampler_sample(&s, logits);
        outside += id != 1 && id != 3;
        n1 += id == 1;
    }
    sampler_free(&s);
    TT_CHECK(outside == 0);
    TT_CHECK(n1 > 1700 && n1 < 2300); /* equal logits: an even split */
    /* a tiny top_p is greedy up to ties */
    TT_OK(sampler_init(&s, 6, 1.0f, 1e-6f, 5));
    for (int i = 0; i < 200; i++) {
        int id = sampler_sample(&s, logits);
        TT_CHECK(id == 1 || id == 3);
    }
    sampler_free(&s);
    return tt_done("test_sampler");
}
