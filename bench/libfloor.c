/* bench/libfloor: the memory a process pays for agpu's libraries alone, for bench/mesh.
 *
 * It is linked with exactly the libraries agpu is linked with, calls into each so that none
 * is dropped by the linker, makes the same global initialisations as `agpu serve` (libcurl,
 * libsodium, a ZeroMQ context with one bound socket) and then sleeps until killed, so that
 * its VmRSS can be read like a node's. Built as bench/libfloor-nocurl without libcurl, to
 * show what the other libraries cost on their own. Nothing of agpu's own code runs here. */
#include <avahi-common/error.h>
#include <czmq.h>
#include <http_parser.h>
#include <jansson.h>
#include <microhttpd.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <unistd.h>
#ifndef FLOOR_WITHOUT_CURL
#include <curl/curl.h>
#endif

int main(void)
{
#ifndef FLOOR_WITHOUT_CURL
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    const char *curl = curl_version_info(CURLVERSION_NOW)->version;
#else
    const char *curl = "none";
#endif
    if (sodium_init() < 0)
        return 1;
    json_t *json = json_object();
    zsock_t *sock = zsock_new(ZMQ_PULL);
    if (!json || !sock || zsock_bind(sock, "tcp://127.0.0.1:*") < 0)
        return 1;
    printf("libfloor: microhttpd %s, msgpack %s, curl %s, http-parser %lx, avahi %s, pid %d\n",
           MHD_get_version(), msgpack_version(), curl, http_parser_version(),
           avahi_strerror(AVAHI_OK), (int)getpid());
    fflush(stdout);
    while (true)
        pause();
}
