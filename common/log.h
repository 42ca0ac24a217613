/* One-line-per-event logging with level and component.
 * Line format: 2026-11-26T06:00:00.123Z INFO store: message */
#ifndef HY_LOG_H
#define HY_LOG_H

#include <stdbool.h>

enum hy_log_level { HY_LOG_DEBUG, HY_LOG_INFO, HY_LOG_WARN, HY_LOG_ERROR };

extern enum hy_log_level hy_log_threshold;

/* Writes one line to stderr; use hy_log() so arguments are not evaluated
 * for suppressed levels. Thread-safe (one write(2) per line). */
void hy_log_write(enum hy_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses "debug", "info", "warn", "error"; returns false for anything else. */
bool hy_log_parse_level(const char *s, enum hy_log_level *out);

#define hy_log(level, component, ...)                                                              \
    do {                                                                                           \
        if ((level) >= hy_log_threshold)                                                           \
            hy_log_write((level), (component), __VA_ARGS__);                                       \
    } while (0)

#endif
