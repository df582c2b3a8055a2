/* The gossip message codec: what one node tells the others, to and from msgpack bytes. */
#ifndef AGPU_MSG_H
#define AGPU_MSG_H

#include "agpu_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Wire format. A message is one msgpack map with short string keys. Keys a decoder does not
 * know are skipped whatever their value, so a field is added without breaking older nodes;
 * AGPU_MSG_VERSION changes only when an existing field changes meaning, and a decoder
 * rejects a version it does not speak. A nil value is read as an absent field. Every field
 * added after version 1 must be optional. Types: uint (any msgpack int >= 0), str (UTF-8, no
 * control characters; "token" strings are printable ASCII without spaces), float (float32/64
 * or int). Required fields are marked *.
 *
 *   every message    "m"* "agpu" | "v"* uint version | "k"* uint kind | "id"* token node id
 *                    | "inc"* uint incarnation
 *   STATE adds       "seq"* uint | "gep"* token gossip endpoint | "name" str | "hep" token HTTP
 *                    endpoint | "hb" uint ms | "oup" bool | "over" str | "slots" uint
 *                    | "drain" bool | "mods" [model] | "gpus" [gpu] | "mem" [member]
 *   model            "n"* str name | "d" token digest | "sz" uint bytes | "ld" bool | "vr" uint
 *                    bytes | "ttl" uint ms | "if" uint | "q" uint | "tps" float | "ttft" uint ms
 *   gpu              "n" str name | "ut" uint percent | "vt" uint bytes | "vu" uint bytes
 *   member           "id"* token | "ep"* token gossip endpoint | "inc"* uint
 *
 * Sizes are bounded by the AGPU_MSG_* limits in agpu_limits.h.
 */

#define AGPU_MSG_MAGIC "agpu"
#define AGPU_MSG_VERSION 1

/* Sent as the model's ttl_ms when Ollama keeps it loaded with no expiry (keep_alive < 0). */
#define AGPU_MSG_TTL_FOREVER UINT64_MAX

typedef enum {
    AGPU_MSG_STATE = 1,   /* a node's full routing state and membership digest */
    AGPU_MSG_GOODBYE = 2, /* the node is leaving on purpose: drop it now */
} agpu_msg_kind_t;

/* Why a message was not decoded or encoded. Negative so "rc < 0" means failure; each has a
 * short name (agpu_msg_error_name) to count drops by, e.g. as a metrics label. */
typedef enum {
    AGPU_MSG_OK = 0,
    AGPU_MSG_ETRUNCATED = -1, /* the bytes end inside a value */
    AGPU_MSG_EMALFORMED = -2, /* not msgpack (reserved byte), or bytes after the message */
    AGPU_MSG_ETOOBIG = -3,    /* over AGPU_MSG_MAX_SIZE, or (encode) over the buffer given */
    AGPU_MSG_ELIMIT = -4,     /* a count, string or nesting over its AGPU_MSG_* limit */
    AGPU_MSG_ETYPE = -5,      /* a known field holds the wrong msgpack type */
    AGPU_MSG_EVALUE = -6,     /* out of range: control characters, bad UTF-8, an empty id,
                                 a negative count, NaN, a percentage over 100 */
    AGPU_MSG_EMISSING = -7,   /* a required field is absent */
    AGPU_MSG_EDUPLICATE = -8, /* a known key twice in one map */
    AGPU_MSG_EMAGIC = -9,     /* not an agpu message at all */
    AGPU_MSG_EVERSION = -10,  /* a protocol version this node does not speak */
    AGPU_MSG_EKIND = -11,     /* a kind this node does not know (from a newer node) */
    AGPU_MSG_ENOMEM = -12,
} agpu_msg_err_t;

/* Number of error codes, AGPU_MSG_OK included: index an array of counters by -rc. */
#define AGPU_MSG_NERRORS 13

/* One model on a node: installed, perhaps loaded, perhaps busy. The name is as Ollama gives it
 * (normalising it is the reader's job). A speed of 0 means not measured yet. */
typedef struct {
    const char *name;    /* "n" */
    const char *digest;  /* "d": "" if unknown */
    uint64_t size;       /* "sz": bytes on disk */
    bool loaded;         /* "ld": in memory now */
    uint64_t vram;       /* "vr": bytes of VRAM while loaded */
    uint64_t ttl_ms;     /* "ttl": until Ollama unloads it, counted from sending (the clocks of
                            two nodes are not comparable, a duration is); AGPU_MSG_TTL_FOREVER */
    uint32_t in_flight;  /* "if": requests being generated */
    uint32_t queued;     /* "q": requests waiting for a slot */
    double tokens_per_s; /* "tps": measured generation speed */
    uint32_t ttft_ms;    /* "ttft": measured time to first token */
} agpu_msg_model_t;

