"""The test backends themselves (sinks.py), without the relay: the Zipkin sink decodes what
real clients send and its knobs work; Datadog's test agent accepts ddtrace, judges payloads
with its trace checks and reports failures."""
import gzip
import json
import socket
import threading
import time
import zlib

import h2.config
import h2.connection
import h2.events
import pytest
import requests
import zstandard

from clients import dd_span, ddtrace_emit, post_datadog, zipkin_span
from sinks import ZipkinSink

SPAN = {"traceId": "463ac35c9f6413ad48485a3953bb6124", "parentId": "0102030405060708", "id": "a2fb4a1d1a96d312",
        "kind": "CLIENT", "name": "get /cart", "timestamp": 1700000000000001, "duration": 1500,
        "localEndpoint": {"serviceName": "web", "ipv4": "10.0.0.1", "port": 8080},
        "remoteEndpoint": {"serviceName": "db", "ipv6": "2001:db8::1"},
        "annotations": [{"timestamp": 1700000000000002, "value": "ws"}], "tags": {"a": "b", "unicode": "naïve ☃"},
        "shared": True}


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "zstd", "chunked"])
def test_sink_decodes_json_bodies(zipkin_sink, encoding):
    raw = json.dumps([SPAN]).encode()
    headers = {"Content-Type": "application/json"}
    data = raw
    if encoding == "gzip":
        data, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
    elif encoding == "deflate":
        data, headers["Content-Encoding"] = zlib.compress(raw), "deflate"
    elif encoding == "zstd":
        data, headers["Content-Encoding"] = zstandard.ZstdCompressor().compress(raw), "zstd"
    elif encoding == "chunked":
        data = iter([raw[:10], raw[10:]])  # requests sends a generator chunked
    r = requests.post(zipkin_sink.url, data=data, headers=headers, timeout=5)
    assert r.status_code == 202
    assert zipkin_sink.delivered_spans() == [SPAN]
    assert zipkin_sink.errors() == []


