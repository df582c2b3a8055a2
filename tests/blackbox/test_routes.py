"""Route parity: every route of the Ollama API answered through agpu exactly as Ollama (the
simulator) answers it directly: same status, Content-Type and body (timestamps and durations
aside), plus agpu's X-Agpu-Node header.

Each request goes to two identical simulators, one directly and one through agpu, in the same
order, so model state (loaded, pulled, copied, deleted) stays the same on both sides."""

import json

import pytest

import harness

M = "llama3.2"
M2 = "qwen2.5:0.5b"
EMB = "nomic-embed-text"
OPTS = {"seed": 42, "num_predict": 12}

BLOB = b"agpu blob parity test\n" * 100
BLOB_DIGEST = harness.sha256_digest(BLOB)
WRONG_DIGEST = "sha256:" + "0" * 64


def J(obj):
    return ("json", obj)


def RAW(data, ctype="application/json"):
    return ("raw", data, ctype)


# (id, method, path, body) — run in this order on both sides.
CASES = [
    ("root-get", "GET", "/", None),
    ("root-head", "HEAD", "/", None),
    ("version-get", "GET", "/api/version", None),
    ("version-head", "HEAD", "/api/version", None),
    ("tags-get", "GET", "/api/tags", None),
    ("tags-head", "HEAD", "/api/tags", None),
    ("tags-query", "GET", "/api/tags?verbose=true&x=%20y", None),
    ("ps-empty", "GET", "/api/ps", None),
    ("ps-head", "HEAD", "/api/ps", None),
    ("options-no-origin", "OPTIONS", "/api/tags", None),
    ("show-model", "POST", "/api/show", J({"model": M})),
    ("show-old-name-field", "POST", "/api/show", J({"name": M2})),
    ("show-verbose", "POST", "/api/show", J({"model": M2, "verbose": True})),
    ("show-full-name", "POST", "/api/show", J({"model": "registry.ollama.ai/library/llama3.2:latest"})),
    ("show-case-insensitive", "POST", "/api/show", J({"model": "LLAMA3.2:Latest"})),
    ("show-unknown", "POST", "/api/show", J({"model": "no-such-model"})),
    ("show-missing-model", "POST", "/api/show", J({})),
    ("generate-nostream", "POST", "/api/generate",
     J({"model": M, "prompt": "Why is the sky blue?", "stream": False, "options": OPTS})),
    ("generate-stream-default", "POST", "/api/generate",
     J({"model": M, "prompt": "Why is the sky blue?", "options": OPTS})),
    ("generate-stream-true", "POST", "/api/generate",
     J({"model": M2, "prompt": "Tell me a story", "stream": True, "options": OPTS})),
    ("generate-echo-model-as-sent", "POST", "/api/generate",
     J({"model": "llama3.2:latest", "prompt": "hi", "stream": False, "options": OPTS})),
    ("generate-system", "POST", "/api/generate",
     J({"model": M, "prompt": "hi", "system": "You are terse.", "stream": False, "options": OPTS})),
    ("generate-load", "POST", "/api/generate", J({"model": M2})),
    ("ps-loaded", "GET", "/api/ps", None),
    ("generate-unload", "POST", "/api/generate", J({"model": M2, "keep_alive": 0})),
    ("generate-unknown-model", "POST", "/api/generate", J({"model": "no-such-model", "prompt": "x"})),
    ("generate-missing-model", "POST", "/api/generate", J({"prompt": "x"})),
    ("generate-malformed-json", "POST", "/api/generate", RAW(b'{"model": "llama3.2", "prompt": ')),
    ("generate-not-json", "POST", "/api/generate", RAW(b"hello", "text/plain")),
    ("generate-empty-body", "POST", "/api/generate", RAW(b"")),
    ("chat-nostream", "POST", "/api/chat",
     J({"model": M, "messages": [{"role": "user", "content": "Hello!"}], "stream": False, "options": OPTS})),
    ("chat-stream", "POST", "/api/chat",
     J({"model": M, "messages": [{"role": "system", "content": "Be kind."},
                                 {"role": "user", "content": "Hello!"}], "options": OPTS})),
    ("chat-load", "POST", "/api/chat", J({"model": M, "messages": []})),
    ("chat-unknown-model", "POST", "/api/chat",
     J({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})),
    ("chat-malformed-json", "POST", "/api/chat", RAW(b'{"model": "llama3.2", "messages": [')),
    ("embed-one", "POST", "/api/embed", J({"model": EMB, "input": "hello world"})),
    ("embed-many", "POST", "/api/embed", J({"model": EMB, "input": ["a", "b", "c"]})),
    ("embed-unknown", "POST", "/api/embed", J({"model": "no-such-model", "input": "x"})),
    ("embed-missing-model", "POST", "/api/embed", J({"input": "x"})),
    ("embeddings-legacy", "POST", "/api/embeddings", J({"model": EMB, "prompt": "hello world"})),
    ("ps-after-embed", "GET", "/api/ps", None),
    ("v1-chat", "POST", "/v1/chat/completions",
     J({"model": M, "messages": [{"role": "user", "content": "Hello!"}], "seed": 42, "max_tokens": 12})),
    ("v1-chat-stream", "POST", "/v1/chat/completions",
     J({"model": M, "messages": [{"role": "user", "content": "Hello!"}], "seed": 42, "max_tokens": 12,
        "stream": True})),
    ("v1-chat-stream-usage", "POST", "/v1/chat/completions",
     J({"model": M, "messages": [{"role": "user", "content": "Hello!"}], "seed": 42, "max_tokens": 12,
        "stream": True, "stream_options": {"include_usage": True}})),
    ("v1-chat-unknown-model", "POST", "/v1/chat/completions",
     J({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})),
    ("v1-chat-malformed", "POST", "/v1/chat/completions", RAW(b'{"model":')),
    ("v1-completions", "POST", "/v1/completions",
     J({"model": M, "prompt": "Once upon a time", "seed": 42, "max_tokens": 12})),
    ("v1-completions-stream", "POST", "/v1/completions",
     J({"model": M, "prompt": "Once upon a time", "seed": 42, "max_tokens": 12, "stream": True})),
    ("v1-embeddings", "POST", "/v1/embeddings", J({"model": EMB, "input": ["hello", "world"]})),
    ("v1-models", "GET", "/v1/models", None),
    ("v1-model", "GET", "/v1/models/llama3.2:latest", None),
    ("v1-model-unknown", "GET", "/v1/models/no-such-model", None),
    ("v1-responses", "POST", "/v1/responses", J({"model": M, "input": "Hello!", "max_output_tokens": 12})),
    ("v1-messages", "POST", "/v1/messages",
     J({"model": M, "max_tokens": 12, "messages": [{"role": "user", "content": "Hello!"}]})),
    ("unknown-route-get", "GET", "/no/such/route", None),
    ("unknown-route-post", "POST", "/api/no-such-route", J({"model": M})),
    ("wrong-method-generate", "GET", "/api/generate", None),
    ("wrong-method-chat", "PUT", "/api/chat", J({"model": M})),
    ("wrong-method-tags", "POST", "/api/tags", J({})),
    ("wrong-method-delete", "GET", "/api/delete", None),
    ("blob-head-missing", "HEAD", f"/api/blobs/{BLOB_DIGEST}", None),
    ("blob-upload", "POST", f"/api/blobs/{BLOB_DIGEST}", RAW(BLOB, "application/octet-stream")),
    ("blob-head-present", "HEAD", f"/api/blobs/{BLOB_DIGEST}", None),
    ("blob-upload-wrong-digest", "POST", f"/api/blobs/{WRONG_DIGEST}", RAW(BLOB, "application/octet-stream")),
    ("pull-nostream", "POST", "/api/pull", J({"model": "tinyllama", "stream": False})),
    ("generate-just-pulled", "POST", "/api/generate",
     J({"model": "tinyllama", "prompt": "hi", "stream": False, "options": OPTS})),
    ("tags-after-pull", "GET", "/api/tags", None),
    ("create-from", "POST", "/api/create",
     J({"model": "agpu-test-mine", "from": M, "system": "Be brief.", "stream": False})),
    ("show-created", "POST", "/api/show", J({"model": "agpu-test-mine"})),
    ("copy", "POST", "/api/copy", J({"source": M, "destination": "agpu-test-copy"})),
    ("copy-unknown-source", "POST", "/api/copy", J({"source": "no-such-model", "destination": "x"})),
    ("show-copied", "POST", "/api/show", J({"model": "agpu-test-copy"})),
    ("delete", "DELETE", "/api/delete", J({"model": "agpu-test-copy"})),
    ("delete-again", "DELETE", "/api/delete", J({"model": "agpu-test-copy"})),
    ("delete-old-name-field", "DELETE", "/api/delete", J({"name": "agpu-test-mine"})),
    ("push-nostream", "POST", "/api/push", J({"model": M, "stream": False})),
    ("tags-final", "GET", "/api/tags", None),
]


