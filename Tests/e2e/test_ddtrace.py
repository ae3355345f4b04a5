"""The real ddtrace library sends to the relay as if it were a Datadog agent (v0.4 and v0.5);
the relay must decode exactly the spans it sent."""
import json
import os
import subprocess
import sys

import pytest
import requests

HERE = os.path.dirname(__file__)


def emit(relay, api_version):
    env = dict(os.environ, DD_TRACE_AGENT_URL=relay.url, DD_TRACE_API_VERSION=api_version,
               DD_INSTRUMENTATION_TELEMETRY_ENABLED="false", DD_REMOTE_CONFIGURATION_ENABLED="false",
               DD_TRACE_STARTUP_LOGS="false", DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED="true")
    out = subprocess.run([sys.executable, os.path.join(HERE, "ddtrace_emit.py")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("api_version,fmt", [("v0.4", "datadog_v04"), ("v0.5", "datadog_v05")])
def test_ddtrace_spans_arrive_exactly(fresh, api_version, fmt):
    sent = emit(fresh, api_version)
    got = fresh.wait_for_spans(len(sent))
    _, body = fresh.captured_spans()
    assert {b["format"] for b in body["batches"]} == {fmt}
    assert len(got) == len(sent)
    by_id = {s["id"]: s for s in got}
    for s in sent:
        g = by_id[s["span_id"]]
        assert g["traceId"] == s["trace_id"].lstrip("0").rjust(16, "0") if s["trace_id"].startswith("0" * 16) else s["trace_id"]
        assert g.get("parentId") == s["parent_id"]
        assert g["localEndpoint"]["serviceName"] == s["service"]
        assert g["name"] == s["name"]
        assert g["resource"] == s["resource"]
        assert g["type"] == s["type"]
        assert g["startNanos"] == s["start_ns"]
        assert g["durationNanos"] == s["duration_ns"]
        assert g["error"] == bool(s["error"])
    root = by_id[sent[0]["span_id"]]
    child = by_id[sent[1]["span_id"]]
    assert root["tags"]["http.method"] == "GET"
    assert root["metrics"]["cart.items"] == 3
    assert child.get("kind") == "CLIENT"
    assert "query timed out" in child["tags"].get("error.message", child["tags"].get("error.msg", ""))


def test_info_answers_like_an_agent(relay):
    r = requests.get(relay.url + "/info", timeout=5)
    assert r.status_code == 200
    assert "/v0.4/traces" in r.json()["endpoints"]
