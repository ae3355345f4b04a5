"""Bad input gets a clear 4xx with a JSON reason, and the connection stays usable."""
import gzip
import json
import subprocess

import requests

SPAN = {"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "get",
        "timestamp": 1700000000000000, "duration": 1500, "localEndpoint": {"serviceName": "web"},
        "tags": {"http.method": "GET"}}


def test_malformed_json_is_400_and_connection_survives(fresh):
    with requests.Session() as s:
        r = s.post(fresh.url + "/api/v2/spans", data=b'[{"traceId": ', headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"] == "bad_payload"
        assert "byte" in r.json()["message"]
        r = s.post(fresh.url + "/api/v2/spans", data=json.dumps([SPAN]), headers={"Content-Type": "application/json"})
        assert r.status_code == 202
    assert len(fresh.wait_for_spans(1)) == 1


def test_wrong_content_type_is_415(relay):
    r = requests.post(relay.url + "/api/v2/spans", data=b"x", headers={"Content-Type": "image/png"})
    assert r.status_code == 415
    assert "Content-Type" in r.json()["message"]


def test_gzip_and_zstd_bodies(fresh):
    raw = json.dumps([SPAN]).encode()
    r = requests.post(fresh.url + "/api/v2/spans", data=gzip.compress(raw),
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 202
    z = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout
    r = requests.post(fresh.url + "/api/v2/spans", data=z,
                      headers={"Content-Type": "application/json", "Content-Encoding": "zstd"})
    assert r.status_code == 202
    spans = fresh.wait_for_spans(2)
    assert [s["traceId"] for s in spans] == [SPAN["traceId"]] * 2


def test_gzip_bomb_is_413(relay):
    bomb = gzip.compress(b"[" + b" " * (300 * 1024 * 1024) + b"]", compresslevel=9)
    r = requests.post(relay.url + "/api/v2/spans", data=bomb,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_unknown_path_404_json(relay):
    r = requests.get(relay.url + "/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_curl_h2c_prior_knowledge(fresh):
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                          "-H", "Content-Type: application/json", "--data-binary", json.dumps([SPAN]),
                          fresh.url + "/api/v2/spans"], capture_output=True, text=True, timeout=30)
    assert out.stdout == "202 2", out.stdout + out.stderr
    assert len(fresh.wait_for_spans(1)) == 1
