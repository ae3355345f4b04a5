"""End-to-end smoke test: the built relay prints its version, starts, answers its health
endpoints on the admin listener, and exits 0 on SIGTERM."""
import os
import subprocess

import requests

from conftest import Relay

BIN = os.environ.get("TRACERELAY_BIN", ".build/debug/tracerelay")


def test_version_prints():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.strip()


def test_health_on_the_admin_listener_and_clean_exit():
    relay = Relay()
    try:
        assert requests.get(relay.admin_url + "/health/live", timeout=5).json() == {"status": "live"}
        ready = requests.get(relay.admin_url + "/health/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        # Health is an admin endpoint: not served on the ingest listener.
        assert requests.get(relay.url + "/health/ready", timeout=5).status_code == 404
    finally:
        assert relay.stop() == 0
