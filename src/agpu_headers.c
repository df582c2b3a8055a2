/* Which HTTP headers cross the proxy, in each direction. Every header of every request and
 * answer passes through here, so a name is matched by its length first: strncasecmp runs only
 * on the rare name whose length matches. */
#include "agpu_headers.h"

#include <string.h>
#include <strings.h>

typedef struct {
    const char *text;
    size_t len;
} header_name_t;

// clang-format off
#define NAME(s) {s, sizeof s - 1}
// clang-format on
#define COUNT(list) (sizeof list / sizeof list[0])

static bool name_in(const char *name, size_t len, const header_name_t *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (list[i].len == len && strncasecmp(name, list[i].text, len) == 0)
            return true;
    return false;
}

static const header_name_t hop[] = {NAME("Connection"),
                                    NAME("Keep-Alive"),
                                    NAME("Proxy-Connection"),
                                    NAME("Proxy-Authenticate"),
                                    NAME("Proxy-Authorization"),
                                    NAME("TE"),
                                    NAME("Trailer"),
                                    NAME("Transfer-Encoding"),
                                    NAME("Upgrade")};

bool agpu_headers_is_hop_by_hop(const char *name)
{
    return name_in(name, strlen(name), hop, COUNT(hop));
}

bool agpu_headers_forward_request(const char *name)
{
    static const header_name_t own[] = {NAME("Host"), NAME("Content-Length"), NAME("Expect"),
                                        NAME("Origin")};
    size_t len = strlen(name);
    return !name_in(name, len, hop, COUNT(hop)) && !name_in(name, len, own, COUNT(own));
}

bool agpu_headers_forward_response(const char *name)
{
    static const header_name_t own[] = {NAME("Content-Length"), NAME("Date")};
    size_t len = strlen(name);
    return !name_in(name, len, hop, COUNT(hop)) && !name_in(name, len, own, COUNT(own));
}
