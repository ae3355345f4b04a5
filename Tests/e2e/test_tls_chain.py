"""The relay chain over mutual TLS: zone collectors forward to a central relay through https://
with client certificates; the central relay pins each collector to the zone its certificate
names (`peers`). Counts stay exact, pins hold, and a collector that presents another zone's
certificate cannot get its spans into a region that is not its own."""
import json
import time

import requests

from conftest import Relay, free_port
from sinks import ZipkinSink
from tlscerts import Certs, two_region_routing

EU, US = "zone-eu-1", "zone-us-1"
FAST = "export: {batchDelay: 20ms, maxBackoff: 1s}"


def span(i, tags=None):
    return {"traceId": format(0x77000 + i, "016x"), "id": format(0x88000 + i, "016x"), "name": "op",
            "timestamp": 1700000000000000, "duration": 5, "localEndpoint": {"serviceName": "svc"}, "tags": tags or {}}


def central_config(port, certs, eu_sink, us_sink):
    return f"""\
type: Relay
region: eu-west-1
trustUpstreamTags: true
listeners:
  - name: collectors
    address: 127.0.0.1:{port}
    tls: {{certificate: {certs.server_cert}, privateKey: {certs.server_key}, clientCA: {certs.ca}}}
peers:
  - {{match: "spiffe://default/{EU}/*", zone: {EU}}}
  - {{match: "spiffe://default/{US}/*", zone: {US}}}
zoneRegions:
  {EU}: eu-west-1
  {US}: us-east-1
""" + two_region_routing(eu_sink.url, us_sink.url, f"kuma.io/zone: {US}", export=FAST)


def regional_config(port, zone, region, central_port, certs, client):
    cert, key = client
    return f"""\
type: Relay
region: {region}
listeners:
  - name: ingest
    address: 127.0.0.1:{port}
    tags: {{kuma.io/zone: {zone}}}
zoneRegions:
  {zone}: {region}
backends:
  - name: central
    type: tracerelay
    region: {region}
    {FAST}
    conf:
      url: https://localhost:{central_port}/api/v2/spans
      tls: {{caFile: {certs.ca}, certificate: {cert}, privateKey: {key}}}
---
type: Mesh
name: default
tracing:
  defaultBackend: central
"""


def post(relay, spans):
    return requests.post(relay.url + "/api/v2/spans", data=json.dumps(spans), headers={"Content-Type": "application/json"}, timeout=10)


def test_chain_over_mtls_keeps_counts_and_pins(tmp_path):
    certs = Certs(tmp_path / "certs")
    eu_sink, us_sink = ZipkinSink(), ZipkinSink()
    relays = []
    try:
        cp, ep, up, xp = free_port(), free_port(), free_port(), free_port()
        (tmp_path / "central.yaml").write_text(central_config(cp, certs, eu_sink, us_sink))
        central = Relay(config=str(tmp_path / "central.yaml"), listen=False, port=cp)
        relays.append(central)
        eu_cfg = regional_config(ep, EU, "eu-west-1", cp, certs, certs.zone_client(EU))
        us_cfg = regional_config(up, US, "us-east-1", cp, certs, certs.zone_client(US))
        # A us collector misconfigured with the eu collector's certificate.
        forged_cfg = regional_config(xp, US, "us-east-1", cp, certs, certs.zone_client(EU))
        for name, text, port in (("eu", eu_cfg, ep), ("us", us_cfg, up), ("forged", forged_cfg, xp)):
            (tmp_path / f"{name}.yaml").write_text(text)
            relays.append(Relay(config=str(tmp_path / f"{name}.yaml"), listen=False, port=port))
        _, eu_relay, us_relay, forged = relays
        eu_spans = [span(i) for i in range(100)]
        us_spans = [span(1000 + i) for i in range(80)]
        forged_spans = [span(2000 + i) for i in range(30)]
        assert post(eu_relay, eu_spans).status_code == 202
        assert post(us_relay, us_spans).status_code == 202
        assert post(forged, forged_spans).status_code == 202
        assert not eu_sink.wait_for_ids([s["id"] for s in eu_spans], timeout=20), central.tail()
        assert not us_sink.wait_for_ids([s["id"] for s in us_spans], timeout=20), central.tail()
        # The forged collector's us-zone spans are refused at the central relay, never sent.
        deadline = time.time() + 15
        refused = {}
        while time.time() < deadline:
            refused = central.status()["routing"]["refused"]
            if refused.get("identity|us-east-1|") == 30:
                break
            time.sleep(0.1)
        assert refused == {"identity|us-east-1|": 30}, refused
        time.sleep(0.5)
        assert sorted(s["id"] for s in eu_sink.delivered_spans()) == sorted(s["id"] for s in eu_spans)
        assert sorted(s["id"] for s in us_sink.delivered_spans()) == sorted(s["id"] for s in us_spans)
        assert central.status()["routing"]["routed"] == {"eu": 100, "us": 80}
    finally:
        for r in relays:
            r.stop()
        eu_sink.stop()
        us_sink.stop()


def test_the_mtls_examples_run_as_a_chain(tmp_path):
    """examples/chain-*-mtls.yaml with examples/make-test-certs.sh's certificates (moved to this
    test's directory and free ports): a span sent to the collector reaches the central relay's
    eu archive over mTLS, and the unnamed us certificate gets 403."""
    import os
    import subprocess
    examples = os.path.join(os.path.dirname(__file__), "../../examples")
    certs = tmp_path / "tls"
    subprocess.run([os.path.join(examples, "make-test-certs.sh"), str(certs)], check=True, capture_output=True)
    cp, ca, rp, ra = free_port(), free_port(), free_port(), free_port()
    def load(name, replacements):
        text = open(os.path.join(examples, name)).read().replace("/tmp/tracerelay-tls", str(certs))
        for a, b in replacements:
            assert a in text, a
            text = text.replace(a, b)
        path = tmp_path / name
        path.write_text(text)
        return path
    central_cfg = load("chain-central-mtls.yaml", [("127.0.0.1:19443", f"127.0.0.1:{cp}"), ("127.0.0.1:19902", f"127.0.0.1:{ca}"),
                                                   ("/tmp/tracerelay-eu-archive-mtls", str(tmp_path / "archive")),
                                                   ("/tmp/tracerelay-central-mtls-spill", str(tmp_path / "cspill"))])
    regional_cfg = load("chain-regional-mtls.yaml", [("localhost:19443", f"localhost:{cp}"), ("127.0.0.1:9411", f"127.0.0.1:{rp}"),
                                                     ("127.0.0.1:9901", f"127.0.0.1:{ra}"),
                                                     ("/tmp/tracerelay-regional-mtls-spill", str(tmp_path / "rspill"))])
    central = Relay(config=str(central_cfg), listen=False, port=cp, admin_port=ca)
    regional = None
    try:
        regional = Relay(config=str(regional_cfg), listen=False, port=rp, admin_port=ra)
        assert post(regional, [span(i) for i in range(5)]).status_code == 202
        deadline = time.time() + 15
        routed = {}
        while time.time() < deadline:
            routed = central.status()["routing"]["routed"]
            if routed.get("eu-archive") == 5:
                break
            time.sleep(0.1)
        assert routed == {"eu-archive": 5}, central.tail()
        us = requests.post(f"https://localhost:{cp}/api/v2/spans", data="[]", verify=str(certs / "ca.pem"),
                           cert=(str(certs / "us-east-zone-1.pem"), str(certs / "us-east-zone-1.key")), timeout=10)
        assert us.status_code == 403 and us.json()["error"] == "unknown_peer"
    finally:
        if regional:
            regional.stop()
        central.stop()