def send_both(twins, method, path, body, headers=None):
    kw = {"headers": dict(headers or {})}
    if body is not None:
        if body[0] == "json":
            kw["json_body"] = body[1]
        else:
            kw["body"] = body[1]
            kw["headers"].setdefault("Content-Type", body[2])
    return twins.both(method, path, **kw)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_route_parity(twins, case):
    name, method, path, body = case
    direct, via = send_both(twins, method, path, body)
    harness.assert_parity(direct, via, twins.NAME, f"{method} {path}")
    if method == "HEAD":
        assert via.body == b""


def test_root_is_ollama_is_running(twins):
    r = harness.request(twins.node.port, "GET", "/")
    assert r.status == 200 and r.body == b"Ollama is running", r
    assert r.content_type.startswith("text/plain"), r.content_type
    h = harness.request(twins.node.port, "HEAD", "/")
    assert h.status == 200 and h.body == b""


def test_unknown_route_is_404_text(twins):
    r = harness.request(twins.node.port, "GET", "/definitely/not/a/route")
    assert r.status == 404 and r.body == b"404 page not found", r
    assert r.header("X-Agpu-Node") == twins.NAME


def test_wrong_method_is_405_text(twins):
    r = harness.request(twins.node.port, "GET", "/api/generate")
    assert r.status == 405 and r.body == b"405 method not allowed", r
    assert r.header("X-Agpu-Node") == twins.NAME


