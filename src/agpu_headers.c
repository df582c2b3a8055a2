/* Which HTTP headers cross the proxy, in each direction. */
#include "agpu_headers.h"

#include <stddef.h>
#include <strings.h>

static bool name_in(const char *name, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcasecmp(name, list[i]) == 0)
            return true;
    return false;
}

bool agpu_headers_is_hop_by_hop(const char *name)
{
    static const char *const hop[] = {"Connection", "Keep-Alive", "Proxy-Connection",
                                      "Proxy-Authenticate", "Proxy-Authorization", "TE",
                                      "Trailer", "Transfer-Encoding", "Upgrade", NULL};
    return name_in(name, hop);
}

bool agpu_headers_forward_request(const char *name)
{
    static const char *const own[] = {"Host", "Content-Length", "Expect", "Origin", NULL};
    return !agpu_headers_is_hop_by_hop(name) && !name_in(name, own);
}

bool agpu_headers_forward_response(const char *name)
{
    static const char *const own[] = {"Content-Length", "Date", NULL};
    return !agpu_headers_is_hop_by_hop(name) && !name_in(name, own);
}
