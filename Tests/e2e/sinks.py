"""Test backends for the end-to-end pipeline tests, on loopback only.

ZipkinSink: a threaded Zipkin collector (POST /api/v2/spans). One port serves HTTP/1.1
  (keep-alive, Content-Length or chunked bodies, Expect: 100-continue) and HTTP/2 with prior
  knowledge (h2c, detected by the connection preface). Bodies are decoded from gzip, deflate or
  zstd and parsed as Zipkin v2 JSON or proto3 ListOfSpans (the proto is turned into the same
  dict shape as the JSON). Knobs: `status` / `retry_after` / `script` (answers), `delay` (seconds
  before each answer), `stop()` / `start()` (outage on the same port). Spans count as delivered
  only when a 2xx answer was written, so `counts()` shows duplicates.

DDAgent: Datadog's own APM test agent (PyPI ddapm-test-agent) in a subprocess, every trace
  check of the installed version enabled and failures pooled: a payload failing a check gets a
  400 (so the relay sees a permanent error) and shows up in `check_failures()`.
"""
import base64
import collections
import dataclasses
import gzip
import ipaddress
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler

import requests

try:
    import zstandard
except ImportError:  # pragma: no cover - listed in requirements.txt
    zstandard = None

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def url_host(host):
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------------------------------------
# Body decoding


