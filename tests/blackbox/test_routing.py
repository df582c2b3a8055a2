"""Routing across the mesh, black box: nodes on 127.0.0.1 joined by seeds (no mDNS), each beside
its own ollama-sim, and requests sent to one node (the entry) that another node serves.

What is checked is what a client and the simulators see: X-Agpu-Node on every answer, the
simulators' own counters (/sim/stats: `completed` counts the generation and embedding requests a
simulator finished, `loads` its cold loads), /agpu/v1/peers and /agpu/v1/route, `agpu route`.

Speeds: simulators are fast wherever speed does not matter; where a request must stay in flight
(a slot busy, a stream to cut), the model is slow and the request short enough to keep the test
within seconds. Every request has a timeout; every wait is bounded."""

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness

HOP = {"X-Agpu-Hop": "1"}
BUSY_BODY = {"error": "server busy, please try again.  maximum pending requests exceeded"}


# ---------------------------------------------------------------- looking at the mesh

def peers(node, timeout=3.0):
    r = harness.request(node.port, "GET", "/agpu/v1/peers", timeout=timeout)
    assert r.status == 200, r
    return r.json()


def peer(node, name):
    """What `node` knows of the node called `name` (None if nothing)."""
    for p in peers(node)["peers"]:
        if p["name"] == name:
            return p
    return None


def wait_for(what, check, timeout, interval=0.03):
    """Polls check() until it returns a true value (returned); fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
        except (OSError, ValueError, KeyError, AssertionError) as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {str(last)[:600]})")
        time.sleep(interval)


def full(model):
    """The name Ollama lists a model under ("m" -> "m:latest")."""
    return model if ":" in model else model + ":latest"


class Mesh:
    """Nodes started by the `cluster` fixture (so stopped by PID in teardown), by name."""

    def __init__(self):
        self.agpu = {}
        self.sim = {}
        self.models = {}

    def __getitem__(self, name):
        return self.agpu[name]


def start_mesh(cluster, specs, topology="chain", converge=8.0):
    """specs: dicts with name, models (None: --ollama none), sim (ollama-sim kwargs), extra (agpu
    flags). topology "chain": each node seeds only the one before it; "star": all seed the first.
    Returns once every node sees every node alive and knows every node's installed models."""
    mesh = Mesh()
    order = []
    for spec in specs:
        name = spec["name"]
        sim = None
        if spec.get("models") is not None:
            sim = cluster.sim(models=spec["models"], name=f"sim-{name}", **spec.get("sim", {}))
            mesh.sim[name] = sim
            mesh.models[name] = {full(m) for m in spec["models"]}
        extra = list(spec.get("extra", ()))
        seed = None
        if order:
            seed = order[-1] if topology == "chain" else order[0]
        if seed is not None:
            extra += ["--peer", f"127.0.0.1:{seed.gossip_port}"]
        node = cluster.agpu(sim.url if sim else "none", name=name, extra=extra)
        mesh.agpu[name] = node
        order.append(node)

    names = set(mesh.agpu)

    def converged():
        for node in order:
            body = peers(node)
            by_name = {p["name"]: p for p in body["peers"]}
            if set(by_name) != names:
                return False
            for n, p in by_name.items():
                if p["state"] != "alive":
                    return False
                if n in mesh.models and not mesh.models[n] <= set(p["models"]):
                    return False
        return True

    wait_for("the mesh converges (all alive, models known)", converged, converge)
    return mesh


def preload(node, model, timeout=10.0):
    """Loads `model` into `node`'s own Ollama (X-Agpu-Hop: served there, never forwarded)."""
    r = harness.request(node.port, "POST", "/api/generate", json_body={"model": model, "prompt": ""},
                        headers=HOP, timeout=timeout)
    assert r.status == 200, f"preload {model} on {node.name}: {r}"
    assert r.header("X-Agpu-Node") == node.name, r.headers
    return r


def wait_loaded(observer, name, model, timeout=5.0):
    """Until `observer` sees `model` loaded on node `name`."""
    wait_for(f"{observer.name} sees {model} loaded on {name}",
             lambda: full(model) in (peer(observer, name) or {}).get("loaded", []), timeout)


def wait_measured(observer, name, model, timeout=5.0):
    def speed():
        p = peer(observer, name) or {}
        return (p.get("model_stats") or {}).get(full(model), {}).get("tokens_per_s")
    return wait_for(f"{observer.name} knows the measured speed of {model} on {name}", speed, timeout)


def stats(sim):
    return sim.stats(timeout=3)


class SimSampler:
    """Samples /sim/stats of some simulators every 10 ms in a thread while the `with` block runs:
    the most requests each had running (`active`) and waiting inside it (`queued`). The
    simulator frees a slot before the answer's last line leaves it, so a node that keeps to its
    --slots never makes its Ollama queue."""

    def __init__(self, sims, interval=0.01):
        self.sims = dict(sims)
        self.interval = interval
        self.max_active = {n: 0 for n in self.sims}
        self.max_queued = {n: 0 for n in self.sims}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for name, sim in self.sims.items():
                try:
                    st = sim.stats(timeout=2)
                except (OSError, AssertionError, ValueError):
                    continue
                self.max_active[name] = max(self.max_active[name], st["active"])
                self.max_queued[name] = max(self.max_queued[name], st["queued"])
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------- requests

def gen_body(model, n=8, stream=True, prompt="hello"):
    return {"model": model, "prompt": prompt, "stream": stream, "options": {"num_predict": n}}


def generate(node, model, n=8, stream=False, headers=None, timeout=10.0, prompt="hello"):
    return harness.request(node.port, "POST", "/api/generate",
                           json_body=gen_body(model, n, stream, prompt), headers=headers,
                           timeout=timeout)


