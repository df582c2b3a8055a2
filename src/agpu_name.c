/* Ollama's model names, reduced to one comparable key. */
#include "agpu_name.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#define DEFAULT_HOST "registry.ollama.ai/"
#define DEFAULT_NAMESPACE "library/"

int agpu_name_key(const char *name, char *out, size_t out_size)
{
    char lower[512];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof lower)
        return -1;
    for (size_t i = 0; i <= len; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    const char *rest = lower;
    if (strncmp(rest, DEFAULT_HOST, strlen(DEFAULT_HOST)) == 0) {
        rest += strlen(DEFAULT_HOST);
        if (strncmp(rest, DEFAULT_NAMESPACE, strlen(DEFAULT_NAMESPACE)) == 0 &&
            strchr(rest + strlen(DEFAULT_NAMESPACE), '/') == NULL)
            rest += strlen(DEFAULT_NAMESPACE);
    } else if (strncmp(rest, DEFAULT_NAMESPACE, strlen(DEFAULT_NAMESPACE)) == 0 &&
               strchr(rest + strlen(DEFAULT_NAMESPACE), '/') == NULL) {
        rest += strlen(DEFAULT_NAMESPACE);
    }
    if (*rest == '\0')
        return -1;
    /* a tag exists only if the last ':' comes after the last '/'; "m:" has an empty one */
    const char *colon = strrchr(rest, ':'), *slash = strrchr(rest, '/');
    bool tagged = colon && (!slash || colon > slash);
    const char *suffix = !tagged ? ":latest" : colon[1] == '\0' ? "latest" : "";
    size_t rest_len = strlen(rest), suffix_len = strlen(suffix);
    if (rest_len + suffix_len >= out_size)
        return -1;
    memcpy(out, rest, rest_len);
    memcpy(out + rest_len, suffix, suffix_len + 1);
    return 0;
}