def decompress(body, encoding):
    """Undoes Content-Encoding (gzip, deflate, zstd; identity/none/empty pass through)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        return body
    if enc in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if enc == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    if enc == "zstd":
        if zstandard is None:
            raise ValueError("zstd body but the zstandard package is missing")
        # Frames may or may not carry the content size: stream them.
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise ValueError(f"unknown Content-Encoding {encoding!r}")


def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = bytes(buf[i:i + n]), i + n
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if i > len(buf):
            raise ValueError("truncated field")
        yield num, wt, v


def _endpoint(buf):
    ep = {}
    for num, _, v in _fields(buf):
        if num == 1 and v:
            ep["serviceName"] = v.decode()
        elif num == 2 and v:
            ep["ipv4"] = str(ipaddress.IPv4Address(v))
        elif num == 3 and v:
            ep["ipv6"] = str(ipaddress.IPv6Address(v))
        elif num == 4 and v:
            ep["port"] = v
    return ep


KINDS = {1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}


def parse_zipkin_proto3(body):
    """zipkin.proto3.ListOfSpans → a list of dicts shaped like Zipkin v2 JSON spans (absent
    and zero fields left out, ids as lower-case hex, times in µs)."""
    spans = []
    for num, wt, v in _fields(body):
        if num != 1 or wt != 2:
            raise ValueError(f"unexpected field {num} in ListOfSpans")
        s, tags, annotations = {}, {}, []
        for f, _, x in _fields(v):
            if f == 1:
                if len(x) not in (8, 16):
                    raise ValueError(f"trace_id of {len(x)} bytes")
                s["traceId"] = x.hex()
            elif f == 2 and x:
                s["parentId"] = x.hex()
            elif f == 3:
                if len(x) != 8:
                    raise ValueError(f"id of {len(x)} bytes")
                s["id"] = x.hex()
            elif f == 4 and x:
                s["kind"] = KINDS[x]
            elif f == 5 and x:
                s["name"] = x.decode()
            elif f == 6 and x:
                s["timestamp"] = x
            elif f == 7 and x:
                s["duration"] = x
            elif f in (8, 9):
                ep = _endpoint(x)
                if ep:
                    s["localEndpoint" if f == 8 else "remoteEndpoint"] = ep
            elif f == 10:
                a = {}
                for g, _, y in _fields(x):
                    if g == 1:
                        a["timestamp"] = y
                    elif g == 2:
                        a["value"] = y.decode()
                annotations.append(a)
            elif f == 11:
                kv = {g: y for g, _, y in _fields(x)}
                tags[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
            elif f == 12 and x:
                s["debug"] = True
            elif f == 13 and x:
                s["shared"] = True
        if annotations:
            s["annotations"] = annotations
        if tags:
            s["tags"] = tags
        if "traceId" not in s or "id" not in s:
            raise ValueError("span without traceId or id")
        spans.append(s)
    return spans


def parse_zipkin_body(body, content_type):
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct in ("application/x-protobuf", "application/protobuf"):
        return parse_zipkin_proto3(body)
    spans = json.loads(body)
    if not isinstance(spans, list) or not all(isinstance(s, dict) for s in spans):
        raise ValueError("Zipkin v2 JSON must be a list of span objects")
    return spans


# ---------------------------------------------------------------------------------------------
# ZipkinSink


@dataclasses.dataclass
class SinkRequest:
    method: str
    path: str
    version: str                       # "HTTP/1.1" or "h2"
    headers: dict                      # lower-case names
    raw: bytes                         # body as received
    body: bytes = b""                  # after Content-Encoding
    spans: list = dataclasses.field(default_factory=list)
    error: str = None                  # why the body could not be read, if it could not
    received_at: float = 0.0
    status: int = None                 # what the sink answered (None: no answer written)
    answered_at: float = None

    @property
    def delivered(self):
        return self.status is not None and 200 <= self.status < 300


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, sink, address, family):
        self.address_family = family
        self.sink = sink
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.server.sink._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.sink._track(self.connection, False)

    def handle(self):
        try:
            head = self.connection.recv(len(H2_PREFACE), socket.MSG_PEEK | socket.MSG_WAITALL)
        except OSError:
            return
        if head == H2_PREFACE:
            _serve_h2(self.server.sink, self.connection)
        else:
            super().handle()

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _any(self):
        raw = self._read_body()
        sink = self.server.sink
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = sink._record(self.command, self.path, "HTTP/1.1", headers, raw)
        status, extra, body = sink._answer_for(req)
        if status is None:  # stopped while delaying: drop the connection unanswered
            self.close_connection = True
            return
        sink._answered(req, status)  # before writing, so a client that has the answer sees it counted
        try:
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            sink._answered(req, None)  # the answer never left: not delivered

    do_POST = do_PUT = _any

    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve_h2(sink, sock):
    """A minimal h2c server connection: every stream is answered like an HTTP/1.1 request
    (a delayed answer runs on its own thread, so one slow stream does not hold the others)."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                          h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    conn.increment_flow_control_window(16 << 20)
    lock = threading.Lock()
    streams = {}

    def flush():
        data = conn.data_to_send()
        if data:
            sock.sendall(data)

    with lock:
        flush()

    def respond(stream_id, req):
        status, extra, body = sink._answer_for(req)
        if status is None:
            return
        sink._answered(req, status)
        try:
            with lock:
                hdrs = [(":status", str(status)), ("content-type", "application/json"),
                        ("content-length", str(len(body)))] + [(k.lower(), v) for k, v in extra.items()]
                conn.send_headers(stream_id, hdrs, end_stream=not body)
                if body:
                    conn.send_data(stream_id, body, end_stream=True)
                flush()
        except Exception:  # connection gone (stop(), or the client closed it): not delivered
            sink._answered(req, None)

    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError:
            return
        if not data:
            return
        try:
            with lock:
                events = conn.receive_data(data)
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = [dict(ev.headers), bytearray()]
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id][1] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        hdrs, body = streams.pop(ev.stream_id)
                        headers = {k.lower(): v for k, v in hdrs.items() if not k.startswith(":")}
                        req = sink._record(hdrs.get(":method", ""), hdrs.get(":path", ""), "h2", headers, bytes(body))
                        threading.Thread(target=respond, args=(ev.stream_id, req), daemon=True).start()
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        flush()
                        return
                flush()
        except Exception:
            return


