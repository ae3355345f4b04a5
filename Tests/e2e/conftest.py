"""Fixtures for end-to-end tests: a real tracerelay process on a free loopback port."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

BIN = os.environ.get("TRACERELAY_BIN", os.path.join(os.path.dirname(__file__), "../../.build/debug/tracerelay"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    def __init__(self, args=(), config=None):
        self.port = free_port()
        cmd = [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--debug-capture", "10000"]
        if config:
            cmd += ["--config", config]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("relay exited: " + self.proc.stdout.read().decode(errors="replace"))
            try:
                if requests.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("relay did not become ready")

    def captured_spans(self):
        """Every span the relay decoded since the last clear, flattened."""
        body = requests.get(self.url + "/debug/captured", timeout=5).json()
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
        requests.delete(self.url + "/debug/captured", timeout=5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


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
