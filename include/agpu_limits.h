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

/* A request that names a model (generate, chat, embed, the OpenAI routes...) is read whole
 * before it is forwarded: the model decides where it goes. Base64 images make these bodies
 * megabytes at most; 256 MiB bounds the memory one request can hold (--max-body still applies
 * when smaller). */
#define AGPU_MAX_MODEL_BODY (256ULL << 20)

/* A body over --max-body can only be answered (413) once it is all in; past the limit agpu
 * reads and drops this much more before it cuts the connection instead. */
#define AGPU_DISCARD_MAX (16ULL << 20)

/* Size of the block libmicrohttpd hands the content reader: one read of a stream. */
#define AGPU_RESPONSE_BLOCK (16U * 1024U)

/* Per-connection memory libmicrohttpd may use for the request line, headers and read buffer; a
 * request whose headers do not fit gets 431. libmicrohttpd zeroes it between requests, so it
 * is a per-request cost: 16 KiB holds any Ollama client's headers several times over (Go's
 * net/http allows 1 MiB) and bounds a slow-loris client's cost. */
#define AGPU_CONNECTION_MEMORY (16U * 1024U)

/* Upstream response headers we keep (count and total bytes); more is a broken upstream. */
#define AGPU_MAX_UPSTREAM_HEADERS 64
#define AGPU_MAX_UPSTREAM_HEADER_BYTES (32U * 1024U)

/* An upstream answer's status line and headers (and a chunked body's trailers), read before
 * the exchange sees them: Ollama's are a few hundred bytes; past this the answer is refused
 * as broken (libhttp-parser's own ceiling, 80 KiB, is higher). */
#define AGPU_MAX_UPSTREAM_HEAD (64U * 1024U)

/* Request headers forwarded upstream (count); libmicrohttpd already bounds their bytes. */
#define AGPU_MAX_FORWARD_HEADERS 64

/* Simultaneous client connections (configurable with --max-connections); each costs one fd on
 * each side, so the process raises RLIMIT_NOFILE to fit. */
#define AGPU_MAX_CONNECTIONS_DEFAULT 10000U

/* Shards (event-loop threads) at most, whatever --threads says. */
#define AGPU_MAX_SHARDS 256

/* Connections the kernel queues before a shard accepts them (capped by somaxconn). */
#define AGPU_LISTEN_BACKLOG 4096

/* Connecting to an Ollama on the LAN takes well under a millisecond; 3 s covers a busy host
 * without leaving a client waiting long for a 502 when it is down. --connect-timeout. */
#define AGPU_CONNECT_TIMEOUT_MS_DEFAULT 3000U

/* Host names of upstreams (an Ollama named by --ollama, a peer that advertises a name):
 * addresses kept per name (they are tried in turn; a dual-stack host has two), names cached
 * (a mesh's worth; the least recently used makes room), shards that may wait on a lookup
 * (all of them), and how long an answer serves before it is looked up again (meanwhile it still
 * serves) or a failure before the name is asked for again. getaddrinfo gives no TTL: a minute
 * follows a renumbered host soon enough without asking the name server per connection. */
#define AGPU_RESOLVER_MAX_ADDRS 8
#define AGPU_RESOLVER_MAX_NAMES 256
#define AGPU_RESOLVER_MAX_WAITERS AGPU_MAX_SHARDS
#define AGPU_RESOLVER_FRESH_MS 60000
#define AGPU_RESOLVER_FAILED_MS 2000

/* A client connection idle this long between requests is closed (streams being served are
 * never idle, and a suspended connection never times out). 75 s, as nginx's keepalive_timeout:
 * longer than SDK connection pools keep idle sockets, and it also bounds how long a client
 * that sent something libmicrohttpd cannot parse as a request (a NUL byte) holds a socket. */
#define AGPU_IDLE_TIMEOUT_S 75U

/* The mesh queue (--queue-max, --queue-timeout): while every slot for a model is busy, its
 * requests wait at their entry node, in order, for one to free. 512 as Ollama's own
 * OLLAMA_MAX_QUEUE; a minute is longer than a typical answer takes and shorter than a client's
 * patience. A request turned away gets 503 and Retry-After. */
#define AGPU_QUEUE_MAX_DEFAULT 512U
#define AGPU_QUEUE_TIMEOUT_MS_DEFAULT 60000U
#define AGPU_RETRY_AFTER_S "1"

