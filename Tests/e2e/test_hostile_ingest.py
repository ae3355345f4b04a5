"""Issue 10, items 1 and 8, against a real relay process: the gzip bomb of tiny spans is refused
quickly with the relay's peak RSS bounded while a well-behaved client keeps fast answers, and a
forged service name cannot add a line to the relay's log."""
import gzip
import json
import threading
import time

import requests

from conftest import Relay

TINY = b'{"traceId":"1","id":"1"}'
BOMB_SPANS = 4_194_294


def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def bomb():
    raw = b"[" + b",".join([TINY] * BOMB_SPANS) + b"]"
    return gzip.compress(raw, compresslevel=1)


class SteadyClient(threading.Thread):
    """Keep-alive POST of one small span every 20 ms; records each answer's latency."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.latencies = []
        self.failures = []

    def run(self):
        s = requests.Session()
        body = json.dumps([{"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "get",
                            "localEndpoint": {"serviceName": "steady"}}])
        i = 0
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                r = s.post(self.url + "/api/v2/spans", data=body, headers={"Content-Type": "application/json"}, timeout=5)
                if r.status_code != 202:
                    self.failures.append(r.status_code)
            except requests.RequestException as e:
                self.failures.append(str(e))
            self.latencies.append(time.monotonic() - t)
            i += 1
            time.sleep(max(0, 0.02 - (time.monotonic() - t)))

    def p99(self):
        xs = sorted(self.latencies)
        return xs[int(len(xs) * 0.99) - 1] if xs else 0


def test_gzip_bomb_of_tiny_spans_is_refused_quickly_with_bounded_memory():
    payload = bomb()
    assert 500_000 < len(payload) < 800_000  # ≈ 645 KB on the wire, ≈ 100 MB inflated
    relay = Relay(debug_capture=0)
    try:
        pid = relay.proc.pid
        idle_kb = vm_kb(pid, "VmRSS")
        steady = SteadyClient(relay.url)
        steady.start()
        time.sleep(0.5)
        answers = []

        def send():
            t = time.monotonic()
            r = requests.post(relay.url + "/api/v2/spans", data=payload,
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}, timeout=30)
            answers.append((r.status_code, r.text, time.monotonic() - t))

        # Two at once, then two more: the issue saw 2.36 GB and a stalled client with two.
        for _ in range(2):
            ts = [threading.Thread(target=send) for _ in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        time.sleep(0.5)
        steady.stop.set()
        steady.join()
        peak_kb = vm_kb(pid, "VmHWM")
        print(f"bomb answers {[(a[0], round(a[2], 3)) for a in answers]}; RSS idle {idle_kb // 1024} MB, "
              f"peak {peak_kb // 1024} MB; steady client {len(steady.latencies)} requests, "
              f"p99 {steady.p99() * 1000:.1f} ms, max {max(steady.latencies) * 1000:.1f} ms")
        for status, text, secs in answers:
            assert status == 413, text
            assert json.loads(text)["error"] == "too_many_spans"
            assert secs < 2
        assert peak_kb - idle_kb < 300 * 1024, f"peak RSS {peak_kb} kB over idle {idle_kb} kB"
        assert not steady.failures, steady.failures[:5]
        # The goal is 50 ms; the margin absorbs other work on a shared 2-core machine.
        assert steady.p99() < 0.1, f"steady client p99 {steady.p99() * 1000:.1f} ms"
        assert relay.proc.poll() is None
    finally:
        relay.stop()


def test_a_forged_service_name_cannot_add_a_log_line():
    # The embedded default config has a `log` backend: one info line per batch, with the service name.
    relay = Relay()
    try:
        forged = "web\n2026-01-01T00:00:00 critical tracerelay: FORGED"
        body = json.dumps([{"traceId": "1", "id": "1", "name": "x\r\nname", "localEndpoint": {"serviceName": forged}}])
        r = requests.post(relay.url + "/api/v2/spans", data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert r.status_code == 202
        deadline = time.time() + 5
        while "FORGED" not in relay.output() and time.time() < deadline:
            time.sleep(0.05)
        out = relay.output()
    finally:
        relay.stop()
    lines = [l for l in out.splitlines() if "FORGED" in l]
    assert len(lines) == 1, out
    assert "web\\n2026-01-01T00:00:00 critical tracerelay: FORGED" in lines[0]
    assert not any(l.startswith("2026-01-01T00:00:00") for l in out.splitlines())


def test_max_spans_per_request_flag():
    relay = Relay(args=["--max-spans-per-request", "2"], debug_capture=0)
    try:
        def post(n, **headers):
            body = json.dumps([{"traceId": "1", "id": format(i + 1, "x")} for i in range(n)])
            return requests.post(relay.url + "/api/v2/spans", data=body, headers={"Content-Type": "application/json", **headers}, timeout=5)
        assert post(2).status_code == 202
        r = post(3)
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "too_many_spans"
    finally:
        relay.stop()
