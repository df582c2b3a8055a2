/* The JSON agpu writes itself: error bodies in Ollama's and OpenAI's shapes (via jansson,
 * so any message is escaped correctly). */
#include "agpu_json.h"

#include <jansson.h>
#include <string.h>

/* The error type Ollama's OpenAI layer gives each status. */
static const char *openai_error_type(int status)
{
    if (status == 400)
        return "invalid_request_error";
    if (status == 404)
        return "not_found_error";
    return "api_error";
}

size_t agpu_json_error(char *out, size_t size, agpu_error_style_t style, int status,
                       const char *message)
{
    json_t *body;
    if (style == AGPU_ERROR_OPENAI)
        body = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", message, "type",
                         openai_error_type(status), "param", "code");
    else
        body = json_pack("{s:s}", "error", message);
    if (!body)
        return 0;
    size_t need = json_dumpb(body, out, size, JSON_COMPACT);
    json_decref(body);
    if (need == 0 || need >= size)
        return 0;
    out[need] = '\0';
    return need;
}

agpu_error_style_t agpu_json_error_style(const char *path)
{
    return strncmp(path, "/v1/", 4) == 0 ? AGPU_ERROR_OPENAI : AGPU_ERROR_OLLAMA;
}
