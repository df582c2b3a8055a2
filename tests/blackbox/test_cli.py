"""The command line: version, help, bad flags (exit 2, one line), environment variables for every
flag, OLLAMA_HOST as the default upstream, and clean shutdown."""

import re
import signal
import socket
import time

import pytest

import harness

VERSION = "9.8.7"


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def test_version(agpu_binary):
    p = harness.run_cli(["version"])
    assert p.returncode == 0, p
    assert re.search(r"\d+\.\d+\.\d+", p.stdout), p.stdout


@pytest.mark.parametrize("args", [["--help"], ["help"], ["-h"]])
def test_help(agpu_binary, args):
    p = harness.run_cli(args)
    assert p.returncode == 0, p
    assert "serve" in p.stdout, p.stdout


def test_serve_help_lists_flags(agpu_binary):
    p = harness.run_cli(["serve", "--help"])
    assert p.returncode == 0, p
    for flag in ("--listen", "--ollama", "--gossip", "--no-mdns", "--name", "--max-body",
                 "--connect-timeout", "-v"):
        assert flag in p.stdout, f"{flag} missing from `agpu serve --help`:\n{p.stdout}"
    for env in ("AGPU_LISTEN", "AGPU_OLLAMA", "AGPU_NAME", "AGPU_MAX_BODY"):
        assert env in p.stdout, f"{env} missing from `agpu serve --help`"


def safe(*args):
    """A serve command line that, should agpu wrongly accept it, still binds only 127.0.0.1
    and announces nothing."""
    return ["serve", "--no-mdns", "--gossip", f"127.0.0.1:{harness.free_port()}"] + list(args)


