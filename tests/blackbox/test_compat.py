"""The official JavaScript clients (tests/compat/run.mjs: ollama-js 0.6.x and openai 6.x) against
a fresh sim + agpu pair. Needs node and `npm install` (or `npm ci`) in tests/compat."""

import shutil
import subprocess

import pytest

import harness

COMPAT = harness.REPO_ROOT / "tests" / "compat"


@pytest.mark.timeout_s(150)
def test_official_clients(binaries):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    if not (COMPAT / "node_modules" / "ollama").is_dir() or not (COMPAT / "node_modules" / "openai").is_dir():
        pytest.skip("run `npm ci` in tests/compat first")
    env = harness.clean_env({"AGPU_BIN": str(harness.agpu_bin()), "OLLAMA_SIM_BIN": str(harness.sim_bin())})
    p = subprocess.run([node, str(COMPAT / "run.mjs")], cwd=COMPAT, env=env, capture_output=True, text=True,
                       timeout=140, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    last = [ln for ln in p.stdout.splitlines() if ln.strip()][-1:] or [""]
    assert p.returncode == 0 and last[0].endswith(" 0 failed"), out
