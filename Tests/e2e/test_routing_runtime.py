"""Routing at run time: the relay loads a Kuma config, routes every span it receives and
counts what it keeps, samples out and refuses for residency (visible in /status)."""
import json
import os

import pytest
import requests

from conftest import Relay

EXAMPLES = os.path.join(os.path.dirname(__file__), "../../examples")


def span(i, tags, service="web"):
    return {"traceId": format(0x1000 + i, "016x"), "id": format(0x2000 + i, "016x"), "name": "get",
            "timestamp": 1700000000000000, "duration": 10, "localEndpoint": {"serviceName": service}, "tags": tags}


@pytest.fixture(scope="module")
def regional(tmp_path_factory):
    # The example's backends live on other hosts; tests only talk to this machine, so they are
    # pointed at a closed loopback port (their queues keep what they cannot send).
    text = open(os.path.join(EXAMPLES, "two-regions.yaml")).read()
    text = text.replace("http://zipkin.eu-west-1.internal:9411", "http://127.0.0.1:9")
    text = text.replace("datadog-agent.us-east-1.internal", "127.0.0.1")
    assert ".internal" not in text
    cfg = tmp_path_factory.mktemp("regional") / "two-regions.yaml"
    cfg.write_text(text)
    r = Relay(config=str(cfg))
    yield r
    assert r.stop() == 0


def test_residency_refusal_and_fallback_are_counted(regional):
    spans = [
        # a us span (explicit region tag) whose policy falls to the Mesh default, an eu backend: refused
        span(1, {"region": "us-east-1"}),
        # an eu-zone span: eu-traffic policy → eu-zipkin
        span(2, {"kuma.zone": "eu-west-zone-1"}),
    ]
    r = requests.post(regional.url + "/api/v2/spans", data=json.dumps(spans), headers={"Content-Type": "application/json"})
    assert r.status_code == 202
    status = requests.get(regional.admin_url + "/status").json()["routing"]
    assert status["refused"] == {"residency|us-east-1|eu-zipkin": 1}
    assert status["routed"] == {"eu-zipkin": 1}


def test_invalid_config_refuses_to_start(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: Mesh\nname: default\ntracing:\n  defaultBackend: missing\n  backends: []\n")
    with pytest.raises(RuntimeError, match="missing"):
        Relay(config=str(bad))
