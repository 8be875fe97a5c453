/* tis keygen: a CURVE key pair for the pipeline's tcp endpoints. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "secure.h"

static void s_usage(FILE *f) {
    fprintf(f, "usage: tis keygen PREFIX\n"
               "  writes PREFIX.key (the key pair, mode 0600: keep it private) and PREFIX.pub (the public\n"
               "  key, to give to the other side): a coordinator's pair for `tis serve --key`, a worker's\n"
               "  or client's for `--key` (its .pub goes on the coordinator's --allow list). Existing\n"
               "  files are not overwritten. docs/pipeline.md, \"Who may connect\".\n");
}

int cmd_keygen(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        s_usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        s_usage(stderr);
        return 2;
    }
    char pub[SEC_Z85 + 1];
    if (sec_keygen(argv[1], pub)) return cli_fail("writing the key files");
    printf("%s.key  %s.pub  public %s\n", argv[1], argv[1], pub);
    return 0;
}
