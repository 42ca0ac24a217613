/* Codec benchmark: documents per second for a typical policy through the
 * generic codec, beside libyaml alone parsing the same text into events, so
 * the ratio tells what the descriptor walk, validation and encoding cost
 * relative to the YAML parsing underneath. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "bench_util.h"
#include "codec.h"
#include "error.h"
#include "poison.h"

struct params {
    double scale;
    int reps;
    const char *file;
    size_t docs;
};

struct input {
    const char *path;
    char *text;
    size_t len;
    struct hy_resource *res; /* the decoded document, for the encoders */
};

/* ---- baseline: libyaml events ------------------------------------------ */

static size_t yaml_events(const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    size_t n = 0;
    bool done = false;
    if (!yaml_parser_initialize(&parser))
        bench_die("yaml_parser_initialize", "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev))
            bench_die("libyaml", "%s", parser.problem ? parser.problem : "parse error");
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        n++;
    }
    yaml_parser_delete(&parser);
    return n;
}

static double time_libyaml(const struct params *p, const struct input *in)
{
    size_t events = 0;
    double t0 = bench_now();
    for (size_t i = 0; i < p->docs; i++)
        events += yaml_events(in->text, in->len);
    double t = bench_now() - t0;
    if (events == 0)
        bench_die("libyaml", "no events");
    return t;
}

/* ---- Hypha codec ------------------------------------------------------- */

/* Decodes and validates; dies unless the text is exactly one valid resource.
 * Returns the docs for the caller to keep or free. */
static void decode_valid(const struct input *in, struct hy_docs *docs)
{
    struct hy_diag diag = {.source = in->path};
    char line[1024];
    int rc = hy_codec_decode_resources(in->path, in->text, in->len, NULL, docs, &diag);
    if (rc < 0 || docs->n != 1 || !hy_docs_validate(docs, &diag)) {
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "%s\n", hy_diag_format(&diag, i, line, sizeof(line)));
        bench_die(in->path, "not one valid resource (%s)", hy_strerror(rc));
    }
    hy_diag_fini(&diag);
}

static double time_decode(const struct params *p, const struct input *in)
{
    struct hy_docs docs;
    double t0 = bench_now();
    for (size_t i = 0; i < p->docs; i++) {
        decode_valid(in, &docs);
        hy_docs_fini(&docs);
    }
    return bench_now() - t0;
}

static double time_encode(const struct params *p, const struct input *in, enum hy_format f)
{
    size_t bytes = 0;
    double t0 = bench_now();
    for (size_t i = 0; i < p->docs; i++) {
        struct hy_buf out = {0};
        int rc = hy_codec_encode_resource(in->res, f, &out);
        if (rc < 0)
            bench_die("hy_codec_encode_resource", "%s", hy_strerror(rc));
        bytes += out.len;
        hy_buf_fini(&out);
    }
    double t = bench_now() - t0;
    if (bytes == 0)
        bench_die("hy_codec_encode_resource", "wrote nothing");
    return t;
}

static double time_encode_yaml(const struct params *p, const struct input *in)
{
    return time_encode(p, in, HY_FORMAT_YAML);
}

static double time_encode_json(const struct params *p, const struct input *in)
{
    return time_encode(p, in, HY_FORMAT_JSON);
}

/* ---- driver ------------------------------------------------------------ */

typedef double (*timed_fn)(const struct params *p, const struct input *in);

int main(int argc, char **argv)
{
    struct params p = {
        .scale = 1,
        .reps = 5,
        .file = HY_BENCH_DATA "/resources/meshtrafficpermission.yaml",
        .docs = 20000,
    };
    const struct bench_opt opts[] = {
        {"--scale", "HYPHA_BENCH_SCALE", BENCH_OPT_DOUBLE, &p.scale,
         "multiply the document count by this (default 1)"},
        {"--reps", "HYPHA_BENCH_REPS", BENCH_OPT_INT, &p.reps,
         "repetitions; the table shows medians (default 5, at most 15)"},
        {"--file", "HYPHA_BENCH_FILE", BENCH_OPT_STR, &p.file,
         "the document (default tests/data/resources/meshtrafficpermission.yaml)"},
        {"--docs", NULL, BENCH_OPT_SIZE, &p.docs, "documents per row (default 20000)"},
    };
    bench_opts_parse(argc, argv,
                     "Benchmarks the codec on one typical policy against libyaml parsing the "
                     "same text; prints a markdown table.",
                     opts, sizeof(opts) / sizeof(opts[0]));
    if (p.reps < 1 || p.reps > BENCH_MAX_REPS)
        bench_die("--reps", "must be 1..%d", BENCH_MAX_REPS);
    p.docs = (size_t)((double)p.docs * p.scale);
    if (p.docs == 0)
        p.docs = 1;

    struct input in = {.path = p.file};
    struct hy_docs docs;
    in.text = bench_read_file(p.file, &in.len);
    decode_valid(&in, &docs);
    in.res = docs.v[0].res;

    static const struct {
        const char *name;
        timed_fn fn;
    } cases[] = {
        {"6a. Decode + validate YAML", time_decode},
        {"6b. Encode YAML", time_encode_yaml},
        {"6c. Encode JSON", time_encode_json},
    };
    enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
    struct bench_row rows[NCASES];
    const char *base = strrchr(p.file, '/') ? strrchr(p.file, '/') + 1 : p.file;
    for (size_t c = 0; c < NCASES; c++) {
        rows[c] = (struct bench_row){.name = cases[c].name, .unit = "docs"};
        snprintf(rows[c].work, sizeof(rows[c].work), "%zu × %s (%zu bytes)", p.docs, base, in.len);
    }

    double t0 = bench_now();
    for (int rep = 0; rep < p.reps; rep++) {
        fprintf(stderr, "bench: codec repetition %d...\n", rep + 1);
        /* One baseline per repetition serves every row: all of it is
         * CPU-bound on a text that stays in cache. */
        double tb = time_libyaml(&p, &in);
        for (size_t c = 0; c < NCASES; c++)
            bench_row_add(&rows[c], (double)p.docs, cases[c].fn(&p, &in), tb);
    }

    bench_table_print(stdout, rows, NCASES);
    printf("\nMedian of %d repetition(s), %.1f s in all. Baseline for every row: libyaml "
           "parsing the same YAML text into events (yaml_parser_parse until STREAM-END).\n",
           p.reps, bench_now() - t0);
    hy_docs_fini(&docs);
    free(in.text);
    return 0;
}
