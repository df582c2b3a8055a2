"""Black-box test harness for agpu and ollama-sim.

Starts processes on free 127.0.0.1 ports, waits until they accept, stops them by PID with bounded
waits (also from an atexit hook, so nothing outlives the test run), and speaks HTTP/1.1 over raw
sockets so tests see exactly what a client sees: status, headers, chunk arrival times.

Only the standard library. Binaries come from AGPU_BIN / OLLAMA_SIM_BIN, else src/agpu and
src/sim/ollama-sim under AGPU_BUILD_DIR, else under the repository root.
"""

import atexit
import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# ---------------------------------------------------------------- binaries and ports

def build_dir():
    return Path(os.environ.get("AGPU_BUILD_DIR") or REPO_ROOT)


def agpu_bin():
    return Path(os.environ.get("AGPU_BIN") or build_dir() / "src" / "agpu")


def sim_bin():
    return Path(os.environ.get("OLLAMA_SIM_BIN") or build_dir() / "src" / "sim" / "ollama-sim")


_ports_given = set()
_ports_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this process was not
    given before: the kernel may hand out a port just released again, and two ports chosen for
    one test (a node's HTTP and gossip ports, a simulator's) must differ."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        with _ports_lock:
            if port not in _ports_given:
                _ports_given.add(port)
                return port


def closed_port():
    """A port with no listener (connections are refused)."""
    return free_port()


def port_accepts(port, timeout=0.2):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class Blackhole:
    """A listener whose accept queue is full: connect() to it hangs (SYNs are dropped) until
    the caller's connect timeout. Used to test --connect-timeout without leaving 127.0.0.1."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((HOST, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.held = []
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.2)
            try:
                s.connect((HOST, self.port))
                self.held.append(s)
            except OSError:
                s.close()
                break

    def close(self):
        for s in self.held:
            s.close()
        self.listener.close()


# ---------------------------------------------------------------- processes

_LIVE = {}  # pid -> Proc, every process started and not yet reaped
_LIVE_LOCK = threading.Lock()
LOG_DIR = Path(tempfile.mkdtemp(prefix="agpu-blackbox-"))


def _die_with_parent():
    """In the child before exec: SIGKILL it if the test runner dies (even by SIGKILL), so no
    daemon outlives a crashed or killed test run."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class StartError(RuntimeError):
    pass


class Proc:
    """One child process, its output in a log file, stopped by PID only."""

    def __init__(self, argv, name, env=None):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.env = env
        self.popen = None
        self.log_path = LOG_DIR / f"{name}-{time.monotonic_ns()}.log"
        self.stopped_by_us = False
        self.started_at = None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def start(self):
        env = clean_env() if self.env is None else self.env
        self._log = open(self.log_path, "ab")
        self._log.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log.flush()
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        self.stopped_by_us = False
        with _LIVE_LOCK:
            _LIVE[self.popen.pid] = self
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self):
        return None if self.popen is None else self.popen.poll()

    def wait_port(self, port, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise StartError(f"{self.name} exited with {self.popen.returncode} before "
                                 f"listening on {port}:\n{self.log_tail()}")
            if port_accepts(port):
                return
            time.sleep(0.02)
        raise StartError(f"{self.name} did not listen on {port} within {timeout}s:\n"
                         f"{self.log_tail()}")

    def wait_exit(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, sig):
        if self.alive():
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self):
        """SIGKILL by PID, then reap (bounded)."""
        self.stopped_by_us = True
        self._signal(signal.SIGKILL)
        self.wait_exit(5)
        self._forget()

    def stop(self, grace=3.0):
        """SIGTERM, wait up to `grace` s, then SIGKILL; returns the exit status (or None)."""
        if self.popen is None:
            return None
        self.stopped_by_us = True
        if self.alive():
            self._signal(signal.SIGTERM)
            if self.wait_exit(grace) is None:
                self._signal(signal.SIGKILL)
                self.wait_exit(5)
        self._forget()
        return self.popen.returncode

    def _forget(self):
        if self.popen is not None and self.popen.poll() is not None:
            with _LIVE_LOCK:
                _LIVE.pop(self.popen.pid, None)
            try:
                self._log.close()
            except Exception:
                pass

    def crashed(self):
        """True if the process died by itself from a signal (segfault, abort...)."""
        rc = self.returncode
        return rc is not None and rc < 0 and not self.stopped_by_us

    def exited_unexpectedly(self):
        return self.returncode is not None and not self.stopped_by_us

    def log_tail(self, max_bytes=4000):
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no log)"
        return data[-max_bytes:].decode("utf-8", "replace")


