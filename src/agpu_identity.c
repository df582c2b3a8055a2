/* Who this node is to the mesh: a stable id (a hash of machine, name and port) and an
 * address its peers can reach. */
#include "agpu_identity.h"

#include "agpu_text.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void machine_id(char *out, size_t size)
{
    static const char *const paths[] = {"/etc/machine-id", "/var/lib/dbus/machine-id"};
    out[0] = '\0';
    for (size_t i = 0; i < 2 && !out[0]; i++) {
        FILE *f = fopen(paths[i], "r");
        if (f) {
            if (!fgets(out, (int)size, f))
                out[0] = '\0';
            fclose(f);
        }
    }
    if (!out[0] && gethostname(out, size) != 0)
        out[0] = '\0';
}

void agpu_identity_id(const char *name, uint16_t port, char out[AGPU_ID_LEN + 1])
{
    char seed[512], machine[128];
    machine_id(machine, sizeof machine);
    int len = snprintf(seed, sizeof seed, "%s|%s|%u", machine, name, (unsigned)port);
    unsigned char hash[AGPU_ID_LEN / 2];
    crypto_generichash(hash, sizeof hash, (const unsigned char *)seed, (size_t)len, NULL, 0);
    sodium_bin2hex(out, AGPU_ID_LEN + 1, hash, sizeof hash);
}

static int copy(char *out, size_t size, const char *text)
{
    return agpu_text_copy(out, size, text) >= size ? -1 : 0;
}

int agpu_identity_address(const char *listen_host, const char *advertise, char *out,
                          size_t out_size)
{
    if (advertise && advertise[0])
        return copy(out, out_size, advertise);
    if (strcmp(listen_host, "0.0.0.0") != 0 && strcmp(listen_host, "::") != 0)
        return copy(out, out_size, listen_host);
    struct ifaddrs *list = NULL;
    int rc = copy(out, out_size, "127.0.0.1");
    if (getifaddrs(&list) != 0)
        return rc;
    for (struct ifaddrs *i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
            (i->ifa_flags & IFF_LOOPBACK))
            continue;
        char text[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, text, sizeof text)) {
            rc = copy(out, out_size, text);
            break;
        }
    }
    freeifaddrs(list);
    return rc;
}