class ZipkinSink:
    """A Zipkin collector for tests. `url` is its /api/v2/spans endpoint."""

    def __init__(self, host="127.0.0.1", port=0, status=202, start=True):
        self.host = host
        self.port = port or free_port(host)
        self.status = status            # answer to every request (unless `script` has entries)
        self.retry_after = None         # Retry-After header value sent with non-2xx answers
        self.delay = 0.0                # seconds to wait before each answer
        self.script = collections.deque()  # (status, retry_after) answered first, in order
        self._lock = threading.Lock()
        self._requests = []
        self._conns = set()
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        self.changed = threading.Condition(self._lock)
        if start:
            self.start()

    @property
    def base_url(self):
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def url(self):
        return self.base_url + "/api/v2/spans"

    @property
    def running(self):
        return self._server is not None

    # -- lifecycle

    def start(self, timeout=10):
        """Binds the same port again (after stop()) and serves."""
        assert self._server is None, "already running"
        self._stopping = threading.Event()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        deadline = time.time() + timeout
        while True:
            try:
                self._server = _Server(self, (self.host, self.port), family)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening and drops every open connection (answers being delayed are not sent)."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._server = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- request handling (called on server threads)

    def _record(self, method, path, version, headers, raw):
        req = SinkRequest(method=method, path=path, version=version, headers=headers, raw=raw, received_at=time.time())
        try:
            req.body = decompress(raw, headers.get("content-encoding"))
            if path.split("?")[0] in ("/api/v2/spans",):
                req.spans = parse_zipkin_body(req.body, headers.get("content-type"))
            else:
                req.error = f"unexpected path {path}"
        except Exception as e:  # noqa: BLE001 - recorded for the test to report
            req.error = f"{type(e).__name__}: {e}"
        with self._lock:
            self._requests.append(req)
            self.changed.notify_all()
        return req

    def _answer_for(self, req):
        with self._lock:
            if self.script:
                status, retry_after = self.script.popleft()
            else:
                status, retry_after = self.status, self.retry_after
            delay = self.delay
        if req.error is not None:
            status, retry_after = 400, None
        if delay and self._stopping.wait(delay):
            return None, {}, b""
        if self._stopping.is_set():
            return None, {}, b""
        extra = {}
        if retry_after is not None and not 200 <= status < 300:
            extra["Retry-After"] = str(retry_after)
        body = b"" if 200 <= status < 300 else json.dumps({"error": req.error or f"sink answers {status}"}).encode()
        return status, extra, body

    def _answered(self, req, status):
        with self._lock:
            req.status = status
            req.answered_at = time.time() if status is not None else None
            self.changed.notify_all()

    # -- what the tests read

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def errors(self):
        """Requests whose body could not be decoded or parsed."""
        return [(r.path, r.headers.get("content-type"), r.error) for r in self.requests if r.error]

    def delivered_spans(self):
        """Spans of every request the sink answered with a 2xx."""
        return [s for r in self.requests if r.delivered for s in r.spans]

    def received_spans(self):
        """Spans of every request received, whatever the answer."""
        return [s for r in self.requests for s in r.spans]

    @staticmethod
    def key(span):
        return (span["traceId"], span["id"], bool(span.get("shared", False)))

    def counts(self, delivered=True):
        """How often each (traceId, id, shared) arrived: > 1 is a duplicate."""
        spans = self.delivered_spans() if delivered else self.received_spans()
        return collections.Counter(self.key(s) for s in spans)

    def ids(self):
        return {s["id"] for s in self.delivered_spans()}

    def clear(self):
        with self._lock:
            self._requests.clear()

    def wait_for(self, predicate, timeout=15, interval=0.05):
        """Waits until predicate(sink) is true; returns its last value."""
        deadline = time.time() + timeout
        while True:
            v = predicate(self)
            if v or time.time() > deadline:
                return v
            time.sleep(interval)

    def wait_for_spans(self, n, timeout=15):
        self.wait_for(lambda s: len(s.delivered_spans()) >= n, timeout)
        return self.delivered_spans()

    def wait_for_ids(self, ids, timeout=15):
        """Waits until every span id in `ids` was delivered; returns the ids still missing."""
        ids = set(ids)
        self.wait_for(lambda s: ids <= s.ids(), timeout)
        return ids - self.ids()


