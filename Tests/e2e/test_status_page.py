"""The status page (issue 12) in a real headless browser: Debian's `chromium` loads `GET /` from
the admin listener of a relay under load (two Zipkin backends, regions, a residency refusal),
runs the page's script (`--virtual-time-budget` lets its 1 s polls run) and dumps the DOM. The
backends, their numbers and the routing table must appear, the numbers must move between two
loads a few seconds apart, and a backend taken down must show as DOWN with its last error in
the problem banner.

Skipped (with the reason) only when chromium is not installed (`apt-get install chromium`).
"""
import html.parser
import os
import shutil
import subprocess
import threading
import time

import pytest
import requests

from clients import post_zipkin, zipkin_span
from conftest import Relay
from sinks import ZipkinSink
from test_metrics import EU_ZONE, US_ZONE, two_sink_config, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium): the status page needs a real browser")


def browser(*args, timeout=60):
    """Runs headless chromium (as root it needs --no-sandbox); stdout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", "--hide-scrollbars", *args]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    return r.stdout.decode()


class Page(html.parser.HTMLParser):
    """What the rendered DOM shows, read from the data-* attributes the page sets."""

    def __init__(self, dom):
        super().__init__()
        self.backends = {}      # name -> {"up": bool, "sent": int}
        self.routes = []        # backend of each routing-table row
        self.listeners = []
        self.residency = {}     # region -> refused spans
        self.ingest_spans = None
        self.uptime = None
        self.problems = None
        self.errors = []        # texts of [data-last-error] elements
        self.banner = ""
        self._capture = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-backend" in a:
            self.backends[a["data-backend"]] = {"up": a.get("data-up") == "true", "sent": int(a.get("data-sent", "0"))}
        if "data-route-backend" in a:
            self.routes.append(a["data-route-backend"])
        if "data-listener" in a:
            self.listeners.append(a["data-listener"])
        if "data-region" in a:
            self.residency[a["data-region"]] = int(a["data-refused"])
        if a.get("id") == "ingest-spans":
            self.ingest_spans = int(a.get("data-spans", "0"))
        if a.get("id") == "uptime" and a.get("data-uptime"):
            self.uptime = float(a["data-uptime"])
        if a.get("id") == "banner":
            self.problems = int(a.get("data-problems", "0"))
            self._capture = "banner"
        if "data-last-error" in a:
            self._capture = "error"
            self.errors.append("")

    def handle_endtag(self, tag):
        if tag == "div" and self._capture == "error":
            self._capture = None

    def handle_data(self, data):
        if self._capture == "banner":
            self.banner += data
        elif self._capture == "error":
            self.errors[-1] += data


def load(url, budget_ms=3000):
    """The page's DOM after `budget_ms` of virtual time (about three polls)."""
    return Page(browser(f"--virtual-time-budget={budget_ms}", "--dump-dom", url))


class Load(threading.Thread):
    """Posts eu, us and residency-refused spans until stopped (bounded: 60 s at most)."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.errors = []

    def run(self):
        deadline = time.time() + 60
        while not self.stopping.is_set() and time.time() < deadline:
            spans = [zipkin_span(zone=EU_ZONE) for _ in range(20)] + [zipkin_span(zone=US_ZONE) for _ in range(10)]
            spans.append(zipkin_span(region="us-east-1"))
            try:
                r = post_zipkin(self.url, spans)
                if r.status_code not in (202, 429, 503):
                    self.errors.append(r.status_code)
            except requests.RequestException as e:
                self.errors.append(str(e))
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.join(10)


@pytest.fixture
def loaded(tmp_path):
    eu, us = ZipkinSink(), ZipkinSink()
    relay = Relay(config=two_sink_config(tmp_path, eu, us))
    traffic = Load(relay.url)
    traffic.start()
    yield relay, eu, us, traffic
    traffic.stop()
    code = relay.stop()
    eu.stop()
    us.stop()
    assert code == 0


def test_the_page_shows_backends_numbers_and_routes_and_they_update(loaded):
    relay, eu, us, traffic = loaded
    url = relay.admin_url + "/"
    assert eu.wait_for_spans(1) and us.wait_for_spans(1), "load reaches both backends"
    first = load(url)
    assert set(first.backends) == {"eu-zipkin", "us-zipkin"}, first.backends
    assert all(b["up"] for b in first.backends.values()), first.backends
    assert first.problems == 1 and "refused for data residency" in first.banner, first.banner
    assert first.residency.get("us-east-1", 0) >= 1, first.residency
    # The routing table: both TrafficTraces and the Mesh default, with their backends.
    assert sorted(first.routes) == ["eu-zipkin", "eu-zipkin", "us-zipkin"], first.routes
    assert "admin" in first.listeners and len(first.listeners) == 2, first.listeners
    assert first.ingest_spans and first.ingest_spans > 0

    # The load goes on: a second load of the page a few seconds later shows larger numbers.
    sent_before = requests.get(relay.admin_url + "/api/status").json()["ingest"]["spans"]
    assert wait_until(lambda: requests.get(relay.admin_url + "/api/status").json()["ingest"]["spans"] > sent_before + 200)
    second = load(url)
    assert second.ingest_spans > first.ingest_spans, (first.ingest_spans, second.ingest_spans)
    for name in ("eu-zipkin", "us-zipkin"):
        assert second.backends[name]["sent"] > first.backends[name]["sent"], (name, first.backends, second.backends)
    assert second.residency["us-east-1"] > first.residency["us-east-1"]
    assert second.uptime > first.uptime
    assert not traffic.errors, traffic.errors


def test_a_down_backend_is_red_with_its_last_error(loaded, tmp_path):
    relay, eu, us, traffic = loaded
    us.stop()
    assert wait_until(lambda: any(b["name"] == "us-zipkin" and not b["up"]
                                  for b in requests.get(relay.admin_url + "/api/status").json()["backends"]))
    page = load(relay.admin_url + "/", budget_ms=2000)
    assert page.backends["us-zipkin"]["up"] is False and page.backends["eu-zipkin"]["up"] is True, page.backends
    assert "backend us-zipkin is down" in page.banner, page.banner
    assert page.errors and page.errors[0].startswith("last error: ") and len(page.errors[0]) > len("last error: "), page.errors
    shot = tmp_path / "down.png"
    browser("--virtual-time-budget=2000", f"--screenshot={shot}", "--window-size=1280,900", relay.admin_url + "/")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    us.start()
    assert wait_until(lambda: all(b["up"] for b in requests.get(relay.admin_url + "/api/status").json()["backends"]))
    page = load(relay.admin_url + "/", budget_ms=2000)
    assert page.backends["us-zipkin"]["up"] is True, page.backends
    assert "is down" not in page.banner, page.banner
