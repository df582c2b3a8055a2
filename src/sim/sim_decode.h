/* sim_decode: request bodies read as Go's encoding/json reads them, with Go's error text. */
#ifndef SIM_DECODE_H
#define SIM_DECODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_ERR_MAX 600

typedef struct {
    int status;
    char msg[SIM_ERR_MAX];
} sim_err_t;

void sim_err_set(sim_err_t *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parse a request body holding a JSON object. go_type names the Go type for messages
 * ("api.GenerateRequest"); an empty body is "missing request body". */
json_t *sim_json_parse(const char *body, size_t len, const char *go_type, sim_err_t *err);

/* A member by exact key, else by case-insensitive key (Go's rule). JSON null -> NULL. */
json_t *sim_json_member(json_t *obj, const char *key);

/* Typed members: absent or null leaves the default and succeeds; a wrong type fails with
 * Go's "json: cannot unmarshal ..." message. where = "GenerateRequest". */
bool sim_json_str(json_t *obj, const char *key, const char *where, const char **s, size_t *n,
                  sim_err_t *err);
bool sim_json_bool(json_t *obj, const char *key, const char *where, int *val, sim_err_t *err);
bool sim_json_int(json_t *obj, const char *key, const char *where, int64_t *val, bool *set,
                  sim_err_t *err);
const char *sim_json_type_name(const json_t *v);

/* keep_alive as Ollama's api.Duration reads it: seconds, or a Go duration string; negative
 * means forever (INT64_MAX). */
bool sim_json_keep_alive(json_t *obj, bool *set, int64_t *ns, sim_err_t *err);

/* Go's time.ParseDuration. Returns 0, or -1 with Go's error text in errmsg. */
int sim_go_duration(const char *s, int64_t *ns, char *errmsg, size_t errlen);

#endif
