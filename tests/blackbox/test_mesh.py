"""The mesh on one machine: nodes on 127.0.0.1 joined by seeds, what /agpu/v1/peers and
`agpu peers` show, and the lifecycle of a node that joins, is killed, comes back or leaves."""

import json
import socket
import time

import pytest

import harness


def peers(node, timeout=3.0):
    r = harness.request(node.port, "GET", "/agpu/v1/peers", timeout=timeout)
    assert r.status == 200, r
    assert r.content_type.startswith("application/json")
    return r.json()


def states(node):
    """{name: state} of every node `node` knows, itself included."""
    return {p["name"]: p["state"] for p in peers(node)["peers"]}


def wait_until(what, check, timeout):
    """Polls check() until it returns a true value; returns (value, seconds waited)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        last = check()
        if last:
            return last, time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last})")


def chain(cluster, sim, count):
    """count nodes; node i seeds only node i-1; the first has an Ollama, the rest none."""
    nodes = []
    for i in range(count):
        extra = ["--peer", f"127.0.0.1:{nodes[-1].gossip_port}"] if nodes else []
        ollama = sim.url if i == 0 else "none"
        nodes.append(cluster.agpu(ollama, name=f"n{i + 1}", extra=extra))
    return nodes


def all_alive(nodes):
    names = {n.name for n in nodes}
    return all(states(n) == {name: "alive" for name in names} for n in nodes)


@pytest.mark.timeout_s(40)
def test_chain_of_seeds_converges_and_tracks_kill_restart_and_leave(cluster):
    sim = cluster.sim()
    nodes = chain(cluster, sim, 4)
    _, took = wait_until("every node sees all four alive", lambda: all_alive(nodes), 3.0)
    print(f"converged in {took:.3f}s")

    # kill -9: dead everywhere within 3 s of the kill
    victim = nodes[2]
    victim.proc.kill9()
    killed_at = time.monotonic()
    others = [n for n in nodes if n is not victim]
    wait_until("n3 dead everywhere",
               lambda: all(states(n).get("n3") == "dead" for n in others), 4.0)
    took = time.monotonic() - killed_at
    assert took <= 3.2, f"a killed node was declared dead after {took:.2f}s"

    # restart on the same ports: the same node (same id), back alive everywhere
    old_id = next(p["id"] for p in peers(nodes[0])["peers"] if p["name"] == "n3")
    victim.start()
    wait_until("n3 alive again everywhere", lambda: all_alive(nodes), 3.0)
    new_id = next(p["id"] for p in peers(nodes[0])["peers"] if p["name"] == "n3")
    assert new_id == old_id

    # SIGTERM: goodbye, so it is gone at once
    leaver = nodes[1]
    leaver.stop()
    stopped_at = time.monotonic()
    rest = [n for n in nodes if n is not leaver]
    wait_until("n2 left everywhere", lambda: all(states(n).get("n2") == "left" for n in rest), 2.0)
    assert time.monotonic() - stopped_at < 1.5


def test_peers_answer_describes_every_node(cluster):
    sim = cluster.sim()
    a, b = chain(cluster, sim, 2)
    wait_until("both see both", lambda: all_alive([a, b]), 3.0)
    # the watcher has read the local Ollama's models by now or soon
    body, _ = wait_until("models of n1 known to n2",
                         lambda: (lambda d: d if any(p["name"] == "n1" and p["models"]
                                                     for p in d["peers"]) else None)(peers(b)),
                         5.0)
    assert isinstance(body["self"], str) and body["self"]
    by_name = {p["name"]: p for p in body["peers"]}
    assert set(by_name) == {"n1", "n2"}
    me = by_name["n2"]
    assert me["self"] is True and me["id"] == body["self"]
    assert by_name["n1"]["self"] is False
    for p in body["peers"]:
        for key in ("id", "name", "self", "state", "http", "gossip", "ollama", "models", "loaded",
                    "inflight", "capacity", "queued", "last_seen_ms"):
            assert key in p, f"{key} missing from {p}"
    n1 = by_name["n1"]
    assert n1["ollama"] == "up" and me["ollama"] == "none"
    assert n1["http"] == f"http://127.0.0.1:{a.port}"
    assert n1["gossip"] == f"tcp://127.0.0.1:{a.gossip_port}"
    assert "llama3.2:latest" in n1["models"]  # Ollama's shortest form
    assert n1["capacity"] >= 1 and me["capacity"] == 0
    assert 0 <= n1["last_seen_ms"] < 3000


def test_loaded_models_and_load_reach_peers(cluster):
    sim = cluster.sim(tokens_per_sec=20)
    a, b = chain(cluster, sim, 2)
    wait_until("both see both", lambda: all_alive([a, b]), 3.0)
    # a slow stream through n1 keeps one request in flight there
    conn = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    body = json.dumps({"model": "llama3.2", "prompt": "hello", "options": {"num_predict": 120}})
    conn.sendall((f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    try:
        n1 = lambda: next(p for p in peers(b)["peers"] if p["name"] == "n1")  # noqa: E731
        wait_until("n2 sees n1 busy with llama3.2 loaded",
                   lambda: n1()["inflight"] >= 1 and "llama3.2:latest" in n1()["loaded"], 4.5)
    finally:
        conn.close()
    wait_until("n2 sees n1 idle again", lambda: n1()["inflight"] == 0, 3.0)


def test_peers_cli_table_json_and_unreachable(cluster):
    sim = cluster.sim()
    a, b = chain(cluster, sim, 2)
    wait_until("both see both", lambda: all_alive([a, b]), 3.0)
    out = harness.run_cli(["peers", "--host", a.url])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["NAME", "ADDRESS", "STATE"]
    assert any(l.startswith("n1 ") and "self" in l for l in lines[1:])
    assert any(l.startswith("n2 ") and "alive" in l for l in lines[1:])

    out = harness.run_cli(["peers", "--json"], env={"AGPU_HOST": b.url})
    assert out.returncode == 0, out.stderr
    assert {p["name"] for p in json.loads(out.stdout)["peers"]} == {"n1", "n2"}

    out = harness.run_cli(["peers", "--host", f"http://127.0.0.1:{harness.closed_port()}"])
    assert out.returncode != 0
    assert "cannot reach" in out.stderr

    out = harness.run_cli(["peers", "--bogus"])
    assert out.returncode == 2


def test_garbage_on_the_gossip_port_is_survived(cluster):
    sim = cluster.sim()
    a, b = chain(cluster, sim, 2)
    wait_until("both see both", lambda: all_alive([a, b]), 3.0)
    for junk in (b"\xff" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 40):
        with socket.create_connection(("127.0.0.1", a.gossip_port), timeout=2) as s:
            s.sendall(junk)
            time.sleep(0.05)
    time.sleep(1.2)
    assert all_alive([a, b])


def test_agpu_api_unknown_path_and_method(cluster):
    sim, a = cluster.pair()
    r = harness.request(a.port, "GET", "/agpu/v1/nothing")
    assert r.status == 404 and "error" in r.json()
    r = harness.request(a.port, "POST", "/agpu/v1/peers", body=b"{}")
    assert r.status == 405 and "error" in r.json()


def test_measured_speed_reaches_peers(cluster):
    sim = cluster.sim(tokens_per_sec=40)
    a, b = chain(cluster, sim, 2)
    wait_until("both see both", lambda: all_alive([a, b]), 3.0)
    body = {"model": "llama3.2", "prompt": "measure me", "options": {"num_predict": 24}}
    r = harness.request(a.port, "POST", "/api/generate", json_body=body, timeout=10)
    assert r.status == 200 and r.ndjson()[-1]["done"] is True

    def n1_speed():
        n1 = next(p for p in peers(b)["peers"] if p["name"] == "n1")
        return n1["model_stats"].get("llama3.2:latest", {}).get("tokens_per_s")

    tps, _ = wait_until("n2 learns n1's measured speed", n1_speed, 3.0)
    assert 40 * 0.6 < tps < 40 * 1.6, f"measured {tps} tokens/s of a 40 tokens/s model"
    n1 = next(p for p in peers(b)["peers"] if p["name"] == "n1")
    assert 0 < n1["model_stats"]["llama3.2:latest"]["ttft_ms"] < 1000
