"""The relay's logs (issue 12): one JSON object per line when its output is not a terminal (here
it is a file) or with `--log-format json`, a line for people with `--log-format text`; a forged
service name or request body cannot add a line in either; a refused request logs one warning per
reason and the repeats are counted, not logged (the count comes at the next line or at shutdown)."""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import BIN, Relay
from sinks import free_port

# A service name that tries to end the log line and forge one of each format.
FORGED_JSON_LINE = '{"time":"2026-01-01T00:00:00.000Z","level":"critical","label":"tracerelay","message":"FORGED"}'
FORGED_TEXT_LINE = "2026-01-01T00:00:00.000Z critical tracerelay: FORGED"
FORGED = "web\n" + FORGED_JSON_LINE + "\r\n" + FORGED_TEXT_LINE + "\u0085\u2028x"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|notice|warning|error|critical) +[\w.-]+: ")
BAD_REQUESTS = 25


def zipkin_post(relay, body, content_type="application/json"):
    return requests.post(relay.url + "/api/v2/spans", data=body, headers={"Content-Type": content_type}, timeout=5)


def exercise(relay):
    """Sends a span with the forged service name (the embedded default's `log` backend logs its
    batch with the service name), then BAD_REQUESTS bodies that do not parse (the body itself is
    a forgery attempt), waits for both to be logged, stops the relay with SIGTERM and returns
    everything it printed (the shutdown flush included)."""
    span = {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "get /x\r\n",
            "timestamp": int(time.time() * 1e6), "duration": 1000, "localEndpoint": {"serviceName": FORGED}}
    assert zipkin_post(relay, json.dumps([span])).status_code == 202
    for _ in range(BAD_REQUESTS):
        r = zipkin_post(relay, "[{\"traceId\": \n" + FORGED_JSON_LINE + "\n" + FORGED_TEXT_LINE)
        assert r.status_code == 400 and r.json()["error"] == "bad_payload", r.text
    deadline = time.time() + 10
    while not ("5af7183fb1d4cf5f" in relay.output() and "ingest request refused" in relay.output()):
        assert time.time() < deadline, "the batch and the refusal were not logged:\n" + relay.output()
        time.sleep(0.05)
    relay.proc.send_signal(signal.SIGTERM)
    assert relay.proc.wait(timeout=20) == 0
    out = relay.output()
    relay.stop()  # cleans up
    return out


def lines_of(out):
    # "\n" is the only line terminator a log reader may rely on; the relay's lines must not
    # even contain the others (NEL, U+2028) raw, since many readers split on those too.
    lines = out.split("\n")
    assert lines[-1] == "", "the output ends with a whole line"
    return lines[:-1]


@pytest.mark.parametrize("args", [[], ["--log-format", "json"]], ids=["default-not-a-tty", "explicit-json"])
def test_json_lines_cannot_be_forged(args):
    relay = Relay(args=args)
    out = exercise(relay)
    objects = []
    for line in lines_of(out):
        try:
            o = json.loads(line)
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}\n--- output ---\n{out}")
        assert isinstance(o, dict), line
        for field in ("time", "level", "message", "label", "source"):
            assert field in o, f"{field} missing in {line}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["time"]), o["time"]
        assert o["message"] != "FORGED", f"a forged line: {line}"
        objects.append(o)
    messages = [o["message"] for o in objects]
    assert "config loaded" in messages and "ready: every listener is accepting" in messages
    # Metadata are fields of their own.
    loaded = next(o for o in objects if o["message"] == "config loaded")
    assert loaded["label"] == "tracerelay" and loaded["config"] == "embedded default"
    # The batch line carries the forged name as a value, escaped: never as a line of its own.
    batch = [o for o in objects if o["message"] == "batch"]
    assert len(batch) == 1, messages
    assert batch[0]["first.trace_id"].endswith("5af7183fb1d4cf5f")
    assert "FORGED" in batch[0]["first.service"] and batch[0]["first.service"].startswith("web")
    assert not any(line.startswith("2026-01-01T00:00:00") for line in lines_of(out))
    # BAD_REQUESTS refusals: one warning, the rest counted and reported at shutdown.
    refused = [o for o in objects if o["message"].startswith("ingest request refused")]
    assert len(refused) == 1, refused
    assert refused[0]["level"] == "warning" and refused[0]["code"] == "bad_payload"
    assert refused[0]["http.status"] == "400"
    flushed = [o for o in objects if o["message"].startswith("ingest requests refused")]
    assert len(flushed) == 1 and flushed[0]["log.repeated"] == str(BAD_REQUESTS - 1), flushed
    assert f"bad_payload: repeated {BAD_REQUESTS - 1} times" in flushed[0]["message"]


def test_text_lines_cannot_be_forged():
    relay = Relay(args=["--log-format", "text"])
    out = exercise(relay)
    lines = lines_of(out)
    for line in lines:
        assert TEXT_LINE.match(line), f"not a log line of ours (forged?): {line!r}\n--- output ---\n{out}"
        assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029" for c in line), repr(line)
        assert not line.startswith("{"), "text, not JSON"
    forged = [line for line in lines if "FORGED" in line]
    # The batch line (service name) and the one refusal warning (the body in the decode error, if quoted).
    assert any(" batch " in line or ": batch " in line for line in forged), forged
    assert all(TEXT_LINE.match(line) for line in forged)
    batch = next(line for line in lines if ": batch " in line)
    assert "first.service=web\\n{" in batch and "\\r\\n2026-01-01T00:00:00.000Z critical tracerelay: FORGED\\u0085\\u2028x" in batch, batch
    refused = [line for line in lines if ": ingest request refused" in line]
    assert len(refused) == 1 and " warning " in refused[0] and "code=bad_payload" in refused[0], refused
    assert any(f"bad_payload: repeated {BAD_REQUESTS - 1} times" in line for line in lines), out


def test_log_level_filters():
    relay = Relay(args=["--log-level", "warning"])
    try:
        r = zipkin_post(relay, "not json")
        assert r.status_code == 400
        deadline = time.time() + 10
        while "ingest request refused" not in relay.output():
            assert time.time() < deadline, relay.output()
            time.sleep(0.05)
        out = relay.output()
    finally:
        relay.stop()
    levels = {json.loads(line)["level"] for line in lines_of(out)}
    assert levels == {"warning"}, out


def test_unknown_log_format_is_refused():
    r = subprocess.run([BIN, "serve", "--log-format", "yaml"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--log-format" in r.stderr


def test_a_terminal_gets_text_by_default():
    """`auto` with standard error on a real pseudo-terminal: lines for people, not JSON."""
    master, slave = pty.openpty()
    spill = tempfile.mkdtemp(prefix="tracerelay-pty-")
    admin = free_port()
    proc = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{admin}",
                             "--spill-dir", spill], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    try:
        deadline = time.time() + 20
        while b"ready: every listener is accepting" not in seen:
            assert time.time() < deadline and proc.poll() is None, seen.decode(errors="replace")
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 65536)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        os.close(master)
        shutil.rmtree(spill, ignore_errors=True)
    # The terminal turns "\n" into "\r\n".
    lines = [line for line in seen.decode().replace("\r\n", "\n").split("\n") if line]
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert any(": config loaded " in line and "config=embedded default" in line for line in lines), lines
