"""Zero-configuration discovery over mDNS: nodes with no --peer find each other through Avahi,
first on one machine (a private avahi-daemon on lo), then as three hosts (network namespaces on
a bridge, each with its own avahi-daemon), where one is cut off and brought back. Nothing is
sent outside 127.0.0.1 and the test's own namespaces. Needs root and avahi-daemon."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness

LIB = Path(__file__).resolve().parents[1] / "lib"

needs_avahi = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("avahi-daemon") or not shutil.which("dbus-daemon"),
    reason="needs root, avahi-daemon and dbus-daemon")


def wait_until(what, check, timeout, every=0.1):
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        try:
            last = check()
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            last = e
        if last is True:
            return time.monotonic() - start
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last})")


@pytest.fixture
def avahi_on_lo():
    state = tempfile.mkdtemp(prefix="agpu-mdns-")
    out = subprocess.run([str(LIB / "avahi-lo.sh"), "start", state], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    address = next(l for l in out.stdout.splitlines() if l.startswith("DBUS_SYSTEM_BUS_ADDRESS="))
    try:
        yield address.split("=", 1)[1]
    finally:
        subprocess.run([str(LIB / "avahi-lo.sh"), "stop", state], capture_output=True, timeout=30)
        shutil.rmtree(state, ignore_errors=True)


@needs_avahi
@pytest.mark.timeout_s(60)
def test_three_nodes_find_each_other_over_mdns_on_lo(cluster, avahi_on_lo):
    nodes = []
    for i in range(3):
        def start(name=f"m{i + 1}"):
            a = harness.Agpu("none", name=name, env={"DBUS_SYSTEM_BUS_ADDRESS": avahi_on_lo})
            a.args.remove("--no-mdns")  # zero configuration: no seeds, mDNS on
            return a.start()
        nodes.append(harness.start_with_retry(start))
        cluster.agpus.append(nodes[-1])

    def everyone_sees_everyone():
        for n in nodes:
            r = harness.request(n.port, "GET", "/agpu/v1/peers", timeout=2)
            seen = {p["name"]: p["state"] for p in r.json()["peers"]}
            if seen != {"m1": "alive", "m2": "alive", "m3": "alive"}:
                return seen
        return True

    took = wait_until("three nodes see each other through mDNS", everyone_sees_everyone, 20)
    print(f"mDNS discovery converged in {took:.2f}s")


# ---------------------------------------------------------------- three hosts

class Hosts:
    """Three network namespaces on a bridge (tests/lib/netns.sh), an agpu node in each."""

    def __init__(self, count):
        self.dir = tempfile.mkdtemp(prefix="agpu-netns-")
        self.count = count
        self.prefix = f"agpu{os.getpid() % 10000}-"
        self.env = dict(os.environ, AGPU_NETNS_PREFIX=self.prefix)
        self.procs = []

    def script(self, *args, timeout=60):
        out = subprocess.run([str(LIB / "netns.sh"), *map(str, args)], capture_output=True,
                             text=True, timeout=timeout, env=self.env)
        assert out.returncode == 0, f"netns.sh {args}: {out.stderr}"
        return out.stdout

    def up(self):
        self.script("up", self.count, self.dir)

    def start_node(self, k):
        bus = (Path(self.dir) / f"n{k}" / "env").read_text().strip().split("=", 1)[1]
        # zero configuration but the name (the namespaces share one host name)
        argv = ["ip", "netns", "exec", f"{self.prefix}n{k}", "env",
                f"DBUS_SYSTEM_BUS_ADDRESS={bus}", str(harness.agpu_bin()), "serve",
                "--name", f"h{k}", "-v"]
        proc = harness.Proc(argv, f"agpu-h{k}").start()
        self.procs.append(proc)
        return proc

    def peers(self, k):
        out = subprocess.run(["ip", "netns", "exec", f"{self.prefix}n{k}", "curl", "-s", "-m", "2",
                              "http://127.0.0.1:11435/agpu/v1/peers"],
                             capture_output=True, text=True, timeout=5)
        return {p["name"]: p["state"] for p in json.loads(out.stdout)["peers"]}

    def down(self):
        for p in self.procs:
            p.stop()
        subprocess.run([str(LIB / "netns.sh"), "down", self.dir], capture_output=True,
                       timeout=60, env=self.env)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def hosts():
    h = Hosts(3)
    try:
        h.up()
        yield h
    finally:
        h.down()


@needs_avahi
@pytest.mark.skipif(not shutil.which("ip") or not shutil.which("curl"), reason="needs iproute2, curl")
@pytest.mark.timeout_s(90)
def test_three_hosts_zero_config_partition_and_heal(hosts):
    for k in (1, 2, 3):
        hosts.start_node(k)
    everyone = {"h1": "alive", "h2": "alive", "h3": "alive"}

    def all_alive():
        seen = [hosts.peers(k) for k in (1, 2, 3)]
        return True if all(s == everyone for s in seen) else seen

    took = wait_until("three hosts find each other", all_alive, 25)
    print(f"three hosts converged in {took:.2f}s")

    hosts.script("link-down", 3, hosts.dir)
    cut = time.monotonic()
    wait_until("h3 dead on h1 and h2",
               lambda: hosts.peers(1).get("h3") == "dead" and hosts.peers(2).get("h3") == "dead",
               8)
    print(f"cut-off host dead after {time.monotonic() - cut:.2f}s")

    hosts.script("link-up", 3, hosts.dir)
    healed = time.monotonic()
    wait_until("h3 back everywhere", all_alive, 30)
    print(f"rejoined after {time.monotonic() - healed:.2f}s")
