"""Graceful scale-in: on SIGTERM with --drain-delay the relay answers /health/ready with 503
("draining") while it goes on accepting spans, so a Kubernetes Service or load balancer takes it
out of rotation first; then it stops accepting, sends what it holds within --grace, and exits 0."""
import json
import signal
import time

import requests

from conftest import Relay
from sinks import ZipkinSink


def spans(n, start):
    return [{"traceId": format(0x5000 + start + i, "016x"), "id": format(0x6000 + start + i, "016x"), "name": "op",
             "timestamp": 1700000000000000, "duration": 5, "localEndpoint": {"serviceName": "svc"}} for i in range(n)]


def test_sigterm_drains_then_flushes_and_exits(tmp_path):
    sink = ZipkinSink()
    cfg = tmp_path / "relay.yaml"
    cfg.write_text("type: Mesh\nname: default\ntracing:\n  defaultBackend: out\n  backends:\n"
                   f"    - name: out\n      type: zipkin\n      conf: {{url: \"{sink.url}\"}}\n")
    relay = Relay(config=str(cfg), args=["--drain-delay", "2", "--grace", "5"])
    try:
        post = lambda body: requests.post(relay.url + "/api/v2/spans", data=json.dumps(body),
                                          headers={"Content-Type": "application/json"}, timeout=5)
        assert post(spans(10, 0)).status_code == 202
        relay.proc.send_signal(signal.SIGTERM)
        # Not ready at once, while ingest still takes spans.
        deadline = time.time() + 1
        ready = None
        while time.time() < deadline:
            ready = requests.get(relay.admin_url + "/health/ready", timeout=2)
            if ready.status_code == 503:
                break
            time.sleep(0.02)
        assert ready.status_code == 503 and ready.json()["reason"] == "draining", ready.text
        assert post(spans(10, 100)).status_code == 202
        assert relay.proc.poll() is None
        # Then shutdown: everything accepted reaches the sink, and the process exits 0.
        assert relay.proc.wait(timeout=15) == 0
        assert len(sink.wait_for_spans(20)) == 20
        assert "draining: not ready, still serving" in relay.output()
    finally:
        relay.stop()
        sink.stop()