class StreamResult:
    def __init__(self):
        self.status = None
        self.node = None
        self.headers = []
        self.lines = []  # parsed JSON (or the raw bytes of a line that is not JSON)
        self.t_head = None
        self.t_first = None
        self.t_end = None  # seconds since the test's t0 (time.monotonic) when the body ended
        self.started = None  # time.monotonic() when the request was sent
        self.ended = False
        self.hung = False
        self.exc = None

    @property
    def last(self):
        return self.lines[-1] if self.lines else None

    @property
    def done(self):
        return isinstance(self.last, dict) and self.last.get("done") is True

    @property
    def error_line(self):
        return isinstance(self.last, dict) and "error" in self.last

    def __repr__(self):
        return (f"<Stream {self.status} node={self.node} lines={len(self.lines)} "
                f"last={str(self.last)[:200]} ended={self.ended} hung={self.hung} exc={self.exc!r}>")


def run_stream(node, body, path="/api/generate", headers=None, timeout=8.0, first_line=None):
    """One streamed request read to its end. Never raises: a read that waits longer than
    `timeout` for the next bytes is recorded as hung. Sets the event `first_line` once a line
    arrived."""
    res = StreamResult()
    res.started = time.monotonic()
    try:
        s = harness.Stream(node.port, "POST", path, json_body=body, headers=headers,
                           timeout=timeout)
    except socket.timeout as e:
        res.hung = True
        res.exc = e
        return res
    except Exception as e:  # noqa: BLE001 - reported by the caller
        res.exc = e
        return res
    res.status = s.status
    res.headers = s.headers
    res.node = s.header("X-Agpu-Node")
    res.t_head = time.monotonic()
    try:
        for _, line in s.lines():
            if not line.strip():
                continue
            if res.t_first is None:
                res.t_first = time.monotonic()
                if first_line is not None:
                    first_line.set()
            try:
                res.lines.append(json.loads(line))
            except ValueError:
                res.lines.append(line)
        res.ended = s.ended
    except socket.timeout as e:
        res.hung = True
        res.exc = e
    except OSError as e:  # a reset: the stream ended, not cleanly
        res.ended = True
        res.exc = e
    finally:
        res.t_end = time.monotonic()
        s.close()
    return res


def start_stream(pool, node, body, timeout=8.0):
    """Runs run_stream on pool and returns its future once the stream's first line has
    arrived: the request then holds its slot on the node that serves it."""
    first = threading.Event()
    future = pool.submit(run_stream, node, body, timeout=timeout, first_line=first)
    assert first.wait(4.0), "the stream's first line did not arrive within 4 s"
    return future


def run_all(fns, workers=None):
    """Runs the callables concurrently; returns their results in order."""
    with ThreadPoolExecutor(max_workers=workers or len(fns)) as pool:
        futures = [pool.submit(f) for f in fns]
        return [f.result(timeout=60) for f in futures]


def nodes_of(results):
    out = {}
    for r in results:
        node = r.node if isinstance(r, StreamResult) else r.header("X-Agpu-Node")
        out[node] = out.get(node, 0) + 1
    return out


def assert_busy_503(r):
    assert r.status == 503, r
    assert r.json() == BUSY_BODY, r.body
    ra = r.header("Retry-After")
    assert ra is not None and ra.strip(), f"no Retry-After on a 503: {r.headers}"
    assert ra.strip().isdigit(), f"Retry-After {ra!r} is not a number of seconds"


# ---------------------------------------------------------------- placement

@pytest.mark.timeout_s(40)
def test_model_only_on_far_node_is_served_there_on_every_route(cluster):
    """A chain n1 <- n2 <- n3 (each seeds the one before): omega is only on n3, and everything
    that names it, sent to n1, is served by n3's Ollama; nothing reaches the other simulators."""
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["alpha"]),
        dict(name="n2", models=["beta"]),
        dict(name="n3", models=["omega"]),
    ])
    n1 = mesh["n1"]
    chat = [{"role": "user", "content": "hi"}]
    calls = [
        ("/api/generate", gen_body("omega", 4, stream=True), True),
        ("/api/generate", gen_body("OMEGA", 4, stream=False), True),
        ("/api/generate", gen_body("omega:latest", 4, stream=False), True),
        ("/api/chat", {"model": "omega", "messages": chat, "stream": False,
                       "options": {"num_predict": 4}}, True),
        ("/api/embed", {"model": "omega", "input": "x"}, True),
        ("/api/embeddings", {"model": "omega", "prompt": "x"}, True),
        ("/api/show", {"model": "omega"}, False),
        ("/v1/chat/completions", {"model": "omega", "messages": chat, "max_tokens": 4}, True),
        ("/v1/completions", {"model": "omega", "prompt": "x", "max_tokens": 4}, True),
        ("/v1/embeddings", {"model": "omega", "input": "x"}, True),
    ]
    inferences = 0
    for path, body, infers in calls:
        r = harness.request(n1.port, "POST", path, json_body=body, timeout=10)
        assert r.status == 200, f"{path}: {r}"
        assert r.header("X-Agpu-Node") == "n3", f"{path} served by {r.header('X-Agpu-Node')}"
        inferences += infers
    assert r.json()["data"][0]["embedding"], r.body[:200]

    s1, s2, s3 = (stats(mesh.sim[n]) for n in ("n1", "n2", "n3"))
    assert s1["completed"] == 0 and s1["loads"] == 0, s1
    assert s2["completed"] == 0 and s2["loads"] == 0, s2
    assert s3["completed"] == inferences, f"omega's simulator finished {s3['completed']} " \
                                          f"requests, {inferences} were sent: {s3}"
    assert s3["loads"] == 1, s3

    # the middle of the chain routes the other way too
    r = generate(mesh["n2"], "alpha", 3)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r


