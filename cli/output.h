/* What the CLI prints besides tables: ages and times, resources as YAML
 * documents, replies as JSON or YAML. */
#ifndef HY_CLI_OUTPUT_H
#define HY_CLI_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cli.h"
#include "json.h"
#include "resource.h"

enum hy_output_format { HY_OUTPUT_TABLE, HY_OUTPUT_YAML, HY_OUTPUT_JSON };

/* Parses -o: "table", "yaml" or "json" (NULL is table). False otherwise. */
bool hy_output_parse(const char *s, enum hy_output_format *out);

/* A duration as kubectl prints ages: "45s", "5m30s", "42m", "3h10m", "20h",
 * "2d4h", "400d", "3y20d", "9y"; "0s" for a second or two in the future
 * (clock skew) and "<invalid>" beyond. Cannot fail (truncates). */
void hy_output_age(int64_t seconds, char *buf, size_t size);
/* The age of ts at now; "-" when ts is NULL. */
void hy_output_age_since(int64_t now, const Hypha__V1__Timestamp *ts, char *buf, size_t size);

/* Writes text to cli->out, adding a final newline if it lacks one. */
void hy_output_text(struct hy_cli *cli, const char *text, size_t len);
/* Prints resources as YAML documents separated by "---" lines, through the
 * codec. 0, or HY_ENOMEM after printing it. */
int hy_output_yaml(struct hy_cli *cli, struct hy_resource *const *v, size_t n);
/* Prints a reply's tree as -o asks: compact JSON (HY_OUTPUT_JSON) or a
 * YAML document (otherwise). 0, or a negative code after printing it. */
int hy_output_tree(struct hy_cli *cli, const struct hy_json *j, enum hy_output_format f);
/* Parses JSON text (a reply, or one the command built) and prints it
 * with hy_output_tree. 0, or a negative code after printing it. */
int hy_output_json_text(struct hy_cli *cli, const char *text, size_t len, enum hy_output_format f);
/* A timestamp as "2026-12-02 13:50:20" (UTC, kumactl's way); "-" when ts
 * is NULL. Cannot fail (truncates). */
void hy_output_time(const Hypha__V1__Timestamp *ts, char *buf, size_t size);

#endif