def stop_all(procs, grace=3.0):
    """Stops several processes at once: SIGTERM to all, one shared grace period, then SIGKILL to
    whatever is left. Returns {proc: exit status}."""
    procs = [p for p in procs if p is not None and p.popen is not None]
    for p in procs:
        p.stopped_by_us = True
        p._signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        p.wait_exit(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.alive():
            p._signal(signal.SIGKILL)
            p.wait_exit(5)
        p._forget()
    return {p: p.returncode for p in procs}


def clean_env(extra=None):
    """The test runner's environment without AGPU_* and OLLAMA_* settings, so a developer's or
    CI's own settings never change what a test starts; `extra` is added on top."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("AGPU_") or k.startswith("OLLAMA_"))}
    env.update(extra or {})
    return env


def live_procs():
    with _LIVE_LOCK:
        return list(_LIVE.values())


def _kill_all_at_exit():
    for p in live_procs():
        try:
            p.stop(grace=1.0)
        except Exception:
            pass


atexit.register(_kill_all_at_exit)


def run_cli(args, env=None, timeout=10):
    """Runs `agpu ARGS...` to completion; returns CompletedProcess (text)."""
    full_env = clean_env(env)
    return subprocess.run([str(agpu_bin())] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=full_env, timeout=timeout,
                          preexec_fn=_die_with_parent)


# ---------------------------------------------------------------- ollama-sim and agpu

class Sim:
    """ollama-sim on its own port. `restart()` brings it back on the same port with the same flags."""

    def __init__(self, port=None, models=None, tokens_per_sec=None, parallel=None, max_loaded=None,
                 load_ms=None, keep_alive=None, max_queue=None, embed_dim=None, pull_ms=None,
                 version=None, extra=(), name="sim"):
        self.port = port or free_port()
        args = ["--listen", f"{HOST}:{self.port}"]
        for m in models or ():
            args += ["--model", m]
        for flag, val in (("--tokens-per-sec", tokens_per_sec), ("--parallel", parallel),
                          ("--max-loaded", max_loaded), ("--load-ms", load_ms),
                          ("--keep-alive", keep_alive), ("--max-queue", max_queue),
                          ("--embed-dim", embed_dim), ("--pull-ms", pull_ms),
                          ("--version-string", version)):
            if val is not None:
                args += [flag, str(val)]
        args += list(extra)
        self.args = args
        self.name = name
        self.proc = None

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def start(self, timeout=10.0):
        b = sim_bin()
        if not b.exists():
            raise StartError(f"ollama-sim binary not found at {b} (build it, or set OLLAMA_SIM_BIN)")
        self.proc = Proc([b] + self.args, self.name).start()
        self.proc.wait_port(self.port, timeout)
        return self

    def restart(self, timeout=10.0):
        if self.proc is not None and self.proc.alive():
            self.proc.stop()
        deadline = time.monotonic() + timeout
        while True:  # the port may linger briefly after a kill -9
            try:
                return self.start(timeout=max(1.0, deadline - time.monotonic()))
            except StartError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill9(self):
        self.proc.kill9()

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def stats(self, timeout=5):
        r = request(self.port, "GET", "/sim/stats", timeout=timeout)
        assert r.status == 200, f"/sim/stats: {r.status} {r.body[:200]!r}"
        return r.json()


class Agpu:
    """`agpu serve` on its own listen and gossip ports, mDNS off."""

    def __init__(self, ollama, name="node-a", max_body=None, connect_timeout=None, extra=(),
                 env=None, port=None, gossip_port=None, verbose=True):
        self.port = port or free_port()
        self.gossip_port = gossip_port or free_port()
        self.ollama = ollama
        self.name = name
        args = ["serve", "--listen", f"{HOST}:{self.port}", "--ollama", ollama,
                "--gossip", f"{HOST}:{self.gossip_port}", "--no-mdns", "--name", name]
        if max_body is not None:
            args += ["--max-body", str(max_body)]
        if connect_timeout is not None:
            args += ["--connect-timeout", str(connect_timeout)]
        if verbose:
            args += ["-v"]
        args += list(extra)
        self.args = args
        self.env = env
        self.proc = None

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def start(self, timeout=10.0):
        b = agpu_bin()
        if not b.exists():
            raise StartError(f"agpu binary not found at {b} (build it, or set AGPU_BIN)")
        env = clean_env(self.env)
        self.proc = Proc([b] + self.args, f"agpu-{self.name}", env=env).start()
        self.proc.wait_port(self.port, timeout)
        return self

    def stop(self):
        if self.proc is not None:
            return self.proc.stop()


def start_with_retry(factory, attempts=3):
    """Starts factory() (a Sim or Agpu on fresh ports), retrying if a port was taken meanwhile."""
    last = None
    for _ in range(attempts):
        obj = factory()
        try:
            return obj.start()
        except StartError as e:
            last = e
            try:
                obj.stop()
            except Exception:
                pass
            if "not found at" in str(e):
                raise
    raise last


# ---------------------------------------------------------------- HTTP over raw sockets

class Response:
    def __init__(self, status, reason, headers, body, elapsed=0.0):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.elapsed = elapsed

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def content_type(self):
        return self.header("Content-Type")

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def ndjson(self):
        return [json.loads(line) for line in self.body.split(b"\n") if line.strip()]

    def sse(self):
        return parse_sse(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.content_type} {self.body[:300]!r}>"


class ConnectionClosed(Exception):
    pass


class Conn:
    """One HTTP/1.1 client connection on a raw socket."""

    def __init__(self, port, timeout=10.0, host=HOST):
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with RST (SO_LINGER 0), like a client process dying."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    # -- sending
    @staticmethod
    def build_head(method, path, headers=None, body=None, chunked=False, port=None):
        hdrs = list(headers.items() if isinstance(headers, dict) else (headers or []))
        names = {k.lower() for k, _ in hdrs}
        if "host" not in names:
            hdrs.insert(0, ("Host", f"{HOST}:{port}"))
        if body is not None and not chunked and "content-length" not in names:
            hdrs.append(("Content-Length", str(len(body))))
        if chunked and "transfer-encoding" not in names:
            hdrs.append(("Transfer-Encoding", "chunked"))
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_request(self, method, path, headers=None, body=None, chunked=False):
        if isinstance(body, str):
            body = body.encode()
        head = self.build_head(method, path, headers, body, chunked, self.port)
        if body is None:
            self.sock.sendall(head)
        elif chunked:
            self.sock.sendall(head)
            for i in range(0, len(body), 65536):
                part = body[i:i + 65536]
                self.sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            self.sock.sendall(b"0\r\n\r\n")
        else:
            self.sock.sendall(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self.sock.sendall(body)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_request_watching(self, method, path, headers, body, chunked=False, piece=65536):
        """Sends a (large) request but stops sending as soon as the server answers or closes,
        as a careful client does when a server rejects a body early. Returns bytes sent."""
        import select
        self.sock.sendall(self.build_head(method, path, headers, body if not chunked else None,
                                          chunked, self.port))
        sent = 0
        try:
            while sent < len(body):
                r, _, _ = select.select([self.sock], [], [], 0)
                if r:
                    return sent
                part = body[sent:sent + piece]
                data = (b"%x\r\n" % len(part) + part + b"\r\n") if chunked else part
                self.sock.sendall(data)
                sent += len(part)
            if chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return sent

    # -- receiving
    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by server")
        self.buf += data

    def _read_line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self):
        """Reads the status line and headers (skipping 1xx). Returns (status, reason, headers)."""
        while True:
            line = self._read_line()
            parts = line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError(f"bad status line {line!r}")
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            while True:
                h = self._read_line()
                if not h:
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers.append((k.strip(), v.strip()))
            if 100 <= status < 200 and status != 101:
                continue
            return status, reason, headers

    def iter_body(self, method, status, headers):
        """Yields body bytes as they arrive (chunked, Content-Length or until close)."""
        hmap = {k.lower(): v for k, v in headers}
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return
        te = hmap.get("transfer-encoding", "").lower()
        if "chunked" in te:
            while True:
                size_line = self._read_line()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._read_line():  # trailers
                        pass
                    return
                remaining = size
                while remaining:
                    if not self.buf:
                        self._fill()
                    take = min(remaining, len(self.buf))
                    part = bytes(self.buf[:take])
                    del self.buf[:take]
                    remaining -= take
                    yield part
                self._read_exact(2)
        elif "content-length" in hmap:
            remaining = int(hmap["content-length"])
            while remaining:
                if not self.buf:
                    self._fill()
                take = min(remaining, len(self.buf))
                part = bytes(self.buf[:take])
                del self.buf[:take]
                remaining -= take
                yield part
        else:
            while True:
                if self.buf:
                    part = bytes(self.buf)
                    self.buf.clear()
                    yield part
                try:
                    self._fill()
                except ConnectionClosed:
                    return

    def read_response(self, method="GET"):
        t0 = time.monotonic()
        status, reason, headers = self.read_head()
        body = b"".join(self.iter_body(method, status, headers))
        return Response(status, reason, headers, body, time.monotonic() - t0)


def request(port, method, path, body=None, headers=None, timeout=5.0, json_body=None,
            chunked=False):
    """One request on a fresh connection; returns a Response with the whole body."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
        hdrs = dict(headers or {})
        hdrs.setdefault("Content-Type", "application/json")
        headers = hdrs
    t0 = time.monotonic()
    with Conn(port, timeout=timeout) as c:
        c.send_request(method, path, headers, body, chunked=chunked)
        r = c.read_response(method)
    r.elapsed = time.monotonic() - t0
    return r


class Stream:
    """A streamed response read line by line with arrival times (seconds since the request)."""

    def __init__(self, port, method, path, json_body=None, body=None, headers=None, timeout=10.0):
        self.conn = Conn(port, timeout=timeout)
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        self.t0 = time.monotonic()
        self.conn.send_request(method, path, hdrs, body)
        self.status, self.reason, self.headers = self.conn.read_head()
        self.t_head = time.monotonic() - self.t0
        self._body = self.conn.iter_body(method, self.status, self.headers)
        self._pending = b""
        self.ended = False  # the body ended by its framing (not by a timeout)
        self.ended_cleanly = False  # ... and not by an abrupt close

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def lines(self):
        """Yields (t, line) for every '\n'-terminated line; a trailing fragment last."""
        try:
            for part in self._body:
                now = time.monotonic() - self.t0
                self._pending += part
                while b"\n" in self._pending:
                    line, _, self._pending = self._pending.partition(b"\n")
                    yield now, line
            self.ended = True
            self.ended_cleanly = True
        except ConnectionClosed:
            self.ended = True
        if self._pending:
            now = time.monotonic() - self.t0
            rest, self._pending = self._pending, b""
            yield now, rest

    def close(self):
        self.conn.close()

    def abort(self):
        self.conn.abort()


def parse_sse(body):
    """Server-sent events -> list of data payloads (parsed JSON, or the raw string like [DONE])."""
    out = []
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        datas = [ln[5:].lstrip() if ln.startswith("data:") else None for ln in frame.split("\n")]
        datas = [d for d in datas if d is not None]
        if not datas:
            continue
        payload = "\n".join(datas)
        try:
            out.append(json.loads(payload))
        except ValueError:
            out.append(payload)
    return out


def wait_until(pred, timeout, interval=0.05):
    """Polls pred() until it returns a truthy value (returned) or timeout (returns the last value)."""
    deadline = time.monotonic() + timeout
    val = pred()
    while not val and time.monotonic() < deadline:
        time.sleep(interval)
        val = pred()
    return val


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- comparing replies

VOLATILE_KEYS = {"created_at", "modified_at", "expires_at", "total_duration", "load_duration",
                 "prompt_eval_duration", "eval_duration", "created"}


def normalize(obj):
    """Drops the values that legitimately differ between two identical requests: timestamps,
    durations and OpenAI's random completion ids."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in VOLATILE_KEYS:
                out[k] = "<volatile>"
            elif k == "id" and isinstance(v, str) and (v.startswith("chatcmpl-") or v.startswith("cmpl-")):
                out[k] = "<id>"
            else:
                out[k] = normalize(v)
        return out
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    return obj


def body_kind(content_type):
    ct = (content_type or "").lower()
    if "ndjson" in ct:
        return "ndjson"
    if "event-stream" in ct:
        return "sse"
    if "json" in ct:
        return "json"
    return "raw"


def normalized_body(resp):
    kind = body_kind(resp.content_type)
    try:
        if kind == "ndjson":
            return [normalize(x) for x in resp.ndjson()]
        if kind == "sse":
            return [normalize(x) for x in resp.sse()]
        if kind == "json" and resp.body.strip():
            return normalize(resp.json())
    except ValueError:
        pass
    return resp.body


# ---------------------------------------------------------------- a recording upstream

class CaptureUpstream:
    """A tiny HTTP server standing in for Ollama that records every request it gets.

    Answers /api/tags and /api/ps like an Ollama with `models` loaded-nothing, /api/version, and
    everything else with 200 {"captured": true}. `requests` holds dicts with method, path (with
    query), headers (list), body."""

    def __init__(self, models=("llama3.2:latest",)):
        self.requests = []
        self.lock = threading.Lock()
        outer = self
        tags = {"models": [{
            "name": m, "model": m, "modified_at": "2025-01-01T00:00:00Z", "size": 1000,
            "digest": hashlib.sha256(m.encode()).hexdigest(),
            "details": {"parent_model": "", "format": "gguf", "family": "llama",
                        "families": ["llama"], "parameter_size": "1B",
                        "quantization_level": "Q4_0"}} for m in models]}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    body = b"".join(chunks)
                elif length:
                    body = self.rfile.read(length)
                with outer.lock:
                    outer.requests.append({"method": self.command, "path": self.path,
                                           "headers": list(self.headers.items()), "body": body})
                path = self.path.split("?")[0]
                if path == "/api/tags":
                    out = tags
                elif path == "/api/ps":
                    out = {"models": []}
                elif path == "/api/version":
                    out = {"version": "0.9.0"}
                else:
                    out = {"captured": True}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _handle

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def find(self, pred):
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _short(x, n=600):
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def assert_parity(direct, via, node_name, what=""):
    """The reply through agpu is the reply Ollama (the simulator) gives, with agpu's node header."""
    label = f"{what}: " if what else ""
    assert via.status == direct.status, (
        f"{label}status through agpu {via.status} != direct {direct.status}\n"
        f"  direct body: {_short(direct.body)}\n  agpu body:   {_short(via.body)}")
    assert via.content_type == direct.content_type, (
        f"{label}Content-Type through agpu {via.content_type!r} != direct {direct.content_type!r}")
    assert via.header("X-Agpu-Node") == node_name, (
        f"{label}X-Agpu-Node is {via.header('X-Agpu-Node')!r}, expected {node_name!r}")
    nd, na = normalized_body(direct), normalized_body(via)
    if nd != na:
        if isinstance(nd, list) and isinstance(na, list):
            for i, (x, y) in enumerate(zip(nd, na)):
                if x != y:
                    raise AssertionError(f"{label}body differs at item {i} of {len(nd)}/{len(na)}:\n"
                                         f"  direct: {_short(x)}\n  agpu:   {_short(y)}")
            raise AssertionError(f"{label}body has {len(na)} items through agpu, {len(nd)} direct; "
                                 f"last direct: {_short(nd[-1:])} last agpu: {_short(na[-1:])}")
        raise AssertionError(f"{label}body differs:\n  direct: {_short(nd)}\n  agpu:   {_short(na)}")
