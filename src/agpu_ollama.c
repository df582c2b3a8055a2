/* Reading the local Ollama's answers with jansson: installed models, loaded models, version. */
#include "agpu_ollama.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Go's RFC 3339 time ("2024-06-04T14:38:31.83753-07:00") as Unix milliseconds; -1 if not. */
static int64_t parse_rfc3339_ms(const char *text)
{
    struct tm tm = {0};
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return -1;
    double fraction = 0;
    if (*rest == '.') {
        char *end;
        fraction = strtod(rest, &end);
        rest = end;
    }
    long offset = 0;
    if (*rest == '+' || *rest == '-') {
        int hours = 0, minutes = 0;
        if (sscanf(rest + 1, "%2d:%2d", &hours, &minutes) != 2)
            return -1;
        offset = (hours * 60L + minutes) * 60L * (*rest == '-' ? -1 : 1);
    } else if (*rest != 'Z') {
        return -1;
    }
    int64_t seconds = (int64_t)timegm(&tm) - offset;
    return seconds * 1000 + (int64_t)(fraction * 1000);
}

static const char *model_name(json_t *model)
{
    const char *name = json_string_value(json_object_get(model, "name"));
    return name ? name : json_string_value(json_object_get(model, "model"));
}

static json_t *find_loaded(json_t *ps_models, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(ps_models, i, m)
    {
        const char *loaded = model_name(m);
        if (loaded && strcmp(loaded, name) == 0)
            return m;
    }
    return NULL;
}

long agpu_ollama_parse_models(const char *tags, const char *ps, int64_t now_unix_ms,
                              agpu_msg_model_t **models)
{
    *models = NULL;
    json_t *tags_root = json_loads(tags, 0, NULL);
    json_t *tag_models = json_object_get(tags_root, "models");
    if (!json_is_array(tag_models)) {
        json_decref(tags_root);
        return -1;
    }
    json_t *ps_root = ps ? json_loads(ps, 0, NULL) : NULL;
    json_t *ps_models = json_object_get(ps_root, "models");
    size_t count = 0, max = json_array_size(tag_models);
    if (max > AGPU_MSG_MAX_MODELS)
        max = AGPU_MSG_MAX_MODELS; /* what one gossip message can carry */
    agpu_msg_model_t *out = max ? calloc(max, sizeof *out) : NULL;
    size_t i;
    json_t *m;
    json_array_foreach(tag_models, i, m)
    {
        const char *name = model_name(m);
        const char *digest = json_string_value(json_object_get(m, "digest"));
        if (!out || count == max || !name || strlen(name) > AGPU_MSG_MODEL_NAME_MAX)
            continue;
        agpu_msg_model_t *model = &out[count];
        model->name = strdup(name);
        model->digest = strdup(digest && strlen(digest) <= AGPU_MSG_DIGEST_MAX ? digest : "");
        model->size = (uint64_t)json_integer_value(json_object_get(m, "size"));
        json_t *loaded = find_loaded(ps_models, name);
        if (loaded) {
            model->loaded = true;
            model->vram = (uint64_t)json_integer_value(json_object_get(loaded, "size_vram"));
            const char *expires = json_string_value(json_object_get(loaded, "expires_at"));
            int64_t at = expires ? parse_rfc3339_ms(expires) : -1;
            /* Ollama shows a model kept forever as expiring far in the future */
            model->ttl_ms = at < 0 || at - now_unix_ms > 365LL * 86400000 ? AGPU_MSG_TTL_FOREVER
                            : at > now_unix_ms                           ? (uint64_t)(at - now_unix_ms)
                                                                         : 0;
        }
        if (model->name && model->digest)
            count++;
        else {
            free((char *)model->name);
            free((char *)model->digest);
        }
    }
    json_decref(ps_root);
    json_decref(tags_root);
    *models = out;
    return (long)count;
}

void agpu_ollama_models_free(agpu_msg_model_t *models, size_t count)
{
    for (size_t i = 0; models && i < count; i++) {
        free((char *)models[i].name);
        free((char *)models[i].digest);
    }
    free(models);
}

int agpu_ollama_parse_version(const char *json, char *out, size_t out_size)
{
    json_t *root = json_loads(json, 0, NULL);
    const char *version = json_string_value(json_object_get(root, "version"));
    int rc = version && strlen(version) < out_size && strlen(version) <= AGPU_MSG_VERSION_MAX
                 ? 0
                 : -1;
    if (rc == 0)
        memcpy(out, version, strlen(version) + 1);
    json_decref(root);
    return rc;
}
