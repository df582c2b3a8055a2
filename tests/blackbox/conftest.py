"""Fixtures for the agpu black-box suites: processes on free 127.0.0.1 ports, stopped by PID in
teardown (also when a test fails or times out), and a per-test deadline via SIGALRM."""

import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import harness  # noqa: E402

DEFAULT_TEST_TIMEOUT = 30  # seconds; override with @pytest.mark.timeout_s(N)

# Fast simulator defaults for functional tests: no cold-load delay worth waiting for, quick tokens.
FAST_SIM = dict(tokens_per_sec=2000, load_ms=5, pull_ms=50, parallel=4)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(n): fail the test if it runs longer than n seconds")


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _deadline(request):
    marker = request.node.get_closest_marker("timeout_s")
    secs = int(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout(f"test exceeded its {secs}s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(secs)
    request.node._procs_before = {p.pid for p in harness.live_procs()}
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup"):
        for p in harness.live_procs():
            rep.sections.append((f"log of {p.name} (pid {p.pid})", p.log_tail(3000)))
        rep.sections.append(("process logs", f"all logs in {harness.LOG_DIR}"))


# ---------------------------------------------------------------- binaries

@pytest.fixture(scope="session")
def binaries():
    missing = [str(b) for b in (harness.agpu_bin(), harness.sim_bin()) if not b.exists()]
    if missing:
        pytest.fail("missing binaries: " + ", ".join(missing) +
                    " (build with configure && make; set AGPU_BUILD_DIR, AGPU_BIN, OLLAMA_SIM_BIN)",
                    pytrace=False)
    return harness.agpu_bin(), harness.sim_bin()


@pytest.fixture(scope="session")
def sim_binary():
    b = harness.sim_bin()
    if not b.exists():
        pytest.fail(f"missing ollama-sim binary {b}", pytrace=False)
    return b


@pytest.fixture(scope="session")
def agpu_binary():
    b = harness.agpu_bin()
    if not b.exists():
        pytest.fail(f"missing agpu binary {b}", pytrace=False)
    return b


# ---------------------------------------------------------------- factories (function scope)

class Cluster:
    """Everything one test started; stopped by PID in teardown, crash-checked."""

    def __init__(self):
        self.sims = []
        self.agpus = []
        self.others = []

    def sim(self, **kw):
        s = harness.start_with_retry(lambda: harness.Sim(**{**FAST_SIM, **kw}))
        self.sims.append(s)
        return s

    def agpu(self, ollama, **kw):
        a = harness.start_with_retry(lambda: harness.Agpu(ollama, **kw))
        self.agpus.append(a)
        return a

    def pair(self, sim_kw=None, agpu_kw=None):
        s = self.sim(**(sim_kw or {}))
        a = self.agpu(s.url, **(agpu_kw or {}))
        return s, a

    def teardown(self):
        crashed = []
        for a in self.agpus:
            if a.proc is not None and a.proc.crashed():
                crashed.append(f"agpu {a.name} died from signal {-a.proc.returncode}:\n"
                               f"{a.proc.log_tail(2000)}")
        harness.stop_all([x.proc for x in self.agpus + self.sims])
        for o in self.others:
            try:
                o.close()
            except Exception:
                pass
        return crashed


@pytest.fixture
def cluster(binaries):
    c = Cluster()
    yield c
    crashed = c.teardown()
    if crashed:
        pytest.fail("\n".join(crashed), pytrace=False)


# ---------------------------------------------------------------- twins (session scope)

class Twins:
    """Two identical simulators: `direct` is asked straight, `behind` sits behind agpu `node`.
    Sending every request to both keeps their states identical, so a reply through agpu can be
    compared with the reply Ollama itself would give."""

    NAME = "twin-node"

    def __init__(self):
        self.direct = harness.start_with_retry(lambda: harness.Sim(name="sim-direct", **FAST_SIM))
        self.behind = harness.start_with_retry(lambda: harness.Sim(name="sim-behind", **FAST_SIM))
        self.node = harness.start_with_retry(lambda: harness.Agpu(self.behind.url, name=self.NAME))

    def both(self, method, path, timeout=8.0, **kw):
        d = harness.request(self.direct.port, method, path, timeout=timeout, **kw)
        a = harness.request(self.node.port, method, path, timeout=timeout, **kw)
        return d, a

    def stop(self):
        harness.stop_all([self.node.proc, self.behind.proc, self.direct.proc])


@pytest.fixture(scope="session")
def _twins(binaries):
    t = Twins()
    yield t
    t.stop()


@pytest.fixture
def twins(_twins):
    if not _twins.node.proc.alive():
        pytest.fail(f"the shared agpu node is dead (exit {_twins.node.proc.returncode}):\n"
                    f"{_twins.node.proc.log_tail(2000)}", pytrace=False)
    yield _twins
    if not _twins.node.proc.alive():
        pytest.fail(f"agpu died during this test (exit {_twins.node.proc.returncode}):\n"
                    f"{_twins.node.proc.log_tail(2000)}", pytrace=False)


def node_alive(port, timeout=5.0):
    """The node still answers a plain request after whatever the test did to it."""
    r = harness.request(port, "GET", "/api/version", timeout=timeout)
    return r.status == 200


# ---------------------------------------------------------------- one shared node (session scope)

class Shared:
    NAME = "shared-node"

    def __init__(self):
        self.sim = harness.start_with_retry(lambda: harness.Sim(name="sim-shared", **FAST_SIM))
        self.node = harness.start_with_retry(lambda: harness.Agpu(self.sim.url, name=self.NAME))

    def stop(self):
        harness.stop_all([self.node.proc, self.sim.proc])


@pytest.fixture(scope="session")
def _shared(binaries):
    s = Shared()
    yield s
    s.stop()


@pytest.fixture
def shared(_shared):
    """A sim behind an agpu node, shared by tests that do not change model state."""
    if not _shared.node.proc.alive():
        pytest.fail(f"the shared agpu node is dead (exit {_shared.node.proc.returncode}):\n"
                    f"{_shared.node.proc.log_tail(2000)}", pytrace=False)
    yield _shared
    if not _shared.node.proc.alive():
        pytest.fail(f"agpu died during this test (exit {_shared.node.proc.returncode}):\n"
                    f"{_shared.node.proc.log_tail(2000)}", pytrace=False)
