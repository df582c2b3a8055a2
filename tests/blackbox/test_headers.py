"""Headers: X-Agpu-Node on every proxied reply; CORS and the Host check as Ollama applies them;
query string, Authorization and body passed to Ollama unchanged, with a local Host."""

import json

import pytest

import harness

M = "llama3.2"


# ---------------------------------------------------------------- X-Agpu-Node

@pytest.mark.parametrize("method,path,body", [
    ("GET", "/", None),
    ("HEAD", "/", None),
    ("GET", "/api/version", None),
    ("GET", "/api/tags", None),
    ("GET", "/api/ps", None),
    ("POST", "/api/show", {"model": M}),
    ("POST", "/api/show", {"model": "no-such-model"}),
    ("POST", "/api/generate", {"model": M, "prompt": "hi", "options": {"num_predict": 3}}),
    ("POST", "/api/generate", {"model": M, "prompt": "hi", "stream": False, "options": {"num_predict": 3}}),
    ("POST", "/api/chat", {"model": M, "messages": [{"role": "user", "content": "hi"}],
                           "options": {"num_predict": 3}}),
    ("POST", "/api/embed", {"model": "nomic-embed-text", "input": "hi"}),
    ("POST", "/v1/chat/completions", {"model": M, "messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 3, "stream": True}),
    ("GET", "/v1/models", None),
    ("GET", "/no/such/route", None),
    ("GET", "/api/generate", None),
], ids=lambda v: v if isinstance(v, str) else None)
def test_x_agpu_node_on_every_reply(shared, method, path, body):
    r = harness.request(shared.node.port, method, path, json_body=body)
    assert r.header("X-Agpu-Node") == shared.NAME, f"{method} {path} -> {r.status}, headers {r.headers}"
    assert len(r.header_all("X-Agpu-Node")) == 1


# ---------------------------------------------------------------- CORS

PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,authorization"}


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080", "https://localhost",
                                    "app://obsidian.md", "vscode-webview://abc123", "tauri://localhost"])
def test_cors_preflight_allowed_origin(shared, origin):
    r = harness.request(shared.node.port, "OPTIONS", "/api/generate", headers={"Origin": origin, **PREFLIGHT})
    assert r.status in (200, 204), r
    assert r.header("Access-Control-Allow-Origin") in (origin, "*"), r.headers
    methods = (r.header("Access-Control-Allow-Methods") or "").upper()
    assert "POST" in methods, r.headers
    allowed = (r.header("Access-Control-Allow-Headers") or "").lower()
    assert "content-type" in allowed and "authorization" in allowed, r.headers


@pytest.mark.parametrize("method,path", [("OPTIONS", "/api/generate"), ("POST", "/api/generate"),
                                         ("GET", "/api/tags")])
def test_cors_evil_origin_forbidden(shared, method, path):
    body = {"model": M, "prompt": "x", "stream": False} if method == "POST" else None
    hdrs = {"Origin": "http://evil.example"}
    if method == "OPTIONS":
        hdrs.update(PREFLIGHT)
    before = shared.sim.stats()["requests"]
    r = harness.request(shared.node.port, method, path, headers=hdrs, json_body=body)
    assert r.status == 403, r
    assert r.header("Access-Control-Allow-Origin") is None, r.headers
    if method == "POST":
        # A forbidden request never reaches Ollama (only the node's own polling may).
        gens = shared.sim.stats()["requests"] - before
        assert gens <= 2, f"{gens} requests reached the simulator"


def test_cors_allowed_origin_actual_request(shared):
    origin = "http://localhost:3000"
    r = harness.request(shared.node.port, "POST", "/api/generate", headers={"Origin": origin}, json_body={
        "model": M, "prompt": "cors", "stream": False, "options": {"num_predict": 3}})
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Origin") in (origin, "*"), r.headers
    assert r.json()["done"] is True


def test_no_origin_is_a_normal_request(shared):
    direct = harness.request(shared.sim.port, "GET", "/api/tags")
    via = harness.request(shared.node.port, "GET", "/api/tags")
    harness.assert_parity(direct, via, shared.NAME)
    assert via.header("Access-Control-Allow-Origin") is None


