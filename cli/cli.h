/* cli: shared helpers of the tis subcommands (argument parsing, output). */
#ifndef TIS_CLI_H
#define TIS_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Subcommands: return the process exit code (0 ok, 1 runtime error, 2 usage). */
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_label(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);

/* The default importance heads for the default model (committed). */
#define CLI_DEFAULT_HEAD "configs/heads/smollm2-135m-instruct.tis.safetensors"
#define CLI_DEFAULT_HEAD_QUERY "configs/heads/smollm2-135m-instruct.tis_query.safetensors"

/* Parses a whole-string integer / float; false on junk or out of range. */
bool cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_f32(const char *s, float lo, float hi, float *out);
/* The default model path (models/ beside the binary's source tree, or
 * $TIS_MODEL). */
const char *cli_default_model(void);
/* Sets the BLAS thread count when n > 0; returns the count in force. */
int cli_threads(int64_t n);
/* Loads only the tokenizer of a model file or directory. */
struct tokenizer;
int cli_load_tokenizer(const char *path, struct tokenizer **out);
/* PATH.csv -> PATH<ext> (malloc'd): the files written beside a CSV. */
char *cli_csv_sibling(const char *path, const char *ext);
/* mkdir -p of a directory / of the directory holding a file; 0 when it exists after. */
int cli_mkdirs(const char *dir);
int cli_mkdirs_for(const char *file);
/* Prints "tis: <what>: <tis_last_error()>" to stderr; returns 1. */
int cli_fail(const char *what);

#endif
