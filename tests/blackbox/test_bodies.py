"""Big bodies both ways: large blob uploads (sized and chunked), the --max-body limit (413 with a
JSON error, node keeps serving), and large responses and lines passed whole."""

import http.client
import json
import os
import socket
import time

import pytest

import harness
from conftest import node_alive

M = "llama3.2"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def blob20():
    data = os.urandom(20 * MB)
    return data, harness.sha256_digest(data)


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_20mb_blob_upload_accepted(cluster, blob20, chunked):
    sim, node = cluster.pair(agpu_kw=dict(name="blob-node"))
    data, digest = blob20
    path = f"/api/blobs/{digest}"
    assert harness.request(node.port, "HEAD", path).status == 404
    t0 = time.monotonic()
    r = harness.request(node.port, "POST", path, body=data, chunked=chunked, timeout=20,
                        headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    assert r.header("X-Agpu-Node") == "blob-node"
    assert time.monotonic() - t0 < 10
    assert harness.request(node.port, "HEAD", path).status == 200
    assert harness.request(sim.port, "HEAD", path).status == 200  # it really reached Ollama
    assert node_alive(node.port)


@pytest.mark.timeout_s(30)
def test_20mb_blob_with_wrong_digest_rejected_like_ollama(cluster, blob20):
    sim, node = cluster.pair(agpu_kw=dict(name="blob-node"))
    data, _ = blob20
    wrong = "sha256:" + "1" * 64
    direct = harness.request(sim.port, "POST", f"/api/blobs/{wrong}", body=data, timeout=20)
    via = harness.request(node.port, "POST", f"/api/blobs/{wrong}", body=data, timeout=20)
    assert 400 <= direct.status < 500
    harness.assert_parity(direct, via, "blob-node")
    assert node_alive(node.port)


LIMIT = 1 * MB


def over_limit(node, path, body, chunked=False, content_type="application/json"):
    c = harness.Conn(node.port, timeout=10)
    try:
        c.send_request_watching("POST", path, {"Content-Type": content_type}, body, chunked=chunked)
        try:
            return c.read_response("POST")
        except (ConnectionResetError, harness.ConnectionClosed) as e:
            pytest.fail(f"POST {path} with a {len(body)}-byte body over --max-body {LIMIT}: "
                        f"connection dropped without a 413 ({e!r})")
    finally:
        c.close()


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("case", ["blob-sized", "blob-chunked", "generate-sized", "generate-chunked"])
def test_body_over_max_body_is_413_json(cluster, case):
    sim, node = cluster.pair(agpu_kw=dict(name="limit-node", max_body=LIMIT))
    if case.startswith("blob"):
        body = os.urandom(2 * MB)
        path = f"/api/blobs/{harness.sha256_digest(body)}"
    else:
        body = json.dumps({"model": M, "prompt": "x" * (2 * MB), "stream": False}).encode()
        path = "/api/generate"
    r = over_limit(node, path, body, chunked=case.endswith("chunked"))
    assert r.status == 413, r
    assert (r.content_type or "").startswith("application/json"), r
    assert isinstance(r.json().get("error"), str) and r.json()["error"], r
    assert node_alive(node.port)
    # The big body never reached Ollama as a complete request.
    if case.startswith("blob"):
        assert harness.request(sim.port, "HEAD", path).status == 404
    # And the node still takes a body under the limit.
    ok = harness.request(node.port, "POST", "/api/generate", json_body={
        "model": M, "prompt": "small", "stream": False, "options": {"num_predict": 3}})
    assert ok.status == 200, ok


@pytest.mark.timeout_s(20)
def test_body_exactly_at_max_body_accepted(cluster):
    sim, node = cluster.pair(agpu_kw=dict(name="limit-node", max_body=LIMIT))
    body = os.urandom(LIMIT)
    r = harness.request(node.port, "POST", f"/api/blobs/{harness.sha256_digest(body)}", body=body)
    assert r.status == 201, r


@pytest.mark.timeout_s(30)
def test_large_json_response_passed_whole(cluster):
    """A multi-megabyte JSON reply (many wide embeddings) arrives byte-for-byte."""
    sim, node = cluster.pair(sim_kw=dict(embed_dim=4096), agpu_kw=dict(name="big-node"))
    body = {"model": "nomic-embed-text", "input": [f"text number {i}" for i in range(64)]}
    direct = harness.request(sim.port, "POST", "/api/embed", json_body=body, timeout=20)
    via = harness.request(node.port, "POST", "/api/embed", json_body=body, timeout=20)
    assert direct.status == 200 and len(direct.body) > 1 * MB, (direct.status, len(direct.body))
    harness.assert_parity(direct, via, "big-node")
    assert len(via.json()["embeddings"]) == 64 and len(via.json()["embeddings"][0]) == 4096


@pytest.mark.timeout_s(30)
def test_large_json_response_to_a_slow_reader(cluster):
    """A client that reads a multi-megabyte reply slowly fills agpu's buffer again and again,
    so the upstream is paused and resumed many times, its last bytes included; the reply still
    arrives whole, and the next request on the same connection is served."""
    sim, node = cluster.pair(sim_kw=dict(embed_dim=4096), agpu_kw=dict(name="slow-reader-node"))
    body = {"model": "nomic-embed-text", "input": [f"text number {i}" for i in range(256)]}
    direct = harness.request(sim.port, "POST", "/api/embed", json_body=body, timeout=20)
    # more than the kernel's socket buffers on both sides and agpu's own can hold together
    assert direct.status == 200 and len(direct.body) > 8 * MB, (direct.status, len(direct.body))
    conn = http.client.HTTPConnection(harness.HOST, node.port, timeout=20)
    conn.sock = socket.socket()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a small window
    conn.sock.settimeout(20)
    conn.sock.connect((harness.HOST, node.port))
    try:
        conn.request("POST", "/api/embed", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        got = bytearray()
        while True:
            piece = resp.read(32 * 1024)
            if not piece:
                break
            got += piece
            time.sleep(0.002)  # about 16 MB/s: far slower than agpu reads its upstream
        assert harness.normalize(json.loads(got)) == harness.normalize(direct.json()), \
            "the slowly read reply differs from Ollama's own"
        conn.request("GET", "/api/version")
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["version"], again.status
    finally:
        conn.close()


@pytest.mark.timeout_s(30)
def test_large_request_and_long_ndjson_lines(cluster):
    """A 4 MB prompt goes through, and the long final line (its `context`) is not cut."""
    sim, node = cluster.pair(agpu_kw=dict(name="big-node"))
    words = " ".join(f"w{i}" for i in range(600000)).encode()[:4 * MB].decode(errors="ignore")
    body = {"model": M, "prompt": words, "options": {"seed": 1, "num_predict": 5}}
    direct = harness.request(sim.port, "POST", "/api/generate", json_body=body, timeout=20)
    via = harness.request(node.port, "POST", "/api/generate", json_body=body, timeout=20)
    harness.assert_parity(direct, via, "big-node")
    assert via.status == 200
    longest = max(len(line) for line in via.body.split(b"\n"))
    assert longest > 1 * MB, f"the longest line is only {longest} bytes: the test did not exercise long lines"