def test_sink_decodes_proto3_like_json(zipkin_sink):
    from test_zipkin_encoders import zipkin_proto_classes  # protobuf, independent of sinks.py's decoder
    ListOfSpans = zipkin_proto_classes()
    msg = ListOfSpans()
    s = msg.spans.add()
    s.trace_id = bytes.fromhex(SPAN["traceId"])
    s.parent_id = bytes.fromhex(SPAN["parentId"])
    s.id = bytes.fromhex(SPAN["id"])
    s.kind = 1
    s.name = SPAN["name"]
    s.timestamp, s.duration = SPAN["timestamp"], SPAN["duration"]
    s.local_endpoint.service_name, s.local_endpoint.ipv4, s.local_endpoint.port = "web", bytes([10, 0, 0, 1]), 8080
    s.remote_endpoint.service_name = "db"
    s.remote_endpoint.ipv6 = bytes.fromhex("20010db8000000000000000000000001")
    a = s.annotations.add()
    a.timestamp, a.value = 1700000000000002, "ws"
    s.tags["a"] = "b"
    s.tags["unicode"] = "naïve ☃"
    s.shared = True
    r = requests.post(zipkin_sink.url, data=msg.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 202
    assert zipkin_sink.delivered_spans() == [SPAN]


def test_sink_counts_duplicates(zipkin_sink):
    for _ in range(2):
        assert requests.post(zipkin_sink.url, json=[SPAN]).status_code == 202
    assert zipkin_sink.counts()[ZipkinSink.key(SPAN)] == 2


def test_sink_bad_body_is_400_and_recorded(zipkin_sink):
    r = requests.post(zipkin_sink.url, data=b"[{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert zipkin_sink.delivered_spans() == [] and len(zipkin_sink.errors()) == 1


def test_sink_answers_status_retry_after_script_and_delay(zipkin_sink):
    zipkin_sink.status, zipkin_sink.retry_after = 503, 2
    r = requests.post(zipkin_sink.url, json=[SPAN])
    assert (r.status_code, r.headers.get("Retry-After")) == (503, "2")
    assert zipkin_sink.delivered_spans() == [] and len(zipkin_sink.received_spans()) == 1
    zipkin_sink.status, zipkin_sink.retry_after = 202, None
    zipkin_sink.script.extend([(429, 1), (400, None)])
    assert [requests.post(zipkin_sink.url, json=[SPAN]).status_code for _ in range(3)] == [429, 400, 202]
    zipkin_sink.delay = 0.5
    t0 = time.time()
    assert requests.post(zipkin_sink.url, json=[SPAN]).status_code == 202
    assert time.time() - t0 >= 0.5
    assert zipkin_sink.counts()[ZipkinSink.key(SPAN)] == 2


def test_sink_stops_and_starts_on_the_same_port(zipkin_sink):
    port = zipkin_sink.port
    with requests.Session() as keepalive:
        assert keepalive.post(zipkin_sink.url, json=[SPAN]).status_code == 202
        zipkin_sink.delay = 5  # an answer being delayed when the sink stops is never sent
        slow = threading.Thread(target=lambda: pytest.raises(requests.RequestException, requests.post,
                                                             zipkin_sink.url, json=[SPAN], timeout=10))
        slow.start()
        time.sleep(0.3)
        t0 = time.time()
        zipkin_sink.stop()
        slow.join(10)
        assert time.time() - t0 < 3, "stop() must not wait for delayed answers"
        with pytest.raises(requests.ConnectionError):
            keepalive.post(zipkin_sink.url, json=[SPAN], timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.post(zipkin_sink.url, json=[SPAN], timeout=5)
        zipkin_sink.delay = 0
        zipkin_sink.start()
        assert zipkin_sink.port == port
        assert keepalive.post(zipkin_sink.url, json=[SPAN], timeout=5).status_code == 202
    assert zipkin_sink.counts()[ZipkinSink.key(SPAN)] == 2  # the unanswered one is not delivered
    assert len(zipkin_sink.received_spans()) == 3


def test_sink_on_ipv6_loopback():
    try:
        sink = ZipkinSink(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with sink:
        assert requests.post(sink.url, json=[SPAN], timeout=5).status_code == 202
        assert sink.delivered_spans() == [SPAN]


def test_sink_h2c_prior_knowledge_streams_are_concurrent(zipkin_sink):
    zipkin_sink.delay = 0.5
    sock = socket.create_connection(("127.0.0.1", zipkin_sink.port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    spans = [zipkin_span() for _ in range(6)]
    t0 = time.time()
    for s in spans:
        body = zstandard.ZstdCompressor().compress(json.dumps([s]).encode())
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/api/v2/spans"), (":scheme", "http"),
                                (":authority", "127.0.0.1"), ("content-type", "application/json"),
                                ("content-encoding", "zstd")])
        conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    statuses, ended = {}, 0
    while ended < len(spans):
        data = sock.recv(65536)
        assert data, "sink closed the connection"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                statuses[ev.stream_id] = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.StreamEnded):
                ended += 1
        sock.sendall(conn.data_to_send())
    sock.close()
    assert set(statuses.values()) == {b"202"}
    assert time.time() - t0 < 2.5, "delayed streams must be answered concurrently"
    assert {r.version for r in zipkin_sink.requests} == {"h2"}
    assert sorted(s["id"] for s in zipkin_sink.delivered_spans()) == sorted(s["id"] for s in spans)


# ---- Datadog's APM test agent


@pytest.mark.parametrize("api_version", ["v0.4", "v0.5"])
def test_dd_agent_receives_ddtrace(dd_agent, api_version):
    sent = ddtrace_emit(dd_agent.url, api_version, zone="us-east-zone-1")
    missing = dd_agent.wait_for_ids({s["span_id"] for s in sent})
    assert not missing
    got = {format(s["span_id"], "016x"): s for s in dd_agent.spans()}
    for s in sent:
        g = got[s["span_id"]]
        assert format(g["trace_id"], "016x") == s["trace_id"][16:]
        assert (g["service"], g["name"], g["resource"], g["type"]) == (s["service"], s["name"], s["resource"], s["type"])
        assert (g["start"], g["duration"], g.get("error", 0)) == (s["start_ns"], s["duration_ns"], s["error"])
        assert g["meta"]["kuma.zone"] == "us-east-zone-1"
    dd_agent.assert_checks_passed()


def test_dd_agent_check_failure_is_a_400_and_reported(dd_agent):
    span = dd_span()
    r = post_datadog(dd_agent.url, [[span]], headers={"X-Datadog-Trace-Count": "3"})
    assert r.status_code == 400
    assert "trace_count_header" in dd_agent.check_failures()
    dd_agent.start_session()
    assert dd_agent.check_failures() == ""


def test_dd_agent_answers_the_session_rate_by_service(dd_agent):
    rates = {"service:cart,env:": 0.25}
    dd_agent.start_session(rate_by_service=rates)
    r = post_datadog(dd_agent.url, [[dd_span()]])
    assert r.status_code == 200 and r.json()["rate_by_service"] == rates
    dd_agent.assert_checks_passed()
