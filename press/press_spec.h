/* press_spec: a policy as a caller names it — tis eval's --baseline, a
 * served request's policy — resolved to what runs: one press, or a union
 * "A|B" of two (press_plan_compact_union: each stream keeps what the two
 * rankings put first, in turn), each member with the importance head it
 * reads. Named heads are "NAME=PATH" entries (tis eval / tis serve
 * --head_as): policy NAME is `tis` with that head, so NAME, NAME+lpool5,
 * NAME+lpool5|tis+recent64/8 all parse. One rule for eval, the in-process
 * engine, the workers and the coordinator.
 *
 * Ownership: nothing is kept; the entries are borrowed for the call. */
#ifndef TIS_PRESS_SPEC_H
#define TIS_PRESS_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "press.h"

/* A member's head: one of these, or (>= 0) the index of its named head in
 * the entries given to press_spec_parse. */
enum {
    PRESS_HEAD_NONE = -1,  /* the member reads no head */
    PRESS_HEAD_CTX = -2,   /* `tis...`: the default (query-agnostic) head */
    PRESS_HEAD_QUERY = -3, /* `tis_query...`: the query-aware head */
    PRESS_HEAD_NAMED = -4  /* a named head not looked up (press_spec_parse with n_head_as < 0) */
};

typedef struct press_spec {
    char name[64]; /* as given (63 characters at most) */
    int n;         /* 1, or 2 for a union */
    press m[2];    /* the members; a named head's press is `tis`'s renamed as given (NAME+lpool5) */
    int head[2];   /* each member's head: PRESS_HEAD_* or a named head's index */
} press_spec;

/* NAME's length in the entry "NAME=PATH", or -1 when it has no '='. */
int64_t press_head_as_name_len(const char *entry);

/* Checks named-head entries: NAME=PATH each, NAME of 1-31 characters from
 * [a-z0-9_], not a policy tis already knows, not given twice; PATH not
 * empty. flag names the option in the messages ("--head_as"). TIS_EINVAL
 * with a clear message. */
int press_head_as_check(const char *const *entries, int64_t n, const char *flag);

/* The index of the entry naming `name`, or -1. */
int64_t press_head_as_find(const char *const *entries, int64_t n, const char *name);

/* Parses `name` into *out: press_parse's policies, a named head's
 * (entries[n_head_as]; with n_head_as < 0 any base name that is no policy
 * of press_parse's and could name a head is one, PRESS_HEAD_NAMED: for a
 * caller that does not hold the heads, e.g. the coordinator), or a union of
 * two of them: at most 63 characters, not a union of unions, no `full`, no
 * "+hook" (the attention hook belongs to one policy), not the same member
 * twice. Clear errors: TIS_EINVAL, TIS_ENOTFOUND, TIS_EUNSUPPORTED. */
int press_spec_parse(const char *name, const char *const *head_as, int64_t n_head_as, press_spec *out);

/* The press that stands for the whole spec in a result row: the member
 * itself, or for a union one named "A|B" with what either member needs
 * (observation, oracle labels, reconstruction, self-information;
 * query-aware when one is), never calibrated (no thresholds), no head of
 * its own (needs_head false: the members read theirs). Not a press to
 * score with. */
void press_spec_row(const press_spec *sp, press *out);

/* Each member's head out of a caller's: ctx for PRESS_HEAD_CTX, query for
 * PRESS_HEAD_QUERY, named[i] for a named head i (out[i] NULL for a member
 * that reads none). Returns the first member whose head is missing (NULL
 * where one is needed, or PRESS_HEAD_NAMED), or -1 when none is. */
struct head;
int press_spec_heads(const press_spec *sp, const struct head *ctx, const struct head *query,
                     struct head *const *named, const struct head *out[2]);

/* True when a member reads an importance head. */
bool press_spec_needs_head(const press_spec *sp);

#endif