@pytest.mark.timeout_s(30)
def test_peer_advertised_by_host_name_is_reached_by_it(cluster):
    """A node that advertises a host name (--advertise localhost: /etc/hosts answers, no name
    server is asked) is reached by that name: the entry node has it looked up away from its
    event loop, then forwards to it as to an address, and again on a second connection."""
    mesh = start_mesh(cluster, [
        dict(name="named", models=["omega"], sim=dict(tokens_per_sec=50, parallel=2),
             extra=["--advertise", "localhost", "--slots", "2"]),
        dict(name="entry", models=None),
    ])
    entry = mesh["entry"]
    assert peer(entry, "named")["http"].startswith("http://localhost:"), peer(entry, "named")
    with ThreadPoolExecutor(max_workers=1) as pool:
        streamed = start_stream(pool, entry, gen_body("omega", 20))
        r = generate(entry, "omega", 3)  # a second connection while the stream holds the first
        assert r.status == 200 and r.header("X-Agpu-Node") == "named", r
        res = streamed.result(timeout=10)
    assert res.status == 200 and res.node == "named" and res.done, res
    assert stats(mesh.sim["named"])["completed"] == 2


@pytest.mark.timeout_s(30)
def test_no_holder_anywhere_is_ollamas_404(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n0", models=None),
        dict(name="n1", models=["alpha"]),
    ], topology="star")
    n0, n1 = mesh["n0"], mesh["n1"]
    chat = [{"role": "user", "content": "hi"}]
    exact = [("/api/generate", gen_body("nosuch", 3, stream=False)),
             ("/api/generate", gen_body("nosuch", 3, stream=True)),
             ("/api/chat", {"model": "nosuch", "messages": chat}),
             ("/api/show", {"model": "nosuch"})]
    for node in (n0, n1):  # n0 has no Ollama: agpu answers; n1's 404 may come from its Ollama
        for path, body in exact:
            r = harness.request(node.port, "POST", path, json_body=body, timeout=5)
            assert r.status == 404, f"{path} via {node.name}: {r}"
            assert r.json() == {"error": "model 'nosuch' not found"}, f"{path} via {node.name}: {r}"
    for path, body in [("/api/embed", {"model": "nosuch", "input": "x"}),
                       ("/v1/chat/completions", {"model": "nosuch", "messages": chat}),
                       ("/v1/embeddings", {"model": "nosuch", "input": "x"})]:
        r = harness.request(n0.port, "POST", path, json_body=body, timeout=5)
        assert r.status == 404, f"{path}: {r}"
        assert "error" in r.json() and "nosuch" in r.text(), f"{path}: {r}"
    assert stats(mesh.sim["n1"])["completed"] == 0


