/* What every Hypha benchmark shares: a monotonic clock, scratch directories,
 * an options table (flags and env variables, which also prints --help), and
 * the markdown results table with medians over repetitions. */
#ifndef HY_BENCH_UTIL_H
#define HY_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define BENCH_MAX_REPS 15

/* Seconds on CLOCK_MONOTONIC. Cannot fail. */
double bench_now(void);

/* Aborts the benchmark: a benchmark that measured a failing call would
 * publish a wrong number. Prints "bench: what: reason" and exits 1. */
void bench_die(const char *what, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Creates a fresh directory "<base>/hypha-bench-<tag>-XXXXXX" in buf, where
 * base is the --dir option, else $TMPDIR, else /tmp. Dies on failure. */
void bench_mkdtemp(const char *base, const char *tag, char *buf, size_t size);
/* Removes dir and everything under it; errors are reported, not fatal. */
void bench_rmtree(const char *dir);
/* Names the filesystem dir lives on ("ext4", "tmpfs", ...), for the report:
 * on tmpfs an fsync costs nothing and durable numbers mean little. */
const char *bench_fs_name(const char *dir);

/* Directives as data: one row per option, read from `--flag value` or, when
 * absent, from the environment variable env. */
enum bench_opt_kind { BENCH_OPT_DOUBLE, BENCH_OPT_SIZE, BENCH_OPT_INT, BENCH_OPT_STR };
struct bench_opt {
    const char *flag; /* "--scale" */
    const char *env;  /* "HYPHA_BENCH_SCALE"; may be NULL */
    enum bench_opt_kind kind;
    void *ptr; /* double *, size_t *, int * or const char ** (borrowed from argv/env) */
    const char *help;
};
/* Parses argv and the environment into the table's variables. Prints usage
 * and exits 0 on --help; prints the problem and exits 2 on a bad option. */
void bench_opts_parse(int argc, char **argv, const char *about, const struct bench_opt *opts,
                      size_t n);

/* One row of the results table: the rate of Hypha and of its baseline in
 * each repetition (operations per second). */
struct bench_row {
    const char *name; /* "Single durable puts" */
    char work[96];    /* what one repetition did: "2000 puts, 1 per txn" */
    const char *unit; /* what an operation is: "puts" */
    double hypha[BENCH_MAX_REPS], base[BENCH_MAX_REPS];
    int n;
};
/* Records one repetition: ops operations in hypha_s and base_s seconds. */
void bench_row_add(struct bench_row *r, double ops, double hypha_s, double base_s);
/* Prints the markdown table: medians of each column and their ratio. */
void bench_table_print(FILE *out, const struct bench_row *rows, size_t n);

/* Reads a whole file into a NUL-terminated malloc'd buffer; dies on failure. */
char *bench_read_file(const char *path, size_t *len);

/* xorshift64*: the same pseudo-random sequence in every run. */
static inline unsigned long long bench_rand(unsigned long long *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

#endif