# ---------------------------------------------------------------------------------------------
# Datadog APM test agent


class DDAgent:
    """ddapm-test-agent on 127.0.0.1:<port>, every trace check on, failures pooled."""

    def __init__(self, port=None, env=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="ddagent-")
        self.log_path = os.path.join(self.workdir, "agent.log")
        self.extra_env = dict(env or {})
        self.proc = None
        self.start()

    def start(self, timeout=30):
        env = dict(os.environ, DD_POOL_TRACE_CHECK_FAILURES="true", LOG_LEVEL="WARNING",
                   VCR_CASSETTES_DIRECTORY=os.path.join(self.workdir, "vcr"),
                   SNAPSHOT_DIR=os.path.join(self.workdir, "snapshots"))
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ddagent_main.py"), "--port", str(self.port)],
                                     cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ddapm-test-agent exited:\n" + self.output())
            try:
                if requests.get(self.url + "/info", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("ddapm-test-agent did not start:\n" + self.output())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def close(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-8000:]
        except OSError:
            return ""

    @property
    def enabled_checks(self):
        with open(os.path.join(self.workdir, "enabled_checks")) as f:
            return f.read().split(",")

    # -- sessions: everything received since the last start_session()

    def start_session(self, rate_by_service=None):
        """Starts a new session (what the session endpoints return starts here), sets the
        `rate_by_service` the agent answers with, and clears check results."""
        params = {"agent_sample_rate_by_service": json.dumps(rate_by_service or {})}
        r = requests.get(self.url + "/test/session/start", params=params, timeout=5)
        r.raise_for_status()
        requests.get(self.url + "/test/trace_check/clear", params={"clear_all": "true"}, timeout=5).raise_for_status()

    def traces(self):
        r = requests.get(self.url + "/test/session/traces", timeout=30)
        if r.status_code != 200:
            raise AssertionError(f"test agent could not return traces ({r.status_code}): {r.text[:2000]}")
        return r.json()

    def spans(self):
        return [s for t in self.traces() for s in t]

    def trace_requests(self):
        """Every trace request of the session: {method, url, headers, body (bytes)}."""
        r = requests.get(self.url + "/test/session/requests", timeout=30)
        r.raise_for_status()
        out = []
        for x in r.json():
            x["body"] = base64.b64decode(x["body"])
            if "/traces" in x["url"]:
                out.append(x)
        return out

    def span_counts(self):
        return collections.Counter(format(s["span_id"], "016x") for s in self.spans())

    def wait_for(self, predicate, timeout=15, interval=0.2):
        deadline = time.time() + timeout
        while True:
            v = predicate(self)
            if v or time.time() > deadline:
                return v
            time.sleep(interval)

    def wait_for_ids(self, ids, timeout=15):
        """Waits until every span id (16 hex digits) arrived; returns those still missing."""
        ids = set(ids)
        have = set()

        def done(a):
            nonlocal have
            have = set(a.span_counts())
            return ids <= have
        self.wait_for(done, timeout)
        return ids - have

    def check_failures(self):
        """The text of every failed trace check since start_session() ('' when none)."""
        r = requests.get(self.url + "/test/trace_check/failures", params={"return_all": "true"}, timeout=10)
        return "" if r.status_code == 200 else r.text

    def check_summary(self):
        r = requests.get(self.url + "/test/trace_check/summary", params={"return_all": "true"}, timeout=10)
        r.raise_for_status()
        return r.json()

    def assert_checks_passed(self, required=("trace_count_header", "meta_tracer_version_header", "trace_content_length")):
        """No check failed since start_session(), and each of `required` ran and passed."""
        failures = self.check_failures()
        assert not failures, "Datadog test agent trace checks failed:\n" + failures[:4000]
        summary = self.check_summary()
        for name in required:
            res = summary.get(name, {})
            assert res.get("Passed_Checks", 0) > 0 and res.get("Failed_Checks", 0) == 0, (name, summary)