/* One GPU: room for the GPU-aware router; all zero until a node measures them. */
typedef struct {
    const char *name;    /* "n" */
    uint32_t util_pct;   /* "ut": 0..100 */
    uint64_t vram_total; /* "vt": bytes */
    uint64_t vram_used;  /* "vu": bytes */
} agpu_msg_gpu_t;

/* One entry of the membership digest: a peer the sender knows alive. A receiver that does
 * not know the id connects to the endpoint, which is how one seed teaches the whole mesh. */
typedef struct {
    const char *id;       /* "id" */
    const char *endpoint; /* "ep": its gossip endpoint */
    uint64_t incarnation; /* "inc" */
} agpu_msg_member_t;

/* The body of a STATE message. */
typedef struct {
    uint64_t seq;                /* "seq": +1 per STATE in one incarnation: older copies lose */
    const char *name;            /* "name": human name (host name), up to AGPU_NAME_MAX */
    const char *gossip_endpoint; /* "gep": the sender's PUB socket, e.g. "tcp://10.0.0.2:7447" */
    const char *http_endpoint;   /* "hep": where peers forward requests to it */
    uint32_t heartbeat_ms;       /* "hb": its heartbeat interval; 0 = the receiver's default */
    bool ollama_up;              /* "oup": its Ollama answered the last poll */
    const char *ollama_version;  /* "over": "" if unknown */
    uint32_t slots;              /* "slots": requests it runs in parallel */
    bool draining;               /* "drain": takes no new work */
    size_t n_models;             /* "mods" */
    const agpu_msg_model_t *models;
    size_t n_gpus; /* "gpus" */
    const agpu_msg_gpu_t *gpus;
    size_t n_members; /* "mem": the membership digest, not counting the sender */
    const agpu_msg_member_t *members;
} agpu_msg_state_t;

/*
 * One message. To send, fill one in (zero it first; strings and arrays are borrowed, NULL
 * strings are sent as "") and encode it. A decoded message owns its strings and arrays in one
 * arena: every string of its kind's fields is non-NULL ("" when absent), and agpu_msg_reset
 * frees them all.
 */
typedef struct {
    agpu_msg_kind_t kind;         /* "k" */
    const char *id;               /* "id": stable per node, up to AGPU_MSG_ID_MAX */
    uint64_t incarnation;         /* "inc": grows on every start, so a restart is told apart */
    agpu_msg_state_t state;       /* kind == AGPU_MSG_STATE only; zero otherwise */
    struct agpu_msg_arena *arena; /* private: what decode allocated; NULL when built by hand */
} agpu_msg_t;

/*
 * Decodes one message from exactly len bytes (a whole ZeroMQ frame: trailing bytes are an
 * error). Pure: reads nothing outside buf[0..len), keeps no pointer into buf, never aborts on
 * any input, and allocates nothing until the whole buffer has proved to be well-formed msgpack
 * with our magic, version and kind (then never more than the limits allow).
 * out is overwritten (reset it first if it held a decoded message). Returns AGPU_MSG_OK with
 * out filled in, or a negative agpu_msg_err_t with out left empty (nothing to free).
 */
int agpu_msg_decode(const void *buf, size_t len, agpu_msg_t *out);

/*
 * Encodes msg into buf[0..size) and sets *len to the bytes written. With buf NULL, only
 * measures (size is ignored). The same rules as decode apply, so whatever encodes decodes.
 * Returns AGPU_MSG_OK, AGPU_MSG_ETOOBIG when it does not fit, or the error decode would give.
 */
int agpu_msg_encode(const agpu_msg_t *msg, void *buf, size_t size, size_t *len);

/* Frees what decode allocated and zeroes msg. NULL is a no-op. */
void agpu_msg_reset(agpu_msg_t *msg);

/* Moves a decoded message: dst (overwritten) takes src's contents and src is left empty. */
void agpu_msg_move(agpu_msg_t *dst, agpu_msg_t *src);

/* "ok", "truncated", "malformed", "too_big", "limit", "type", "value", "missing",
 * "duplicate", "magic", "version", "kind", "nomem"; "unknown" for anything else. */
const char *agpu_msg_error_name(int err);

/* "state", "goodbye", or "unknown". */
const char *agpu_msg_kind_name(agpu_msg_kind_t kind);

#endif
