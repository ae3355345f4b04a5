"""Fixtures for end-to-end tests: a real tracerelay process on free loopback ports, and the test
backends of sinks.py (a Zipkin collector, Datadog's APM test agent)."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from sinks import DDAgent, ZipkinSink, free_port  # noqa: F401  (free_port re-exported for tests)

BIN = os.environ.get("TRACERELAY_BIN", os.path.join(os.path.dirname(__file__), "../../.build/debug/tracerelay"))


class Relay:
    """A tracerelay process.

    Ingest: `--listen 127.0.0.1:<port>` (a free port, or `port=` for a restart on the same
    port); with `listen=False` the config's own listeners are used (give their port as `port=`
    so `url` points at one). Admin (health, /status, /debug/captured): `--admin 127.0.0.1:<free
    port>`, at `admin_url`. Spill: `--spill-dir`, a
    fresh temporary directory removed at stop(), or `spill_dir=` (kept: the caller owns it).
    Output goes to a file (`output()`), so a chatty relay never blocks on a full pipe.
    """

    def __init__(self, args=(), config=None, port=None, listen=True, spill_dir=None, admin_port=None,
                 debug_capture=10000, ready_timeout=20):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="tracerelay-e2e-")
        self.log_path = os.path.join(self.workdir, "relay.log")
        cmd = [BIN, "serve"]
        if listen:
            cmd += ["--listen", f"127.0.0.1:{self.port}"]
        if debug_capture:
            cmd += ["--debug-capture", str(debug_capture)]
        self.admin_port = admin_port or free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        cmd += ["--admin", f"127.0.0.1:{self.admin_port}"]
        self.spill_dir = spill_dir or os.path.join(self.workdir, "spill")
        cmd += ["--spill-dir", self.spill_dir]
        if config:
            cmd += ["--config", str(config)]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out = self.output()
                self._cleanup()
                raise RuntimeError("relay exited: " + out)
            try:
                if requests.get(self.admin_url + "/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("relay did not become ready: " + self.output())

    def output(self):
        """Everything the relay printed so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=40):
        return "\n".join(self.output().splitlines()[-n:])

    def status(self):
        return requests.get(self.admin_url + "/status", timeout=5).json()

    def captured_spans(self):
        """Every span the relay decoded since the last clear, flattened."""
        body = requests.get(self.admin_url + "/debug/captured", timeout=5).json()
        return [s for b in body["batches"] for s in b["spans"]], body

    def wait_for_spans(self, n, timeout=15):
        deadline = time.time() + timeout
        spans = []
        while time.time() < deadline:
            spans, _ = self.captured_spans()
            if len(spans) >= n:
                return spans
            time.sleep(0.05)
        return spans

    def clear(self):
        requests.delete(self.admin_url + "/debug/captured", timeout=5)

    def stop(self, timeout=15):
        """SIGTERM, wait (kill after `timeout`), remove the temporary files; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._cleanup()
        return self.proc.returncode

    def _cleanup(self):
        if not self._log.closed:
            self._log.close()
        if os.environ.get("TRACERELAY_E2E_KEEP"):
            return
        # The log and (when ours) the spill directory; a caller-given spill_dir lives elsewhere.
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def relay():
    r = Relay()
    yield r
    code = r.stop()
    assert code == 0, "relay should exit 0 on SIGTERM"


@pytest.fixture
def fresh(relay):
    relay.clear()
    return relay


@pytest.fixture(scope="session")
def dd_agent_process():
    agent = DDAgent()
    yield agent
    agent.close()


@pytest.fixture
def dd_agent(dd_agent_process):
    """The session's Datadog test agent with a new test session (traces, check results and
    rate_by_service start empty)."""
    dd_agent_process.start_session()
    return dd_agent_process


@pytest.fixture
def zipkin_sink():
    sink = ZipkinSink()
    yield sink
    sink.stop()