def test_cors_headers_not_duplicated(shared):
    """agpu and the Ollama behind it must not both add CORS headers."""
    origin = "http://localhost:5173"
    r = harness.request(shared.node.port, "GET", "/api/tags", headers={"Origin": origin})
    assert r.status == 200
    assert r.header_all("Access-Control-Allow-Origin") in ([origin], ["*"]), r.headers


@pytest.mark.parametrize("host,status", [("evil.example", 403), ("evil.example:11434", 403),
                                         ("localhost:11434", 200), ("127.0.0.1", 200), ("[::1]:11434", 200)])
def test_host_check_like_ollama_on_loopback(shared, host, status):
    """Ollama bound to loopback refuses a non-local Host (DNS rebinding); so must the node."""
    r = harness.request(shared.node.port, "GET", "/api/version", headers={"Host": host})
    assert r.status == status, r


# ---------------------------------------------------------------- what reaches Ollama

@pytest.fixture
def capture(cluster):
    up = harness.CaptureUpstream()
    cluster.others.append(up)
    node = cluster.agpu(up.url, name="capture-node")
    return up, node


def only(up, method, path_prefix, timeout=3.0):
    got = harness.wait_until(lambda: up.find(lambda r: r["method"] == method and r["path"].startswith(path_prefix)),
                             timeout)
    assert got, f"{method} {path_prefix} never reached the upstream; it saw " \
                f"{[(r['method'], r['path']) for r in up.requests]}"
    return got[-1]


def hdr(req, name):
    for k, v in req["headers"]:
        if k.lower() == name.lower():
            return v
    return None


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/version?x=1&y=a%20b"),
    ("GET", "/some/custom/route?sig=abc%2Fdef&ts=1700000000"),
    ("POST", "/api/custom?token=t0k%3D"),
])
def test_query_string_and_authorization_passed_through(capture, method, path):
    up, node = capture
    auth = "Bearer sk-test-0123456789/+=="
    body = b'{"hello": "world"}' if method == "POST" else None
    r = harness.request(node.port, method, path, body=body,
                        headers={"Authorization": auth, "Content-Type": "application/json"})
    assert r.status == 200, r
    seen = only(up, method, path)  # the whole path: the node's own watcher also asks /api/version
    assert seen["path"] == path, f"upstream saw {seen['path']!r}, client sent {path!r}"
    assert hdr(seen, "Authorization") == auth
    if body is not None:
        assert seen["body"] == body


def test_large_headers_reach_the_upstream_whole(capture):
    # Near the front door's per-connection memory: every line must reach the upstream intact.
    up, node = capture
    sent = {"Authorization": "Bearer " + "t" * 8000}
    sent.update({f"X-Extra-{i}": f"{i}-" + "v" * 100 for i in range(30)})
    r = harness.request(node.port, "GET", "/api/custom-large-headers", headers=sent)
    assert r.status == 200, r
    seen = only(up, "GET", "/api/custom-large-headers")
    for name, value in sent.items():
        assert hdr(seen, name) == value, f"{name} arrived as {hdr(seen, name)!r:.80}"


def test_model_request_forwarded_unchanged(capture):
    up, node = capture
    body = json.dumps({"model": M, "prompt": "exact bytes \u00e9\u4e2d", "stream": False,
                       "options": {"seed": 1}}, ensure_ascii=False).encode()
    auth = "Basic dXNlcjpwYXNz"

    def attempt():
        r = harness.request(node.port, "POST", "/api/generate?keep=1", body=body,
                            headers={"Authorization": auth, "Content-Type": "application/json",
                                     "User-Agent": "ollama-js/0.6.0"})
        return r if r.status == 200 else None

    r = harness.wait_until(attempt, 5.0, 0.2)  # the node may first need to learn its Ollama's models
    assert r, "POST /api/generate for a model the local Ollama has was not forwarded"
    seen = only(up, "POST", "/api/generate")
    assert seen["path"] == "/api/generate?keep=1"
    assert seen["body"] == body
    assert hdr(seen, "Authorization") == auth
    assert hdr(seen, "Content-Type") == "application/json"


def test_upstream_gets_a_local_host_header(capture):
    up, node = capture
    harness.request(node.port, "GET", "/api/version", headers={"Host": "localhost:11434"})
    seen = only(up, "GET", "/api/version")
    host = hdr(seen, "Host") or ""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    assert name in ("127.0.0.1", "localhost", "[::1]"), f"upstream saw Host {host!r}"