/* How long a request waits for a busy warm replica before it may load the model cold on an
 * idle node (--cold-after): a cold load costs seconds and may evict another model, and at a
 * sane load a slot frees sooner; a wait this long says the model needs one more replica. */
#define AGPU_COLD_AFTER_MS_DEFAULT 3000U

/* A peer that has not begun to answer within this is given up for the next candidate
 * (--first-byte-timeout): Ollama's own model load timeout (OLLAMA_LOAD_TIMEOUT). A peer
 * that dies is given up sooner: when the mesh marks it suspect. */
#define AGPU_FIRST_BYTE_TIMEOUT_MS_DEFAULT 300000U

/* Nodes tried for one request before its client gets the last error. */
#define AGPU_ROUTE_MAX_TRIES 3

/* A mesh-wide list (/api/tags, /api/ps, /v1/models): each node's answer is read whole, up to
 * this, and nodes that have not answered within the time are left out. */
#define AGPU_GATHER_MAX_BODY (16U << 20)
#define AGPU_GATHER_TIMEOUT_MS 5000

/* How often a shard looks at requests that wait (the queue, a peer's first byte) while it has
 * any: completions wake it at once; this catches what gossip says. */
#define AGPU_WAITING_POLL_MS 25

/* Longest forms of the strings agpu keeps. */
#define AGPU_NAME_MAX 64        /* node name, as a host name */
#define AGPU_HOSTPORT_MAX 300   /* host (up to 255) + ':' + port */
#define AGPU_URL_MAX 1024       /* upstream base URL */
#define AGPU_MAX_SEEDS 64       /* --peer entries */
#define AGPU_ERROR_MAX 512      /* one error message for a client */

/* The gossip bus (agpu_msg). A decoder rejects (and the mesh counts) any message over one of
 * these; an encoder refuses to write one, so a sender must trim its state to fit. Lengths are
 * in bytes, without the terminating NUL. Peer liveness timeouts live beside the state machine
 * they drive: agpu_peer_timeouts_default in agpu_peer.c. */

/* Largest gossip message. The largest message the limits below allow is about 236 KiB (the
 * unit tests build it); a real one is 1-3 KiB. Also the ZMQ_MAXMSGSIZE of the gossip SUB
 * socket, so an oversized message is dropped before it is even read. */
#define AGPU_MSG_MAX_SIZE (256U * 1024U)

/* Models one node advertises. Busy nodes have tens installed; past this the sender leaves
 * out the ones it serves least. */
#define AGPU_MSG_MAX_MODELS 256

/* Peers in one membership digest. Full-mesh gossip is meant for tens to low hundreds of
 * nodes (design.md); a larger mesh needs the SWIM-style plan, not a larger digest. */
#define AGPU_MSG_MAX_MEMBERS 256

/* GPUs on one node: 8-GPU servers are common, 16 leaves room. */
#define AGPU_MSG_MAX_GPUS 16

/* Nesting of msgpack containers, known or unknown: ours go 3 deep (message, model list,
 * model); the rest is room for fields added later. Bounds the skipper's recursion. */
#define AGPU_MSG_MAX_DEPTH 16

#define AGPU_MSG_ID_MAX 64                             /* node id: a UUID is 32-36 characters */
#define AGPU_MSG_ENDPOINT_MAX (AGPU_HOSTPORT_MAX + 16) /* "tcp://" or "http://" + host:port */
#define AGPU_MSG_MODEL_NAME_MAX 256 /* host/namespace/model:tag; real names are under 100 */
#define AGPU_MSG_DIGEST_MAX 160     /* "sha256:" + 64 hex is 71; room for a longer hash */
#define AGPU_MSG_VERSION_MAX 64     /* Ollama's version string, e.g. "0.5.7-rc1" */
#define AGPU_MSG_GPU_NAME_MAX 128   /* "NVIDIA GeForce RTX 4090 Laptop GPU" and longer */

/* Largest heartbeat interval a peer may advertise. Receivers stretch their timeouts to a
 * slower peer's heartbeat, so this bounds how long a silent peer can stay alive (about 3 min
 * at the default ratios). */
#define AGPU_MSG_HEARTBEAT_MAX_MS 60000U

#endif
