"""End-to-end smoke test: the built relay starts and answers its health endpoint."""
import os
import socket
import subprocess
import time

import requests

BIN = os.environ.get("TRACERELAY_BIN", ".build/debug/tracerelay")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version_prints():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.strip()
