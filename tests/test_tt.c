/* test_tt: the harness names the case of a failing check. The test runs
 * its own binary again (with --fail) as a child whose checks fail on
 * purpose, inside and outside cases, and reads what the child printed. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tt.h"

/* The child: every kind of check failing once in the case "deliberate
 * failure", a passing case after it, and one failure before any case. */
static int s_child(void) {
    TT_CHECK(1 + 1 == 3); /* no case yet: no prefix */
    TT_CASE("passes %d", 1);
    TT_CHECK(1 == 1);
    TT_CASE("deliberate failure");
    TT_CHECK(1 == 2);
    TT_OK(tis_error(TIS_EIO, "planted I/O error"));
    TT_FAILS(0, TIS_EINVAL);
    TT_NEAR(1.0, 2.0, 0.5);
    TT_CASE("passes %d", 2);
    TT_CHECK(2 == 2);
    return tt_done("test_tt child");
}

/* The line of out that contains what, or NULL. */
static const char *s_line(const char *out, const char *what, char *line, size_t cap) {
    const char *p = strstr(out, what);
    if (!p) return NULL;
    const char *b = p, *e = p;
    while (b > out && b[-1] != '\n') b--;
    while (*e && *e != '\n') e++;
    snprintf(line, cap, "%.*s", (int)(e - b), b);
    return line;
}

/* The line of out containing what must start with want. */
static void s_expect(const char *out, const char *what, const char *want) {
    char line[512];
    const char *l = s_line(out, what, line, sizeof line);
    TT_CHECK(l != NULL);
    if (!l) {
        fprintf(stderr, "  no line with '%s'\n", what);
        return;
    }
    bool ok = strncmp(l, want, strlen(want)) == 0;
    TT_CHECK(ok);
    if (!ok) fprintf(stderr, "  '%s' does not start with '%s'\n", l, want);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--fail")) return s_child();
    static char out[1 << 14];
    char self[1024], cmd[1100];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "skip: /proc/self/exe unreadable\n");
        return 77;
    }
    self[n] = 0;
    snprintf(cmd, sizeof cmd, "'%s' --fail", self);
    TT_CASE("a failing check names its case");
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 1); /* failures: exit 1 */
    fprintf(stderr, "  child (rc %d):\n%s", rc, out);
    s_expect(out, "CHECK failed: 1 == 2", "[deliberate failure] ");
    s_expect(out, "CHECK failed: 1 == 2", "[deliberate failure] " __FILE__ ":");
    s_expect(out, "planted I/O error", "[deliberate failure] ");
    s_expect(out, "wanted -1 (EINVAL)", "[deliberate failure] ");
    s_expect(out, "|diff| > 0.5", "[deliberate failure] ");

    TT_CASE("a check before any case has no prefix");
    s_expect(out, "CHECK failed: 1 + 1 == 3", __FILE__ ":");

    TT_CASE("tt_done counts the cases and names the failed ones");
    s_expect(out, "test_tt child:", "test_tt child: 2 passed, 5 failed; 3 cases, 1 failed: deliberate failure");
    TT_CHECK(strstr(out, "[passes") == NULL); /* the passing cases printed nothing */
    return tt_done("test_tt");
}
