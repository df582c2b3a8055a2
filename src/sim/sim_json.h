/* sim_json: JSON written byte for byte as Go's encoding/json writes it. */
#ifndef SIM_JSON_H
#define SIM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; allocation failure is fatal (the simulator is a test tool). */
typedef struct {
    char *data;
    size_t len, cap;
} sim_buf_t;

void sim_buf_reserve(sim_buf_t *b, size_t extra);
void sim_buf_add(sim_buf_t *b, const void *p, size_t n);
void sim_buf_str(sim_buf_t *b, const char *s);
void sim_buf_fmt(sim_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_buf_i64(sim_buf_t *b, int64_t v);
/* A quoted JSON string, escaped like Go (HTML-safe, \b \f, invalid UTF-8 -> \ufffd). */
void sim_buf_jstr(sim_buf_t *b, const char *s, size_t n);
void sim_buf_jcstr(sim_buf_t *b, const char *s);
/* Numbers formatted like Go's float32 / float64 encoders (shortest round trip). */
void sim_buf_f32(sim_buf_t *b, float f);
void sim_buf_f64(sim_buf_t *b, double f);
/* A quoted RFC 3339 time with nanoseconds, trailing zeros trimmed, like time.Time's JSON.
 * utc: "Z"; otherwise the local offset. */
void sim_buf_time(sim_buf_t *b, int64_t sec, long nsec, bool utc);
/* `,"key":<ns>` unless ns is zero (Go's omitempty on durations and counts). */
void sim_buf_opt_i64(sim_buf_t *b, const char *key, int64_t v);
void sim_buf_free(sim_buf_t *b);

/* Go's %q for a string (used in a few of Ollama's error messages). */
void sim_buf_goquote(sim_buf_t *b, const char *s);

#endif