def test_generate_stream_is_ndjson_lines(twins):
    r = harness.request(twins.node.port, "POST", "/api/generate",
                        json_body={"model": M, "prompt": "Count to five", "options": OPTS})
    assert r.status == 200
    assert r.content_type == "application/x-ndjson", r.content_type
    lines = r.ndjson()
    assert len(lines) >= 2 and all(not x["done"] for x in lines[:-1]), lines[:3]
    last = lines[-1]
    assert last["done"] is True and last.get("done_reason"), last
    for key in ("total_duration", "eval_count"):
        assert key in last, f"final line lacks {key}: {last}"
    assert r.body.endswith(b"\n")


def test_pull_stream_parity(twins):
    """Progress lines depend on timing; the statuses, their order and the final line must match."""
    body = {"model": "smollm:135m"}
    direct, via = twins.both("POST", "/api/pull", json_body=body, timeout=20)
    assert via.status == direct.status == 200, (direct, via)
    assert via.content_type == direct.content_type
    assert via.header("X-Agpu-Node") == twins.NAME

    def statuses(r):
        seq = []
        for x in r.ndjson():
            if not seq or seq[-1] != x.get("status"):
                seq.append(x.get("status"))
        return seq

    assert statuses(via) == statuses(direct)
    assert via.ndjson()[-1] == direct.ndjson()[-1] == {"status": "success"}


def test_keepalive_connection_reuse(twins):
    """SDKs keep connections open: several requests, streamed and not, on one connection."""
    with harness.Conn(twins.node.port) as c:
        for i in range(3):
            c.send_request("GET", "/api/version")
            r = c.read_response("GET")
            assert r.status == 200 and "version" in r.json()
            body = json.dumps({"model": M, "prompt": f"hi {i}", "options": OPTS}).encode()
            c.send_request("POST", "/api/generate", {"Content-Type": "application/json"}, body)
            r = c.read_response("POST")
            assert r.status == 200 and r.ndjson()[-1]["done"] is True
            c.send_request("HEAD", "/")
            r = c.read_response("HEAD")
            assert r.status == 200


def test_same_request_same_answer_through_agpu(twins):
    """Determinism survives the proxy: identical requests give identical text through agpu."""
    body = {"model": M, "prompt": "repeat me", "stream": False, "options": {"seed": 7, "num_predict": 20}}
    a = harness.request(twins.node.port, "POST", "/api/generate", json_body=body).json()
    b = harness.request(twins.node.port, "POST", "/api/generate", json_body=body).json()
    assert a["response"] == b["response"] and a["response"]
