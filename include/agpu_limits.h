/* Every size, count and timeout agpu enforces, in one place, with the reason for each value. */
#ifndef AGPU_LIMITS_H
#define AGPU_LIMITS_H

/* Request bodies are streamed, so this bounds abuse, not memory: 64 GiB fits the largest model
 * blobs `ollama create` uploads. Configurable with --max-body. */
#define AGPU_MAX_BODY_DEFAULT (64ULL << 30)

/* Bytes buffered per direction of one exchange before the faster side is paused. Large enough
 * that a fast upstream never waits on a slow syscall, small enough that 10,000 streams fit in
 * memory (2 x 256 KiB worst case each, almost always a few hundred bytes). */
#define AGPU_PIPE_SOFT_CAP (256U * 1024U)

/* Size of the block libmicrohttpd hands the content reader: one read of a stream. */
#define AGPU_RESPONSE_BLOCK (64U * 1024U)

/* Per-connection memory libmicrohttpd may use for the request line and headers; a request whose
 * headers do not fit gets 431 from libmicrohttpd. Go's net/http allows 1 MiB; 64 KiB is ample for
 * every Ollama client and bounds a slow-loris client's cost. */
#define AGPU_CONNECTION_MEMORY (64U * 1024U)

/* Upstream response headers we keep (count and total bytes); more is a broken upstream. */
#define AGPU_MAX_UPSTREAM_HEADERS 64
#define AGPU_MAX_UPSTREAM_HEADER_BYTES (32U * 1024U)

/* Request headers forwarded upstream (count); libmicrohttpd already bounds their bytes. */
#define AGPU_MAX_FORWARD_HEADERS 64

/* Simultaneous client connections (configurable with --max-connections); each costs one fd on
 * each side, so the process raises RLIMIT_NOFILE to fit. */
#define AGPU_MAX_CONNECTIONS_DEFAULT 10000U

/* Connecting to an Ollama on the LAN takes well under a millisecond; 3 s covers a busy host
 * without leaving a client waiting long for a 502 when it is down. --connect-timeout. */
#define AGPU_CONNECT_TIMEOUT_MS_DEFAULT 3000U

/* A client connection idle this long between requests is closed (streams being served are
 * never idle, and a suspended connection never times out). Go's Ollama has no limit; 10 min
 * keeps long-lived SDK keep-alive pools working. */
#define AGPU_IDLE_TIMEOUT_S 600U

/* Longest forms of the strings agpu keeps. */
#define AGPU_NAME_MAX 64        /* node name, as a host name */
#define AGPU_HOSTPORT_MAX 300   /* host (up to 255) + ':' + port */
#define AGPU_URL_MAX 1024       /* upstream base URL */
#define AGPU_MAX_SEEDS 64       /* --peer entries */
#define AGPU_ERROR_MAX 512      /* one error message for a client */

#endif
