/* A blocking HTTP request with libcurl's easy interface, for whole small answers. */
#include "config.h"

#include "agpu_fetch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    agpu_fetch_result_t *out;
    size_t max;
    size_t alloc;
    int too_big;
} sink_t;

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    sink_t *sink = arg;
    size_t len = size * nmemb;
    agpu_fetch_result_t *out = sink->out;
    if (out->len + len > sink->max) {
        sink->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (out->len + len + 1 > sink->alloc) {
        size_t alloc = (out->len + len + 1) * 2;
        char *grown = realloc(out->body, alloc);
        if (!grown)
            return 0;
        out->body = grown;
        sink->alloc = alloc;
    }
    memcpy(out->body + out->len, data, len);
    out->len += len;
    out->body[out->len] = '\0';
    return len;
}

int agpu_fetch(const char *method, const char *url, const char *json_body, long timeout_ms,
               size_t max_body, agpu_fetch_result_t *out, char *error, size_t error_size)
{
    memset(out, 0, sizeof *out);
    CURL *easy = curl_easy_init();
    if (!easy) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    sink_t sink = {.out = out, .max = max_body};
    char curl_error[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "agpu/" PACKAGE_VERSION);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
    if (json_body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, json_body);
    }
    if (strcmp(method, "GET") != 0 && !(json_body && strcmp(method, "POST") == 0))
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(easy);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    if (rc == CURLE_OK)
        return 0;
    if (sink.too_big)
        snprintf(error, error_size, "%s: answer larger than %zu bytes", url, max_body);
    else
        snprintf(error, error_size, "%s: %s", url, curl_error[0] ? curl_error : curl_easy_strerror(rc));
    agpu_fetch_free(out);
    return -1;
}

void agpu_fetch_free(agpu_fetch_result_t *result)
{
    free(result->body);
    memset(result, 0, sizeof *result);
}
