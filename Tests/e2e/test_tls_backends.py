"""HTTPS backends end to end (issue 14, outbound): the relay forwards to a Zipkin collector
behind TLS — sinks.ZipkinSink behind a small TLS-terminating proxy written here on Python's
`ssl` (ALPN h2 and http/1.1, optionally requiring a client certificate), so the same sink
checks every span over HTTP/1.1 and HTTP/2. Certificates: tlscerts.py (openssl CLI).
"""
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from clients import post_zipkin, zipkin_span
from conftest import BIN, Relay
from tlscerts import Certs
from test_pipeline import FAST_EXPORT, relay_context, relays, single_backend_config, yaml_map  # noqa: F401

EU = "eu-west-zone-1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("tls"))


class TLSProxy:
    """Terminates TLS on a free loopback port and pipes each connection to `target_port` in
    the clear. Records every handshake (ALPN, resumed, client certificate CN) and failure."""

    def __init__(self, target_port, certs, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs.server_cert, certs.server_key)
        if client_ca:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.target_port = target_port
        self.lock = threading.Lock()
        self.handshakes, self.failures = [], []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"https://localhost:{self.port}/api/v2/spans"
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping.set()
        self.sock.close()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            c.settimeout(None)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            tls = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.failures.append(str(e))
            c.close()
            return
        cert = tls.getpeercert() or {}
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        with self.lock:
            self.handshakes.append({"alpn": tls.selected_alpn_protocol(), "resumed": tls.session_reused, "peer": cn})
        up = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while not self.stopping.is_set():
                ready = [tls] if tls.pending() else select.select([tls, up], [], [], 0.5)[0]
                if tls in ready:
                    data = tls.recv(65536)
                    if not data:
                        break
                    up.sendall(data)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        break
                    tls.sendall(data)
        except (ssl.SSLError, OSError):
            pass
        finally:
            up.close()
            tls.close()


@pytest.fixture
def proxies():
    started = []
    yield started
    for p in started:
        p.stop()


def https_config(tmp_path, url, protocol="http1", tls=None, name="https.yaml"):
    tls_yaml = "" if tls is None else "\n        tls:\n" + yaml_map(tls, 10)
    return single_backend_config(tmp_path, f"""\
    - name: only
      type: zipkin
      export:
{yaml_map(dict(FAST_EXPORT, protocol=protocol, compression="none"), 8)}
      conf:
        url: {url}
        traceId128bit: true{tls_yaml}""", name=name)


def send_and_expect(relay, sink, n=20):
    spans = [zipkin_span(zone=EU) for _ in range(n)]
    assert post_zipkin(relay.url, spans).status_code == 202
    assert not sink.wait_for_ids([s["id"] for s in spans], timeout=20), relay_context(relay)
    got = {s["id"]: s for s in sink.delivered_spans()}
    for s in spans:
        assert got[s["id"]] == s


@pytest.mark.parametrize("protocol,version", [("http1", "HTTP/1.1"), ("h2c", "h2")])
def test_spans_reach_a_zipkin_collector_over_https(tmp_path, zipkin_sink, certs, proxies, relays, protocol, version):
    proxy = TLSProxy(zipkin_sink.port, certs)
    proxies.append(proxy)
    relay = Relay(config=https_config(tmp_path, proxy.url, protocol, {"caFile": certs.ca}))
    relays.append(relay)
    send_and_expect(relay, zipkin_sink)
    send_and_expect(relay, zipkin_sink)
    assert {r.version for r in zipkin_sink.requests} == {version}
    assert proxy.failures == []
    assert {h["alpn"] for h in proxy.handshakes} == {"h2" if protocol == "h2c" else "http/1.1"}


def test_mtls_client_certificate_is_presented(tmp_path, zipkin_sink, certs, proxies, relays):
    proxy = TLSProxy(zipkin_sink.port, certs, client_ca=certs.ca)
    proxies.append(proxy)
    cert, key = certs.zone_client("zone-eu-1")
    relay = Relay(config=https_config(tmp_path, proxy.url, "h2c", {"caFile": certs.ca, "certificate": cert, "privateKey": key}))
    relays.append(relay)
    send_and_expect(relay, zipkin_sink)
    assert proxy.handshakes and all(h["peer"] == "zone-eu-1 collector" for h in proxy.handshakes), proxy.handshakes


def test_wrong_ca_is_refused_with_a_clear_reason_then_insecure_skip_verify_warns(tmp_path, zipkin_sink, certs, proxies, relays):
    proxy = TLSProxy(zipkin_sink.port, certs)
    proxies.append(proxy)
    relay = Relay(config=https_config(tmp_path, proxy.url, tls={"caFile": certs.other_ca}))
    relays.append(relay)
    assert post_zipkin(relay.url, [zipkin_span(zone=EU)]).status_code == 202
    reason = "the server's certificate was not accepted: unable to get local issuer certificate"

    deadline = time.time() + 15
    while reason not in relay.output() and time.time() < deadline:
        time.sleep(0.1)
    assert reason in relay.output(), relay_context(relay)
    assert relay.output().count("TLS handshake with backend failed") == 1, "the reason is logged once, not per retry"
    assert zipkin_sink.delivered_spans() == []

    insecure = https_config(tmp_path, proxy.url, tls={"insecureSkipVerify": True}, name="insecure.yaml")
    check = subprocess.run([BIN, "check", "--config", str(insecure)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "INSECURE" in check.stdout + check.stderr, check.stdout + check.stderr
    relay2 = Relay(config=insecure)
    relays.append(relay2)
    assert "INSECURE" in relay2.output()
    send_and_expect(relay2, zipkin_sink)


def test_tls_on_an_http_url_is_a_config_error(tmp_path, certs):
    cfg = https_config(tmp_path, "http://127.0.0.1:9411/api/v2/spans", tls={"caFile": certs.ca})
    check = subprocess.run([BIN, "check", "--config", str(cfg)], capture_output=True, text=True)
    assert check.returncode != 0
    assert "conf.tls" in check.stdout + check.stderr and "not an https:// URL" in check.stdout + check.stderr


def test_relay_chain_over_mtls(tmp_path, zipkin_sink, certs, relays):
    """A regional relay → a central relay's own TLS listener (client certificates required) →
    the collector: tracerelay's client against tracerelay's server, h2 chosen by ALPN."""
    central_cfg = https_config(tmp_path, zipkin_sink.url, name="central.yaml")
    central = Relay(config=central_cfg, args=["--tls-cert", certs.server_cert, "--tls-key", certs.server_key,
                                              "--tls-client-ca", certs.ca])
    relays.append(central)
    cert, key = certs.zone_client("zone-eu-1")
    regional_cfg = single_backend_config(tmp_path, f"""\
    - name: only
      type: tracerelay
      export:
{yaml_map(FAST_EXPORT, 8)}
      conf:
        url: https://localhost:{central.port}
        tls:
{yaml_map({"caFile": certs.ca, "certificate": cert, "privateKey": key}, 10)}""", name="regional.yaml")
    regional = Relay(config=regional_cfg)
    relays.append(regional)
    send_and_expect(regional, zipkin_sink)
    assert "TLS handshake with backend failed" not in regional.output()
