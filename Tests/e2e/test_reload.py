"""Reload under load: the real relay is reloaded 20 times (SIGHUP and POST /api/reload in turn)
while clients send known spans on keep-alive connections. Each reload adds or removes a backend
and moves another one to a new URL. The sinks' counts prove that every span the relay accepted
was delivered, and the clients saw no connection error."""
import json
import os
import random
import re
import signal
import threading
import time

import requests

import clients
from conftest import Relay
from sinks import ZipkinSink

RELOADS = 20


def config(sink_a, sink_b, with_b):
    """Backend `a` (the Mesh default) at `sink_a`; with `with_b`, backend `b` too, taking `web`."""
    text = ["type: Relay", "backends:",
            f"  - {{name: a, type: zipkin, export: {{batchDelay: 20ms, maxBackoff: 200ms}}, conf: {{url: '{sink_a.url}'}}}}"]
    if with_b:
        text.append(f"  - {{name: b, type: zipkin, export: {{batchDelay: 20ms, maxBackoff: 200ms}}, conf: {{url: '{sink_b.url}'}}}}")
    text += ["---", "type: Mesh", "name: default", "tracing:", "  defaultBackend: a"]
    if with_b:
        text += ["---", "type: TrafficTrace", "name: web", "mesh: default", "selectors:", "  - match:",
                 "      kuma.io/service: web", "conf:", "  backend: b"]
    return "\n".join(text) + "\n"


class Sender(threading.Thread):
    """Posts batches of 20 spans (services web and api) on one keep-alive session until stopped;
    keeps the ids the relay accepted and every failure."""

    def __init__(self, url, rng):
        super().__init__(daemon=True)
        self.url = url
        self.rng = rng
        self.accepted = set()
        self.failures = []
        self.requests = 0
        self.stopping = threading.Event()

    def run(self):
        session = requests.Session()
        while not self.stopping.is_set():
            spans = [clients.zipkin_span(service=self.rng.choice(["web", "api"])) for _ in range(20)]
            try:
                r = session.post(self.url + "/api/v2/spans", data=json.dumps(spans),
                                 headers={"Content-Type": "application/json"}, timeout=10)
                self.requests += 1
                if r.status_code == 202:
                    self.accepted.update(s["id"] for s in spans)
                else:
                    self.failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except requests.RequestException as e:
                self.failures.append(f"{type(e).__name__}: {e}")


def wait_for_generation(relay, n, timeout=15):
    """Waits until the relay logged the reload that made generation `n` (SIGHUP answers nowhere else)."""
    pattern = re.compile(r'"reload\.generation"\s*:\s*"?(\d+)')
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(int(g) >= n for g in pattern.findall(relay.output())):
            return True
        time.sleep(0.05)
    return False


def test_reload_in_a_loop_under_load_loses_nothing(tmp_path):
    seed = int(os.environ.get("TRACERELAY_E2E_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    clients._rng.seed(seed)
    rng = random.Random(seed)
    a1, a2, b = ZipkinSink(), ZipkinSink(), ZipkinSink()
    # A slow b is often still draining when the next reload configures it again (it stays).
    b.delay = 0.4
    path = tmp_path / "relay.yaml"
    path.write_text(config(a1, b, with_b=False))
    relay = Relay(config=path, debug_capture=0, args=["--log-format", "json"])
    senders = [Sender(relay.url, random.Random(rng.randrange(1 << 30))) for _ in range(2)]
    try:
        for s in senders:
            s.start()
        generation = 1
        for i in range(RELOADS):
            time.sleep(0.15)  # let load flow on this generation
            # Odd reloads: b added and a moved to a2; even ones: b removed and a moved back.
            with_b = i % 2 == 0
            path.write_text(config(a2 if with_b else a1, b, with_b))
            generation += 1
            if i % 2 == 0:
                relay.proc.send_signal(signal.SIGHUP)
                assert wait_for_generation(relay, generation), f"SIGHUP reload {i} not applied, seed {seed}:\n{relay.tail()}"
            else:
                r = requests.post(relay.admin_url + "/api/reload", timeout=15)
                assert r.status_code == 200, f"{r.status_code} {r.text}, seed {seed}"
                doc = r.json()
                assert doc["ok"] and doc["generation"] == generation, doc
                assert doc["backends"]["removed"] == ["b"] and doc["backends"]["sender_replaced"] == ["a"], doc
        # An invalid file in the middle of the load is refused; the running configuration stays.
        path.write_text("backends: [\n")
        r = requests.post(relay.admin_url + "/api/reload", timeout=15)
        assert r.status_code == 400 and r.json()["error"] == "invalid_config", r.text
        # …and the status page says so, at the top of its problems.
        status = requests.get(relay.admin_url + "/api/status", timeout=5).json()
        assert status["last_reload"]["ok"] is False and status["last_reload"]["generation"] == generation, status["last_reload"]
        assert any("last reload was refused" in p for p in status["problems"]), status["problems"]
        time.sleep(0.3)
    finally:
        for s in senders:
            s.stopping.set()
        for s in senders:
            s.join(15)
    try:
        accepted = set().union(*(s.accepted for s in senders))
        failures = [f for s in senders for f in s.failures]
        sinks = [a1, a2, b]

        def delivered():
            return set().union(*(s.ids() for s in sinks))

        deadline = time.time() + 30
        while time.time() < deadline and not accepted <= delivered():
            time.sleep(0.1)
        missing = accepted - delivered()
        requests_sent = sum(s.requests for s in senders)
        print(f"{requests_sent} requests, {len(accepted)} spans accepted, delivered a1={len(a1.ids())} "
              f"a2={len(a2.ids())} b={len(b.ids())}, {RELOADS} reloads")
        assert not failures, f"client saw failures (seed {seed}): {failures[:5]}"
        assert len(accepted) > 1000, f"too little load to prove anything: {len(accepted)} spans"
        assert not missing, f"{len(missing)} accepted spans never delivered (seed {seed}):\n{relay.tail()}"
        assert b.ids() and a2.ids() and a1.ids(), "every sink took part"
        assert not any(s.errors() for s in sinks), [s.errors() for s in sinks]
    finally:
        code = relay.stop()
        for s in (a1, a2, b):
            s.stop()
    assert code == 0