BAD = {
    "unknown": lambda: safe("--listen", f"127.0.0.1:{harness.free_port()}", "--no-such-flag"),
    "missing-value": lambda: safe("--name", "x", "--listen"),
    "bad-size": lambda: safe("--listen", f"127.0.0.1:{harness.free_port()}", "--max-body", "lots"),
    "negative-timeout": lambda: safe("--listen", f"127.0.0.1:{harness.free_port()}", "--connect-timeout", "-5"),
    "bad-listen": lambda: safe("--listen", "not-an-address"),
    "bad-ollama-scheme": lambda: safe("--listen", f"127.0.0.1:{harness.free_port()}", "--ollama", "ftp://x"),
    "top-level-unknown": lambda: ["--bogus"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_flag_exits_2_with_one_line(agpu_binary, case):
    args = BAD[case]()
    p = harness.run_cli(args, timeout=5)
    assert p.returncode == 2, f"agpu {' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}"
    out = lines(p.stderr) + lines(p.stdout)
    assert len(out) == 1, f"agpu {' '.join(args)} printed {len(out)} lines:\n" + "\n".join(out)


def test_unknown_command_fails(agpu_binary):
    p = harness.run_cli(["frobnicate"], timeout=5)
    assert p.returncode != 0
    assert len(lines(p.stderr) + lines(p.stdout)) >= 1


# ---------------------------------------------------------------- environment

@pytest.fixture
def sim(cluster):
    return cluster.sim(version=VERSION, name="sim-cli")


def start_node(cluster, argv, env, port):
    proc = harness.Proc([harness.agpu_bin()] + argv, "agpu-cli", env=harness.clean_env(env)).start()
    cluster.others.append(type("Closer", (), {"close": lambda self: proc.stop()})())
    proc.wait_port(port, 10)
    return proc


def gossip_args():
    return ["--gossip", f"127.0.0.1:{harness.free_port()}", "--no-mdns"]


def test_env_vars_configure_serve(cluster, sim):
    port, gport = harness.free_port(), harness.free_port()
    env = {"AGPU_LISTEN": f"127.0.0.1:{port}", "AGPU_OLLAMA": sim.url, "AGPU_NAME": "env-node",
           "AGPU_GOSSIP": f"127.0.0.1:{gport}", "AGPU_MAX_BODY": "1000", "AGPU_CONNECT_TIMEOUT": "700"}
    proc = start_node(cluster, ["serve", "--no-mdns"], env, port)
    r = harness.request(port, "GET", "/api/version")
    assert r.status == 200 and r.json() == {"version": VERSION}, r
    assert r.header("X-Agpu-Node") == "env-node"
    big = harness.request(port, "POST", "/api/generate", body=b'{"model":"llama3.2","prompt":"' + b"x" * 2000 + b'"}',
                          headers={"Content-Type": "application/json"})
    assert big.status == 413, f"AGPU_MAX_BODY=1000 not applied: {big}"
    assert proc.alive()


def test_gossip_port_bound_from_flag_and_env(cluster, sim):
    """--gossip and AGPU_GOSSIP give the endpoint the node binds for the mesh."""
    for how in ("flag", "env"):
        port, gport = harness.free_port(), harness.free_port()
        argv = ["serve", "--no-mdns", "--listen", f"127.0.0.1:{port}", "--ollama", sim.url, "--name", "g"]
        env = {}
        if how == "flag":
            argv += ["--gossip", f"127.0.0.1:{gport}"]
        else:
            env["AGPU_GOSSIP"] = f"127.0.0.1:{gport}"
        start_node(cluster, argv, env, port)
        assert harness.wait_until(lambda: harness.port_accepts(gport), 3), \
            f"gossip endpoint 127.0.0.1:{gport} ({how}) is not bound"


def test_flags_override_env(cluster, sim):
    port = harness.free_port()
    env = {"AGPU_NAME": "from-env", "AGPU_OLLAMA": "http://127.0.0.1:1", "AGPU_LISTEN": "127.0.0.1:1"}
    start_node(cluster, ["serve", "--listen", f"127.0.0.1:{port}", "--ollama", sim.url, "--name", "from-flag"]
               + gossip_args(), env, port)
    r = harness.request(port, "GET", "/api/version")
    assert r.status == 200 and r.json() == {"version": VERSION}, r
    assert r.header("X-Agpu-Node") == "from-flag"


@pytest.mark.parametrize("form", ["{host}:{port}", "http://{host}:{port}", "0.0.0.0:{port}",
                                  "http://0.0.0.0:{port}/"])
def test_ollama_host_is_the_default_upstream(cluster, sim, form):
    port = harness.free_port()
    env = {"OLLAMA_HOST": form.format(host="127.0.0.1", port=sim.port)}
    start_node(cluster, ["serve", "--listen", f"127.0.0.1:{port}", "--name", "oh-node"] + gossip_args(), env, port)
    r = harness.request(port, "GET", "/api/version")
    assert r.status == 200 and r.json() == {"version": VERSION}, f"OLLAMA_HOST={env['OLLAMA_HOST']}: {r}"


def test_agpu_ollama_beats_ollama_host(cluster, sim):
    port = harness.free_port()
    env = {"OLLAMA_HOST": "127.0.0.1:1", "AGPU_OLLAMA": sim.url}
    start_node(cluster, ["serve", "--listen", f"127.0.0.1:{port}", "--name", "oh-node"] + gossip_args(), env, port)
    r = harness.request(port, "GET", "/api/version")
    assert r.status == 200 and r.json() == {"version": VERSION}, r


# ---------------------------------------------------------------- lifecycle

@pytest.mark.timeout_s(15)
def test_sigterm_exits_cleanly_mid_stream(cluster):
    sim, node = cluster.pair(sim_kw=dict(tokens_per_sec=10), agpu_kw=dict(name="term-node"))
    s = harness.Stream(node.port, "POST", "/api/generate",
                       json_body={"model": "llama3.2", "prompt": "x", "options": {"num_predict": 100}})
    next(iter(s.lines()))
    t0 = time.monotonic()
    node.proc._signal(signal.SIGTERM)
    rc = node.proc.wait_exit(5)
    s.close()
    assert rc is not None, "agpu still running 5 s after SIGTERM"
    assert rc == 0, f"agpu exited {rc} on SIGTERM:\n{node.proc.log_tail()}"
    assert time.monotonic() - t0 < 5
    node.proc.stopped_by_us = True
    assert not harness.port_accepts(node.port)


@pytest.mark.timeout_s(15)
def test_listen_port_in_use_fails_fast(agpu_binary, sim):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        p = harness.run_cli(["serve", "--listen", f"127.0.0.1:{port}", "--ollama", sim.url, "--name", "busy"]
                            + gossip_args(), timeout=8)
        assert p.returncode != 0
        assert str(port) in p.stderr + p.stdout, p.stderr
    finally:
        blocker.close()