@pytest.mark.timeout_s(30)
def test_warm_replica_is_preferred_over_cold_load(cluster):
    """mu is installed on n1 and n2, loaded on n2 only: requests entering at n1 (cold itself)
    all go to n2 while it has free slots; n1's simulator never loads it."""
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["mu"], extra=["--slots", "4"]),
        dict(name="n2", models=["mu"], extra=["--slots", "4"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    preload(n2, "mu")
    wait_loaded(n1, "n2", "mu")
    base = stats(mesh.sim["n2"])["completed"]

    seq = [generate(n1, "mu", 4) for _ in range(4)]
    seq += [generate(n2, "mu", 4) for _ in range(2)]
    conc = run_all([lambda: generate(n1, "mu", 4) for _ in range(3)])
    for r in seq + conc:
        assert r.status == 200, r
    assert nodes_of(seq + conc) == {"n2": 9}
    s1, s2 = stats(mesh.sim["n1"]), stats(mesh.sim["n2"])
    assert s1["loads"] == 0 and s1["completed"] == 0, f"the cold replica was used: {s1}"
    assert s2["completed"] - base == 9, s2


@pytest.mark.timeout_s(30)
def test_gateway_without_ollama_serves_the_whole_api_through_the_mesh(cluster):
    """A node with --ollama none still answers every route: what names a model is routed, the
    mesh-wide lists are merged, and what belongs to one Ollama (version, pull...) goes to an
    alive node that has one."""
    mesh = start_mesh(cluster, [
        dict(name="gw", models=None),
        dict(name="n1", models=["alpha"]),
    ])
    gw = mesh["gw"]
    r = harness.request(gw.port, "GET", "/api/version", timeout=5)
    assert r.status == 200 and r.json().get("version"), r
    assert r.header("X-Agpu-Node") == "n1", r.header("X-Agpu-Node")
    r = harness.request(gw.port, "GET", "/api/tags", timeout=5)
    assert r.status == 200, r
    assert [(m["name"], m["nodes"]) for m in r.json()["models"]] == [("alpha:latest", ["n1"])]
    r = harness.request(gw.port, "POST", "/api/generate", json_body=gen_body("alpha", 3, stream=False),
                        timeout=10)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r
    r = harness.request(gw.port, "POST", "/api/generate", json_body=gen_body("nowhere", 3, stream=False),
                        timeout=10)
    assert r.status == 404 and r.json() == {"error": "model 'nowhere' not found"}, r


@pytest.mark.timeout_s(30)
def test_self_wins_ties(cluster):
    """Two identical warm, idle replicas (same slots, no measured speed: non-streamed answers):
    the entry node serves its own clients itself."""
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["nu"], extra=["--slots", "2"]),
        dict(name="n2", models=["nu"], extra=["--slots", "2"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    preload(n1, "nu")
    preload(n2, "nu")
    wait_loaded(n1, "n2", "nu")
    wait_loaded(n2, "n1", "nu")
    plan = harness.request(n1.port, "GET", "/agpu/v1/route?model=nu", timeout=3).json()
    assert plan["choice"] == "n1", f"a tie, asked at n1: {plan}"
    got1 = [generate(n1, "nu", 2).header("X-Agpu-Node") for _ in range(12)]
    got2 = [generate(n2, "nu", 2).header("X-Agpu-Node") for _ in range(12)]
    assert got1 == ["n1"] * 12, f"entry n1, tied replicas: served by {got1}"
    assert got2 == ["n2"] * 12, f"entry n2, tied replicas: served by {got2}"


@pytest.mark.timeout_s(45)
def test_measured_speed_weights_the_spread(cluster):
    """sigma loaded on two nodes of equal slots, one 4x faster (measured from streamed answers
    and gossiped): concurrent streams through a third node go clearly more to the fast one."""
    mesh = start_mesh(cluster, [
        dict(name="entry", models=None),
        dict(name="fast", models=["sigma"], sim=dict(tokens_per_sec=400, parallel=8),
             extra=["--slots", "8"]),
        dict(name="slow", models=["sigma"], sim=dict(tokens_per_sec=100, parallel=8),
             extra=["--slots", "8"]),
    ], topology="star")
    entry = mesh["entry"]
    for name in ("fast", "slow"):
        node = mesh[name]
        preload(node, "sigma")
        for _ in range(2):  # streamed answers: their speed is measured where they are served
            res = run_stream(node, gen_body("sigma", 30), headers=HOP)
            assert res.status == 200 and res.done and res.node == name, res
    for name in ("fast", "slow"):
        wait_loaded(entry, name, "sigma")
    fast_tps = wait_measured(entry, "fast", "sigma")
    slow_tps = wait_measured(entry, "slow", "sigma")
    assert fast_tps > 2.5 * slow_tps, f"measured fast {fast_tps} vs slow {slow_tps} tokens/s"

    base = {n: stats(mesh.sim[n])["completed"] for n in ("fast", "slow")}
    n = 24
    with SimSampler({k: mesh.sim[k] for k in ("fast", "slow")}) as sampler:
        results = run_all([lambda: run_stream(entry, gen_body("sigma", 40), timeout=10)
                           for _ in range(n)])
    for r in results:
        assert r.status == 200 and r.done and not r.hung, r
    # 24 requests, 16 slots: the 8 that find every slot taken wait at the entry, not inside a
    # busy node's Ollama (from where they could not move to the node that frees a slot first)
    assert sampler.max_queued == {"fast": 0, "slow": 0}, \
        f"requests sent past --slots 8 queued inside Ollama: most queued {sampler.max_queued}, " \
        f"most running {sampler.max_active}"
    count = nodes_of(results)
    assert set(count) <= {"fast", "slow"} and sum(count.values()) == n, count
    fast, slow = count.get("fast", 0), count.get("slow", 0)
    print(f"spread: fast {fast}, slow {slow}")
    assert fast >= 1.5 * slow, f"the 4x faster node served {fast}, the slow one {slow}"
    for name in ("fast", "slow"):
        served = stats(mesh.sim[name])["completed"] - base[name]
        assert served == count.get(name, 0), f"{name}'s simulator finished {served}, " \
                                              f"X-Agpu-Node said {count.get(name, 0)}"


# ---------------------------------------------------------------- hops and loops

@pytest.mark.timeout_s(30)
def test_hop_header_is_respected_and_nothing_is_served_twice(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["a"]),
        dict(name="n2", models=["b"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    sim1, sim2 = mesh.sim["n1"], mesh.sim["n2"]

    r = generate(n1, "b", 3)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n2", r
    assert (stats(sim1)["completed"], stats(sim2)["completed"]) == (0, 1)

    # a request that says it was forwarded is served where it lands, holder or not
    r = generate(n1, "b", 3, headers=HOP)
    assert r.status == 404 and r.header("X-Agpu-Node") == "n1", r
    assert r.json() == {"error": "model 'b' not found"}
    r = harness.request(n2.port, "POST", "/api/chat", headers=HOP, timeout=5,
                        json_body={"model": "a", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 404 and r.header("X-Agpu-Node") == "n2", r
    r = generate(n1, "a", 3, headers=HOP)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r
    res = run_stream(n2, gen_body("b", 5), headers=HOP)
    assert res.status == 200 and res.done and res.node == "n2", res
    assert (stats(sim1)["completed"], stats(sim2)["completed"]) == (1, 2)

    # each request is generated exactly once, wherever it entered
    for _ in range(5):
        r = generate(n2, "a", 2)
        assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r
    res = run_stream(n1, gen_body("b", 5))
    assert res.status == 200 and res.done and res.node == "n2", res
    assert (stats(sim1)["completed"], stats(sim2)["completed"]) == (6, 3)

    # a stale view (b deleted behind agpu's back) ends in a 404, not a loop between nodes
    r = harness.request(sim2.port, "DELETE", "/api/delete", json_body={"model": "b"}, timeout=5)
    assert r.status == 200, r
    t0 = time.monotonic()
    r = generate(n1, "b", 3, timeout=6)
    assert r.status == 404, r
    assert r.header("X-Agpu-Node") in ("n1", "n2"), r.headers
    assert time.monotonic() - t0 < 3.0
    assert (stats(sim1)["completed"], stats(sim2)["completed"]) == (6, 3)


# ---------------------------------------------------------------- failover

@pytest.mark.timeout_s(45)
@pytest.mark.parametrize("how", ["seen-dead", "first-byte-timeout"])
def test_hung_peer_is_given_up_before_its_first_byte(cluster, how):
    """The chosen peer hangs (SIGSTOP: it accepts connections but answers nothing). The request
    is not left hanging: it goes to the next node once the mesh sees the peer dead (about
    3 s), or once --first-byte-timeout passes, and the client gets one whole answer."""
    extra = ["--first-byte-timeout", "500"] if how == "first-byte-timeout" else []
    mesh = start_mesh(cluster, [
        dict(name="n0", models=None, extra=extra),
        dict(name="n1", models=["rho"], extra=["--slots", "4"]),
        dict(name="n2", models=["rho"], extra=["--slots", "4"]),
    ], topology="star")
    n0 = mesh["n0"]
    preload(mesh["n1"], "rho")
    wait_loaded(n0, "n1", "rho")  # warm on n1 only: n1 is chosen first, n2 is next
    hung = mesh.agpu["n1"].proc.popen.pid
    os.kill(hung, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = generate(n0, "rho", 4, timeout=10.0)
        elapsed = time.monotonic() - t0
    finally:
        os.kill(hung, signal.SIGCONT)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n2", r
    assert r.json().get("done") is True, r.body[:200]
    if how == "first-byte-timeout":
        assert elapsed < 2.0, f"--first-byte-timeout 500, yet it took {elapsed:.2f} s"
    else:
        assert 1.5 < elapsed < 6.0, f"given up after {elapsed:.2f} s (dead after 2.8 s)"


@pytest.mark.timeout_s(45)
def test_kill9_of_best_peer_under_load_loses_no_unstarted_request(cluster):
    """kappa is warm on n1 (6 slots, slow) and cold on n2 (fast). Through the entry n0: 6 streams
    run on n1 and 2 more wait for a slot; n1 is killed -9 mid-stream; then 4 more requests come.
    The streams cut on n1 end with an error line; every other request succeeds elsewhere, once;
    none hangs; n1 is suspect at n0 at once."""
    mesh = start_mesh(cluster, [
        dict(name="n0", models=None),
        dict(name="n1", models=["kappa"], sim=dict(tokens_per_sec=25, parallel=6),
             extra=["--slots", "6"]),
        dict(name="n2", models=["kappa"], sim=dict(tokens_per_sec=1000, parallel=8),
             extra=["--slots", "8"]),
    ], topology="star")
    n0, n1 = mesh["n0"], mesh["n1"]
    preload(n1, "kappa")
    wait_loaded(n0, "n1", "kappa")
    base2 = stats(mesh.sim["n2"])["completed"]

    pool = ThreadPoolExecutor(max_workers=12)
    try:
        firsts = [threading.Event() for _ in range(6)]
        on_n1 = [pool.submit(run_stream, n0, gen_body("kappa", 60), timeout=6.0, first_line=ev)
                 for ev in firsts]
        for ev in firsts:
            assert ev.wait(5.0), "a stream through n0 got no line within 5 s"
        waiting = [pool.submit(generate, n0, "kappa", 5, timeout=8.0) for _ in range(2)]
        time.sleep(0.15)

        mesh.agpu["n1"].proc.kill9()
        t_kill = time.monotonic()
        after = [pool.submit(generate, n0, "kappa", 5, timeout=8.0),
                 pool.submit(generate, n0, "kappa", 5, timeout=8.0),
                 pool.submit(run_stream, n0, gen_body("kappa", 5), timeout=6.0),
                 pool.submit(run_stream, n0, gen_body("kappa", 5), timeout=6.0)]
        later = [f.result(timeout=15) for f in after]
        t_after = time.monotonic() - t_kill
        state = peer(n0, "n1")["state"]
        if t_after < 1.8:  # before any timeout could have demoted it
            assert state == "suspect", f"n1 refused connections; n0 still says {state!r}"
        else:
            assert state in ("suspect", "dead"), state
        cut = [f.result(timeout=15) for f in on_n1]
        queued = [f.result(timeout=15) for f in waiting]
    finally:
        pool.shutdown(wait=False)

    for r in cut:
        assert not r.hung, f"a stream cut by the kill hung: {r}"
        assert r.status == 200 and r.node == "n1", r
        assert r.ended, r
        assert r.done or r.error_line, f"a cut stream must end with an error line: {r}"
        assert r.error_line, f"a 60-token stream at 25 tokens/s cannot have finished: {r}"
        assert r.t_end - t_kill < 5.0, f"the cut stream ended {r.t_end - t_kill:.1f}s after the kill"
    for r in queued + later:
        if isinstance(r, StreamResult):
            assert r.status == 200 and r.done and not r.hung, f"an unstarted request failed: {r}"
            assert r.node == "n2", r
        else:
            assert r.status == 200, f"an unstarted request failed: {r}"
            assert r.json()["done"] is True and r.header("X-Agpu-Node") == "n2", r
    served2 = stats(mesh.sim["n2"])["completed"] - base2
    assert served2 == len(queued) + len(later), \
        f"n2's simulator finished {served2} requests for {len(queued) + len(later)} sent there"


@pytest.mark.timeout_s(30)
def test_503_from_chosen_peer_fails_over_once(cluster):
    """n1 says it has 4 slots but its Ollama runs 1 and queues 1: the third request the entry
    sends there gets Ollama's 503 before any byte, and is served by the next candidate (n2)."""
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["rho"], sim=dict(tokens_per_sec=20, parallel=1, max_queue=1),
             extra=["--slots", "4"]),
        dict(name="n2", models=["rho"], extra=["--slots", "4"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    preload(n1, "rho")
    wait_loaded(n2, "n1", "rho")
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        f1 = start_stream(pool, n2, gen_body("rho", 20), timeout=6.0)
        f2 = pool.submit(run_stream, n2, gen_body("rho", 2), timeout=6.0)
        wait_for("n1's simulator queues the second request",
                 lambda: stats(mesh.sim["n1"])["queued"] == 1, 3.0)
        r3 = generate(n2, "rho", 3, timeout=8)
        state = peer(n2, "n1")["state"]
        r1, r2 = f1.result(timeout=10), f2.result(timeout=10)
    finally:
        pool.shutdown(wait=False)
    assert r1.node == "n1" and r1.done, r1
    assert r2.node == "n1" and r2.done, r2
    assert r3.status == 200 and r3.header("X-Agpu-Node") == "n2", r3
    assert r3.json()["done"] is True
    assert state == "suspect", f"n1 answered 503; n2 says it is {state!r}"
    s1, s2 = stats(mesh.sim["n1"]), stats(mesh.sim["n2"])
    assert s1["completed"] == 3, s1  # preload, r1, r2
    assert s2["completed"] == 1, s2  # r3, once


@pytest.mark.timeout_s(30)
def test_peer_whose_ollama_died_fails_over(cluster):
    """tau is warm on n1; n1's Ollama is killed; the next request entering at n2, before n1's
    watcher noticed, gets n1's 502 and is served by n2 instead."""
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["tau"], extra=["--slots", "2"]),
        dict(name="n2", models=["tau"], extra=["--slots", "2"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    preload(n1, "tau")
    wait_loaded(n2, "n1", "tau")
    r = generate(n2, "tau", 2)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r
    mesh.sim["n1"].kill9()
    r = generate(n2, "tau", 3, timeout=8)
    assert r.status == 200, r
    assert r.header("X-Agpu-Node") == "n2", r.headers
    assert stats(mesh.sim["n2"])["completed"] == 1


# ---------------------------------------------------------------- waiting

@pytest.mark.timeout_s(30)
def test_queue_fifo_then_503_with_retry_after(cluster):
    """One node, one slot, a slow model, --queue-max 2: of 4 concurrent requests one runs, two
    wait at agpu (not in Ollama) and then run in order, the fourth is refused at once."""
    mesh = start_mesh(cluster, [
        dict(name="q1", models=["slowm"], sim=dict(tokens_per_sec=20, parallel=1),
             extra=["--slots", "1", "--queue-max", "2"]),
    ])
    q1, sim = mesh["q1"], mesh.sim["q1"]
    preload(q1, "slowm")
    pool = ThreadPoolExecutor(max_workers=3)
    sampler = SimSampler({"q1": sim}).__enter__()
    try:
        f1 = start_stream(pool, q1, gen_body("slowm", 16, prompt="first"), timeout=8.0)
        f2 = pool.submit(run_stream, q1, gen_body("slowm", 4, prompt="second"),
                         timeout=8.0)
        time.sleep(0.1)
        f3 = pool.submit(run_stream, q1, gen_body("slowm", 4, prompt="third"),
                         timeout=8.0)
        time.sleep(0.15)
        r4 = generate(q1, "slowm", 4, timeout=5)
        s = stats(sim)
        r1, r2, r3 = (f.result(timeout=10) for f in (f1, f2, f3))
    finally:
        sampler.__exit__()
        pool.shutdown(wait=False)
    assert_busy_503(r4)
    assert r4.elapsed < 0.5, f"the request past the bound waited {r4.elapsed:.2f}s"
    assert s["active"] == 1 and s["queued"] == 0, \
        f"agpu must hold the waiting requests, Ollama had: {s}"
    for r in (r1, r2, r3):
        assert r.status == 200 and r.done and r.node == "q1", r
    assert sampler.max_active == {"q1": 1} and sampler.max_queued == {"q1": 0}, \
        f"--slots 1, yet Ollama ran up to {sampler.max_active['q1']} and queued up to " \
        f"{sampler.max_queued['q1']} requests of this test at once"
    assert r1.t_end <= r2.t_first + 0.05, "the second ran before the first ended"
    assert r2.t_end <= r3.t_first + 0.05, "FIFO: the third ran before the second ended"
    assert stats(sim)["completed"] == 4  # preload + 3; the refused one never reached Ollama


@pytest.mark.timeout_s(30)
def test_sigterm_with_requests_queued_answers_them_and_exits_cleanly(cluster):
    """A node stopped while requests wait in its mesh queue answers each of them (503, with
    Retry-After) and exits with status 0: none is left hanging, the process does not abort."""
    mesh = start_mesh(cluster, [
        dict(name="s1", models=["slowm"], sim=dict(tokens_per_sec=20, parallel=1),
             extra=["--slots", "1"]),
    ])
    s1 = mesh["s1"]
    preload(s1, "slowm")
    pool = ThreadPoolExecutor(max_workers=3)
    try:
        running = start_stream(pool, s1, gen_body("slowm", 40, prompt="running"), timeout=8.0)
        queued = [pool.submit(generate, s1, "slowm", 4, timeout=8.0, prompt=f"queued {i}")
                  for i in range(2)]
        time.sleep(0.5)  # both now wait in the queue: the one slot is busy for 2 s
        status = s1.proc.stop(grace=5.0)
        answers = [f.result(timeout=10) for f in queued]
        first = running.result(timeout=10)
    finally:
        pool.shutdown(wait=False)
    assert status == 0, f"agpu exited with {status} (see its log)"
    for r in answers:
        assert r.status == 503, r
        assert r.json() == {"error": "agpu is shutting down"}, r.body
        assert (r.header("Retry-After") or "").strip().isdigit(), r.headers
    assert not first.hung, "the running stream hung at shutdown"


@pytest.mark.timeout_s(30)
def test_queue_timeout_gives_503_with_retry_after(cluster):
    mesh = start_mesh(cluster, [
        dict(name="q1", models=["slowm"], sim=dict(tokens_per_sec=20, parallel=1),
             extra=["--slots", "1", "--queue-timeout", "300"]),
    ])
    q1 = mesh["q1"]
    preload(q1, "slowm")
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        f1 = start_stream(pool, q1, gen_body("slowm", 30), timeout=8.0)
        r2 = generate(q1, "slowm", 2, timeout=5)
        r1 = f1.result(timeout=10)
    finally:
        pool.shutdown(wait=False)
    assert_busy_503(r2)
    assert 0.25 <= r2.elapsed <= 1.2, f"--queue-timeout 300 answered after {r2.elapsed:.2f}s"
    assert r1.status == 200 and r1.done, r1
    assert stats(mesh.sim["q1"])["completed"] == 2


@pytest.mark.timeout_s(30)
def test_busy_warm_replica_waits_then_goes_cold_after_cold_after(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["phi"], sim=dict(tokens_per_sec=20, parallel=1),
             extra=["--slots", "1", "--cold-after", "300"]),
        dict(name="n2", models=["phi"], extra=["--slots", "2"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    preload(n1, "phi")
    wait_loaded(n1, "n1", "phi")
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        f1 = start_stream(pool, n1, gen_body("phi", 40), timeout=8.0)
        assert stats(mesh.sim["n2"])["loads"] == 0
        plan = harness.request(n1.port, "GET", "/agpu/v1/route?model=phi", timeout=3).json()
        tiers = {c["name"]: c["tier"] for c in plan["candidates"]}
        assert plan["verdict"] == "wait" and plan["choice"] is None, plan
        assert tiers == {"n1": "warm-busy", "n2": "cold-free"}, plan
        r2 = generate(n1, "phi", 3, timeout=6)
        r1 = f1.result(timeout=10)
    finally:
        pool.shutdown(wait=False)
    assert r1.status == 200 and r1.done and r1.node == "n1", r1
    assert r2.status == 200 and r2.header("X-Agpu-Node") == "n2", r2
    assert 0.25 <= r2.elapsed <= 1.5, f"went cold after {r2.elapsed:.2f}s, --cold-after 300"
    assert stats(mesh.sim["n2"])["loads"] == 1


# ---------------------------------------------------------------- draining

@pytest.mark.timeout_s(40)
def test_drain_moves_new_work_away_and_undrain_brings_it_back(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["m", "solo"], sim=dict(tokens_per_sec=25),
             extra=["--slots", "4"]),
        dict(name="n2", models=["m"], extra=["--slots", "4"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]
    sim1 = mesh.sim["n1"]
    preload(n1, "m")
    wait_loaded(n2, "n1", "m")
    r = generate(n2, "m", 2)  # warm on n1, cold on n2: n1 serves it
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        inflight = start_stream(pool, n1, gen_body("solo", 40), timeout=8.0)
        out = harness.run_cli(["drain", "--host", n1.url])
        assert out.returncode == 0, out.stderr
        wait_for("n2 sees n1 draining", lambda: (peer(n2, "n1") or {}).get("draining") is True,
                 2.0)
        assert peer(n1, "n1")["draining"] is True
        done1 = stats(sim1)["completed"]
        # n1's own clients and n2's go elsewhere though n1 has m warm
        got = [generate(n1, "m", 2) for _ in range(3)] + [generate(n2, "m", 2) for _ in range(2)]
        for r in got:
            assert r.status == 200, r
        assert nodes_of(got) == {"n2": 5}, nodes_of(got)
        assert stats(sim1)["completed"] == done1, "a draining node took new work"
        s = inflight.result(timeout=10)
    finally:
        pool.shutdown(wait=False)
    assert s.status == 200 and s.node == "n1" and s.done and s.ended, \
        f"the stream in flight on the draining node must finish: {s}"

    out = harness.run_cli(["undrain", "--host", n1.url])
    assert out.returncode == 0, out.stderr
    wait_for("n2 sees n1 not draining", lambda: (peer(n2, "n1") or {}).get("draining") is False,
             2.0)
    r = generate(n2, "solo", 2)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r


@pytest.mark.timeout_s(30)
def test_drain_by_signal_and_by_http(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["m"]),
        dict(name="n2", models=["m"]),
    ])
    n1, n2 = mesh["n1"], mesh["n2"]

    def draining():
        return (peer(n2, "n1") or {}).get("draining")

    os.kill(n1.proc.pid, signal.SIGUSR1)
    wait_for("SIGUSR1: n2 sees n1 draining", lambda: draining() is True, 2.0)
    r = generate(n1, "m", 2)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n2", r
    os.kill(n1.proc.pid, signal.SIGUSR2)
    wait_for("SIGUSR2: n2 sees n1 not draining", lambda: draining() is False, 2.0)

    r = harness.request(n1.port, "POST", "/agpu/v1/drain", body=b"", timeout=3)
    assert r.status in (200, 204), r
    wait_for("POST drain: n2 sees n1 draining", lambda: draining() is True, 2.0)
    r = generate(n1, "m", 2)
    assert r.status == 200 and r.header("X-Agpu-Node") == "n2", r
    r = harness.request(n1.port, "POST", "/agpu/v1/undrain", body=b"", timeout=3)
    assert r.status in (200, 204), r
    wait_for("POST undrain: n2 sees n1 not draining", lambda: draining() is False, 2.0)
    assert n1.proc.alive() and n2.proc.alive()


# ---------------------------------------------------------------- mesh-wide lists

@pytest.mark.timeout_s(30)
def test_tags_models_and_ps_are_mesh_wide(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["alpha", "common"]),
        dict(name="n2", models=["beta", "common"]),
        dict(name="n3", models=["gamma"]),
    ])
    d1 = {m["name"]: m["digest"] for m in
          harness.request(mesh.sim["n1"].port, "GET", "/api/tags").json()["models"]}
    d2 = {m["name"]: m["digest"] for m in
          harness.request(mesh.sim["n2"].port, "GET", "/api/tags").json()["models"]}
    assert d1["common:latest"] == d2["common:latest"], "precondition: same model, same digest"
    want = {"alpha:latest": ["n1"], "beta:latest": ["n2"], "gamma:latest": ["n3"],
            "common:latest": ["n1", "n2"]}
    for name in ("n1", "n2", "n3"):
        r = harness.request(mesh[name].port, "GET", "/api/tags", timeout=5)
        assert r.status == 200, r
        models = r.json()["models"]
        names = [m["name"] for m in models]
        assert sorted(names) == sorted(want), f"/api/tags on {name}: {names}"
        for m in models:
            assert sorted(m["nodes"]) == want[m["name"]], f"/api/tags on {name}: {m}"
            for key in ("model", "digest", "size", "details", "modified_at"):
                assert key in m, f"{key} missing from {m}"
        r = harness.request(mesh[name].port, "GET", "/v1/models", timeout=5)
        assert r.status == 200, r
        ids = [m["id"] for m in r.json()["data"]]
        assert sorted(ids) == sorted(want), f"/v1/models on {name}: {ids}"

    preload(mesh["n1"], "alpha")
    preload(mesh["n3"], "gamma")

    def ps_on_n2():
        r = harness.request(mesh["n2"].port, "GET", "/api/ps", timeout=5)
        assert r.status == 200, r
        got = {m["name"]: sorted(m.get("nodes", [])) for m in r.json()["models"]}
        return got if got == {"alpha:latest": ["n1"], "gamma:latest": ["n3"]} else None

    wait_for("/api/ps on n2 lists alpha on n1 and gamma on n3", ps_on_n2, 5.0)


# ---------------------------------------------------------------- acting on a named node

@pytest.mark.timeout_s(30)
def test_target_header_acts_on_the_named_node(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n1", models=["a1"]),
        dict(name="n2", models=["b1"]),
    ])
    n1 = mesh["n1"]
    sim1, sim2 = mesh.sim["n1"], mesh.sim["n2"]

    def tags(sim):
        return {m["name"] for m in harness.request(sim.port, "GET", "/api/tags").json()["models"]}

    to_n2 = {"X-Agpu-Target": "n2"}
    r = harness.request(n1.port, "POST", "/api/pull", headers=to_n2, timeout=8,
                        json_body={"model": "pulled", "stream": False})
    assert r.status == 200 and r.json().get("status") == "success", r
    assert r.header("X-Agpu-Node") == "n2", r.headers
    assert "pulled:latest" in tags(sim2) and "pulled:latest" not in tags(sim1)

    r = harness.request(n1.port, "POST", "/api/copy", headers=to_n2, timeout=5,
                        json_body={"source": "pulled", "destination": "copied"})
    assert r.status == 200, r
    assert "copied:latest" in tags(sim2) and "copied:latest" not in tags(sim1)

    r = harness.request(n1.port, "DELETE", "/api/delete", headers=to_n2, timeout=5,
                        json_body={"model": "b1"})
    assert r.status == 200, r
    assert "b1:latest" not in tags(sim2)

    r = harness.request(n1.port, "POST", "/api/pull", timeout=8,
                        json_body={"model": "localpull", "stream": False})
    assert r.status == 200 and r.header("X-Agpu-Node") == "n1", r
    assert "localpull:latest" in tags(sim1) and "localpull:latest" not in tags(sim2)

    r = harness.request(n1.port, "DELETE", "/api/delete", headers={"X-Agpu-Target": "n1"},
                        timeout=5, json_body={"model": "localpull"})
    assert r.status == 200, r
    assert "localpull:latest" not in tags(sim1)

    before1, before2 = tags(sim1), tags(sim2)
    r = harness.request(n1.port, "POST", "/api/pull", headers={"X-Agpu-Target": "nosuchnode"},
                        timeout=5, json_body={"model": "ghost", "stream": False})
    assert r.status == 404, r
    assert isinstance(r.json().get("error"), str) and r.json()["error"], r
    assert (tags(sim1), tags(sim2)) == (before1, before2)


# ---------------------------------------------------------------- agpu route

CANDIDATE_KEYS = ("id", "name", "self", "state", "tier", "usable", "loaded", "load", "capacity",
                  "speed", "measured", "score", "why")


@pytest.mark.timeout_s(30)
def test_route_cli_and_endpoint_explain_the_choice(cluster):
    mesh = start_mesh(cluster, [
        dict(name="n3", models=None),
        dict(name="n1", models=["rho"], extra=["--slots", "2"]),
        dict(name="n2", models=["rho"], extra=["--slots", "2"]),
    ], topology="star")
    n3 = mesh["n3"]
    preload(mesh["n1"], "rho")
    wait_loaded(n3, "n1", "rho")

    out = harness.run_cli(["route", "RHO", "--host", n3.url, "--json"])
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    for key in ("model", "key", "verdict", "choice", "candidates"):
        assert key in plan, f"{key} missing from {plan}"
    assert plan["key"] == "rho:latest", plan
    assert plan["verdict"] == "go" and plan["choice"] == "n1", plan
    by = {c["name"]: c for c in plan["candidates"]}
    assert set(by) == {"n1", "n2", "n3"}, plan
    for c in plan["candidates"]:
        for key in CANDIDATE_KEYS:
            assert key in c, f"{key} missing from {c}"
        assert isinstance(c["why"], str) and c["why"], c
    assert plan["candidates"][0]["name"] == "n1", "the choice comes first"
    assert by["n1"]["tier"] == "warm-free" and by["n1"]["usable"] is True
    assert by["n1"]["loaded"] is True and by["n1"]["capacity"] == 2 and by["n1"]["self"] is False
    assert by["n2"]["tier"] == "cold-free" and by["n2"]["usable"] is True
    assert by["n2"]["loaded"] is False
    assert by["n3"]["tier"] == "out" and by["n3"]["usable"] is False and by["n3"]["self"] is True
    assert all(c["state"] == "alive" for c in plan["candidates"]), plan

    r = harness.request(n3.port, "GET", "/agpu/v1/route?model=rho", timeout=3)
    assert r.status == 200 and r.content_type.startswith("application/json"), r
    api = r.json()
    assert (api["key"], api["verdict"], api["choice"]) == ("rho:latest", "go", "n1"), api

    out = harness.run_cli(["route", "rho", "--host", n3.url])
    assert out.returncode == 0, out.stderr
    assert "n1" in out.stdout and "n2" in out.stdout and "warm-free" in out.stdout, out.stdout

    out = harness.run_cli(["route", "nosuch", "--host", n3.url, "--json"])
    plan = json.loads(out.stdout)
    assert plan["verdict"] == "none" and plan["choice"] is None, plan
    assert all(c["usable"] is False for c in plan["candidates"]), plan

    out = harness.run_cli(["route", "rho", "--host", f"http://127.0.0.1:{harness.closed_port()}"])
    assert out.returncode != 0
