"""Issue 15, hostile HTTP/1.1 clients and hostile payloads against a real relay process, each
measured with a well-behaved client alongside (hostile_support.measure): it keeps >= 80 % of
its baseline rate with no error, the relay's peak RSS stays within the bound stated by each
case, and the relay keeps running.

Already covered elsewhere and not repeated here: the gzip bomb of tiny spans (413
too_many_spans, test_hostile_ingest.py), the in-process framing and back-pressure tests
(Tests/TransportTests/HostileHTTP1*.swift) and the connection-limit unit test
(ConnectionLimitTests.swift).

Run: TRACERELAY_BIN=… .venv/bin/python -m pytest -q -s Tests/e2e/test_hostile_h1.py
(HOSTILE_LONG=1 for 10 s attacks, 9,000 idle connections, and the slowloris case waiting for
the relay's 10 s header-read timeout.)
"""
import collections
import functools
import gzip
import resource
import select
import socket
import threading
import time
import zlib

import msgpack
import pytest
import requests

import hostile_support as hs
from hostile_support import Bench, check, connect, h1_statuses, hostile, measure, read_until_closed, run_case


@pytest.fixture(scope="module")
def bench():
    b = Bench()
    yield b
    assert b.close() == 0, "the relay should exit 0 on SIGTERM"


def exchange(port, raw, timeout=3.0):
    """Sends `raw` on a new connection; (statuses of the answers, whether the relay closed)."""
    s = connect(port)
    try:
        try:
            s.sendall(raw)
        except OSError:  # the relay answered and closed before taking it all
            pass
        data, closed = read_until_closed(s, timeout)
        return h1_statuses(data), closed
    finally:
        s.close()


def repeat_until(deadline, cases, run):
    """Runs `run(case)` for each case in turn until `deadline`; {case name: Counter of results}."""
    seen = {name: collections.Counter() for name, *_ in cases}
    while time.time() < deadline:
        for case in cases:
            seen[case[0]][run(case)] += 1
    return seen


def assert_only(seen, allowed):
    """Every case gave one of its allowed results, at least once."""
    for name, results in seen.items():
        assert results and set(results) <= allowed[name], f"{name}: allowed {allowed[name]}, got {dict(results)}"


def raw_requests(bench, case_name, cases, rss_bound_mb):
    """An attack of raw requests (name, bytes, allowed statuses), each on a new connection, in turn
    until the window ends; each must get one answer with an allowed status, then the connection
    closed."""
    def run(case):
        statuses, closed = exchange(bench.port, case[1])
        return (tuple(statuses), closed)

    out = run_case(bench, case_name, lambda deadline: repeat_until(deadline, cases, run), rss_bound_mb)
    assert_only(out.detail, {name: {((s,), True) for s in allowed} for name, _, allowed in cases})


# --- HTTP/1.1 -------------------------------------------------------------------------------------

def test_slowloris(bench):
    # 8 connections each sending one byte of a request head per second. The relay's header-read
    # timeout (10 s, whole head) ends them with 408; the short run only checks they do no harm.
    head = b"POST /api/v2/spans HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nX-Slow: " + b"s" * 64
    secs = 12.5 if hs.LONG else hs.ATTACK_SECS
    result = {}

    def attack(deadline):
        socks = [connect(bench.port) for _ in range(8)]
        got = [b""] * len(socks)
        closed = [False] * len(socks)
        i = 0
        while time.time() < deadline and not all(closed):
            for k, s in enumerate(socks):
                if not closed[k]:
                    try:
                        s.send(head[i % len(head):i % len(head) + 1])
                    except OSError:
                        closed[k] = True
            i += 1
            end = time.time() + 1.0  # one byte a second: pace the attack, reading what comes back
            while time.time() < end:
                live = [s for k, s in enumerate(socks) if not closed[k]]
                r, _, _ = select.select(live, [], [], end - time.time())
                if not r:
                    break
                for s in r:
                    k = socks.index(s)
                    try:
                        chunk = s.recv(4096)
                    except OSError:
                        chunk = b""
                    got[k] += chunk
                    closed[k] = closed[k] or not chunk
        for s in socks:
            s.close()
        result.update(bytes_sent=i, closed=sum(closed), statuses=[h1_statuses(g) for g in got])
        return dict(result)

    out = run_case(bench, "h1 slowloris", attack, secs=secs, rss_bound_mb=16)
    assert all(st in ([], [408]) for st in result["statuses"]), result
    if hs.LONG:
        assert result["closed"] == 8 and all(st == [408] for st in result["statuses"]), result


SMUGGLED = b"GET /health HTTP/1.1\r\nHost: relay\r\n\r\n"
SPAN = b'[{"traceId":"1","id":"1","name":"s"}]'


def post_head(*fields, version=b"HTTP/1.1", eol=b"\r\n"):
    lines = [b"POST /api/v2/spans " + version, b"Host: relay", b"Content-Type: application/json", *fields]
    return eol.join(lines) + eol + eol


def test_smuggling_variants(bench):
    # Each framing ambiguity gets one refusal (400, or 501 for an unsupported transfer coding)
    # and the connection closed: the request smuggled behind it is never answered.
    chunked = b"5\r\n[{}]x\r\n0\r\n\r\n"
    cases = [
        ("CL+TE", post_head(b"Content-Length: 4", b"Transfer-Encoding: chunked") + chunked + SMUGGLED, {400}),
        ("TE+CL", post_head(b"Transfer-Encoding: chunked", b"Content-Length: 4") + chunked + SMUGGLED, {400}),
        ("duplicate CL", post_head(b"Content-Length: 2", b"Content-Length: 40") + b"[]" + SMUGGLED, {400}),
        ("CL list", post_head(b"Content-Length: 2, 40") + b"[]" + SMUGGLED, {400}),
        ("obs-fold", post_head(b"Content-Length: 2", b"X-Fold: a", b" b") + b"[]" + SMUGGLED, {400}),
        ("obs-fold TE", post_head(b"Transfer-Encoding:", b" chunked") + chunked + SMUGGLED, {400}),
        ("bare LF", post_head(b"Content-Length: 2", eol=b"\n") + b"[]" + SMUGGLED, {400}),
        ("TE chunked, identity", post_head(b"Transfer-Encoding: chunked, identity") + chunked + SMUGGLED, {400, 501}),
        ("TE in HTTP/1.0", post_head(b"Connection: keep-alive", b"Transfer-Encoding: chunked", version=b"HTTP/1.0")
         + chunked + SMUGGLED, {400}),
        ("space before colon", post_head(b"Transfer-Encoding : chunked", b"Content-Length: 2") + b"[]" + SMUGGLED,
         {400}),
    ]

    raw_requests(bench, "h1 smuggling variants", cases, rss_bound_mb=16)


def test_oversized_request_line_and_headers(bench):
    # Over the limits (request line 8 KiB → 414, head 64 KiB or 100 fields → 431) the relay
    # answers once and closes, without reading a megabyte-long line to its end.
    cases = [
        ("request line 9 KB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: relay\r\n\r\n", {414}),
        ("request line 1 MB, no end", b"GET /" + b"a" * (1 << 20), {414}),
        ("one 70 KB header", post_head(b"X-Big: " + b"b" * 70_000, b"Content-Length: 2") + b"[]", {431}),
        ("70 headers of 1 KB",
         post_head(*[b"X-H%d: " % i + b"h" * 1000 for i in range(70)], b"Content-Length: 2") + b"[]", {431}),
        ("150 small headers", post_head(*[b"X-H%d: 1" % i for i in range(150)], b"Content-Length: 2") + b"[]", {431}),
        ("header line 1 MB, no end", post_head()[:-2] + b"X-Endless: " + b"e" * (1 << 20), {431}),
    ]

    raw_requests(bench, "h1 oversized line and headers", cases, rss_bound_mb=16)


def test_invalid_methods(bench):
    # Bytes that are not a method → 400 and close; well-formed but unknown or lowercase
    # methods → a 4xx (never served as a POST, never a 5xx).
    tail = b" /api/v2/spans HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]"
    refused = {400}
    unknown = {400, 404, 405, 501}
    cases = [
        ("G@T", b"G@T" + tail, refused),
        ("NUL in method", b"PO\x00ST" + tail, refused),
        ("leading space", b" POST" + tail, refused),
        ("TLS record bytes", b"\x16\x03\x01\x02\x00" + tail, refused),
        ("UTF-8 method", "PÖST".encode() + tail, refused),
        ("no method", tail[1:], refused),
        ("lowercase post", b"post" + tail, unknown),
        ("BREW", b"BREW" + tail, unknown),
        ("9 KB method", b"P" * 9000 + tail, {400, 414, 501}),
        ("HTTP/2.0 version", b"POST /api/v2/spans HTTP/2.0\r\nHost: relay\r\n\r\n", {400, 505}),
    ]

    raw_requests(bench, "h1 invalid methods", cases, rss_bound_mb=16)


# Was a fairness defect with maxRequestsPerTurn = 8 (each pipelining connection got 8 requests a
# turn against the good client's one: 0.29-0.54 of its rate in debug builds); with 2 it keeps ≈ 0.91.
def test_pipelining_flood(bench, monkeypatch):
    # 50 connections pipeline span POSTs without reading an answer (up to 16 MiB of requests each,
    # the benchmark's "noread" probe); the relay stops reading them once their unread answers
    # pass its output bound, so its memory stays bounded. Alongside, one connection pipelines
    # 2,000 requests in one write and then reads: it gets all 2,000 answers.
    monkeypatch.setenv("NOREAD_CONNS", "50")
    monkeypatch.setenv("NOREAD_BYTES", str(16 << 20))
    monkeypatch.setenv("NOREAD_HOLD", "0.8")
    n = 2000
    req = (b"POST /api/v2/spans HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(SPAN)) + SPAN
    pipelined = {}

    def reader():
        s = connect(bench.port)
        s.sendall(req * n)
        data = bytearray()
        end = time.time() + 30
        while time.time() < end and data.count(b"HTTP/1.1 ") < n:
            r, _, _ = select.select([s], [], [], 1)
            if r:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
        s.close()
        pipelined["statuses"] = collections.Counter(h1_statuses(bytes(data)))

    def attack(deadline):
        st = hostile.Stats()
        t = threading.Thread(target=reader)
        t.start()
        hostile.probe_noread(hs.HOST, bench.port, deadline, st)
        t.join()
        return dict(st.c, pipelined=dict(pipelined["statuses"]))

    out = measure(bench, "h1 pipelining flood", attack)
    assert out.detail["connections"] == 50 and out.detail.get("connect_error", 0) == 0, out.detail
    assert pipelined["statuses"] == {202: n}, pipelined
    # Bound: 50 × (1 MiB of unsent answers + 512 KiB read budget) ≈ 75 MB; measured +2 to +9 MB.
    check(out, rss_bound_mb=80)


def open_idle(port, count):
    """`count` connections that send nothing; the open sockets and how many failed to connect."""
    socks, failed = [], 0
    for _ in range(count):
        try:
            s = socket.create_connection((hs.HOST, port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            failed += 1
    return socks, failed


def closed_by_peer(socks, timeout):
    """Which of `socks` the peer closes within `timeout` (waits until all or the timeout); poll,
    not select, which cannot watch descriptors past 1024."""
    gone = set()
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    end = time.time() + timeout
    while time.time() < end and len(gone) < len(socks):
        for fd, _ in poller.poll(100):
            s = by_fd[fd]
            try:
                if s.recv(1) != b"":
                    continue
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                pass
            gone.add(s)
            poller.unregister(fd)
    return gone


def test_idle_connections_past_the_limit():
    # --max-connections 200, the well-behaved client connected first, then 400 idle
    # connections: about 200 are closed at once and counted, the rest stay open, the
    # well-behaved client keeps working, and once they go a new connection is served.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= 1024, f"ulimit -n is {soft}"
    b = Bench(["--max-connections", "200"])
    try:
        refused_before = b.metric("tracerelay_http_connections_refused_total")
        seen = {}

        def attack(deadline):
            socks, failed = open_idle(b.port, 400)
            # Settle: the refused ones see EOF at once; wait for the count to stop changing.
            gone = closed_by_peer(socks, 1.5)
            time.sleep(max(0, deadline - time.time()))  # hold the rest until the window ends
            gone |= closed_by_peer([s for s in socks if s not in gone], 0.1)
            seen.update(ulimit_n=soft, opened=len(socks), connect_failed=failed, closed_at_once=len(gone),
                        held=len(socks) - len(gone))
            for s in socks:
                s.close()
            return dict(seen)

        run_case(b, "h1 400 idle connections, --max-connections 200", attack, rss_bound_mb=16)
        refused = b.metric("tracerelay_http_connections_refused_total") - refused_before
        assert seen["connect_failed"] == 0, seen
        # 200 slots: the good client holds one (the admin listener may count too).
        assert 190 <= seen["held"] <= 199, seen
        assert seen["closed_at_once"] == 400 - seen["held"], seen
        assert refused >= seen["closed_at_once"], (refused, seen)
        # The slots free up again once the idle connections are gone.
        deadline = time.time() + 5
        while True:
            try:
                r = requests.post(b.relay.url + "/api/v2/spans", data=SPAN, timeout=2,
                                  headers={"Content-Type": "application/json"})
                break
            except requests.ConnectionError:
                assert time.time() < deadline, "no new connection served after the idle ones closed"
        assert r.status_code == 202
    finally:
        assert b.close() == 0


def test_thousands_of_idle_connections(bench):
    # Under the default limit (10,000): 3,000 idle connections (9,000 with HOSTILE_LONG) all stay
    # open and cost the relay little memory each.
    count = 9000 if hs.LONG else 3000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 200:
        pytest.skip(f"ulimit -n is {soft}; {count} connections need more")
    seen = {}

    def attack(deadline):
        socks, failed = open_idle(bench.port, count)
        time.sleep(max(0, deadline - time.time()))  # hold them through the window
        gone = closed_by_peer(socks, 0.1)
        seen.update(opened=len(socks), connect_failed=failed, closed=len(gone))
        for s in socks:
            s.close()
        return dict(seen)

    # Bound: 4 KiB a connection (an idle one holds no buffers; 3,000 measured +0.8 MB).
    run_case(bench, f"h1 {count} idle connections", attack, rss_bound_mb=count * 4 / 1024)
    assert seen == {"opened": count, "connect_failed": 0, "closed": 0}, seen


# --- payloads -------------------------------------------------------------------------------------

def post_loop(port, cases):
    """An attack: POSTs each case (name, path, body, headers) in turn on one keep-alive session
    until the deadline; {name: Counter of statuses}, with the slowest answer in seconds."""
    def attack(deadline):
        s = requests.Session()
        seen = {name: collections.Counter() for name, *_ in cases}
        slowest = collections.Counter()
        while time.time() < deadline:
            for name, path, body, headers in cases:
                t = time.monotonic()
                try:
                    r = s.post(f"http://{hs.HOST}:{port}{path}", data=body, headers=headers, timeout=10)
                    seen[name][r.status_code] += 1
                except requests.RequestException as e:
                    seen[name][type(e).__name__] += 1
                    s = requests.Session()
                slowest[name] = max(slowest[name], round(time.monotonic() - t, 3))
        return dict(seen, slowest_s=dict(slowest))
    return attack


MSGPACK = {"Content-Type": "application/msgpack"}
REAL_STATUS = dict(MSGPACK, **{"Datadog-Send-Real-Http-Status": "true"})
DEEP = 100_000


def test_hostile_msgpack(bench):
    # Datadog v0.4 / v0.5 bodies claiming 2^32-1 elements, nested 100k deep, or truncated: 400
    # in bounded time and memory (nothing is sized from a claimed count).
    max32 = b"\xff\xff\xff\xff"
    v04 = [
        ("v0.4 traces array32 2^32-1", b"\xdd" + max32),
        ("v0.4 spans array32 2^32-1", b"\x91\xdd" + max32),
        ("v0.4 span map32 2^32-1", b"\x91\x91\xdf" + max32),
        ("v0.4 meta map32 2^32-1", b"\x91\x91\x81\xa4meta\xdf" + max32),
        ("v0.4 nested arrays 100k", b"\x91" * DEEP + b"\xc0"),
        ("v0.4 unknown field nested 100k", b"\x91\x91\x81\xa1x" + b"\x91" * DEEP + b"\xc0"),
        ("v0.4 str32 truncated", b"\x91\x91\x81\xa7service\xdb" + max32 + b"abc"),
        ("v0.4 bin32 truncated", b"\x91\x91\x81\xa1x\xc6" + max32 + b"ab"),
    ]
    bad_index = msgpack.packb([["a"], [[[99, 99, 99, 1, 2, 0, 1, 1, 0, {}, {}, 99]]]])
    v05 = [
        ("v0.5 string table 2^32-1", b"\x92\xdd" + max32),
        ("v0.5 traces 2^32-1", b"\x92\x91\xa0\xdd" + max32),
        ("v0.5 span with 2^32-1 fields", b"\x92\x91\xa0\x91\x91\xdd" + max32),
        ("v0.5 truncated string", b"\x92\x91\xdb" + max32 + b"ab"),
        ("v0.5 string index out of range", bad_index),
        ("v0.5 nested 100k", b"\x92\x91\xa0" + b"\x91" * DEEP + b"\xc0"),
    ]
    cases = [(n, "/v0.4/traces", body, REAL_STATUS) for n, body in v04]
    cases += [(n, "/v0.5/traces", body, REAL_STATUS) for n, body in v05]
    out = run_case(bench, "payload msgpack 2^32 / deep / truncated", post_loop(bench.port, cases), rss_bound_mb=16)
    assert max(out.detail["slowest_s"].values()) < 2, out.detail
    assert_only({n: out.detail[n] for n, *_ in cases}, {n: {400} for n, *_ in cases})


def test_json_nested_100k_deep(bench):
    # JSON nested 100,000 deep on every JSON endpoint → 400 in bounded time and memory.
    def deep(prefix, opener, closer, suffix):
        return prefix + opener * DEEP + closer * DEEP + suffix
    json_h = {"Content-Type": "application/json"}
    cases = [
        ("zipkin v2 arrays", "/api/v2/spans", deep(b"", b"[", b"]", b""), json_h),
        ("zipkin v2 tags objects", "/api/v2/spans", deep(b'[{"traceId":"1","id":"1","tags":', b'{"a":', b"}", b"}]")
         .replace(b'{"a":}', b'{"a":1}'), json_h),
        ("zipkin v2 unknown field", "/api/v2/spans", deep(b'[{"traceId":"1","id":"1","x":', b"[", b"]", b"}]"), json_h),
        ("zipkin v1 arrays", "/api/v1/spans", deep(b"", b"[", b"]", b""), json_h),
        ("datadog v0.3 arrays", "/v0.3/traces", deep(b"", b"[", b"]", b""), json_h),
    ]
    out = run_case(bench, "payload JSON nested 100k", post_loop(bench.port, cases), rss_bound_mb=32)
    assert max(out.detail["slowest_s"].values()) < 2, out.detail
    assert_only({n: out.detail[n] for n, *_ in cases}, {n: {400} for n, *_ in cases})


@functools.cache
def zeros_bomb(kind, mib=256):
    """`mib` MiB of zeros compressed with `kind` (gzip, deflate (zlib), zstd via RLE blocks)."""
    if kind == "zstd":
        return zstd_frame(window_descriptor=7 << 3, blocks=mib * 8)
    c = zlib.compressobj(9, zlib.DEFLATED, 31 if kind == "gzip" else 15)
    chunk = bytes(1 << 20)
    return b"".join(c.compress(chunk) for _ in range(mib)) + c.flush()


def zstd_frame(window_descriptor, blocks):
    """A zstd frame (RFC 8878) with the given Window_Descriptor byte, no content size, and
    `blocks` RLE blocks of 128 KiB zeros each: a few bytes a block."""
    rle = lambda last: ((128 << 10) << 3 | 1 << 1 | last).to_bytes(3, "little") + b"\x00"  # noqa: E731
    return (b"\x28\xb5\x2f\xfd" + bytes([0x00, window_descriptor])
            + b"".join(rle(0) for _ in range(blocks - 1)) + rle(1))


def test_decompression_bombs(bench):
    # 413 for every bomb, fast, with the relay's peak RSS bounded: a zstd frame declaring a
    # 2^41 (and a 2^28) byte window, 256 MiB of zeros as gzip, deflate and zstd, the gzip bomb
    # gzipped again (`gzip, gzip`) and zstd-then-gzip; four layers are refused outright (415).
    json_h = {"Content-Type": "application/json"}
    gz = zeros_bomb("gzip")
    cases = [
        ("zstd window 2^41", zstd_frame(0xF8, 4), "zstd", {413}),
        ("zstd window 2^28", zstd_frame(18 << 3, 4), "zstd", {413}),
        ("gzip 256 MiB zeros", gz, "gzip", {413}),
        ("deflate 256 MiB zeros", zeros_bomb("deflate"), "deflate", {413}),
        ("zstd 256 MiB zeros", zeros_bomb("zstd"), "zstd", {413}),
        ("gzip, gzip", gzip.compress(gz, 9), "gzip, gzip", {413}),
        ("zstd then gzip", gzip.compress(zeros_bomb("zstd"), 9), "zstd, gzip", {413}),
        ("gzip ×4 layers", gzip.compress(gzip.compress(gzip.compress(gzip.compress(SPAN)))), "gzip, gzip, gzip, gzip",
         {415}),
    ]
    reqs = [(n, "/api/v2/spans", body, dict(json_h, **{"Content-Encoding": enc})) for n, body, enc, _ in cases]
    # Bounds: one body inflates to at most 100 MiB (here 200 × the wire size: 52 MB for the gzip
    # bomb), measured peak +50 to +54 MB; the slowest answer (the gzip bomb, inflated to that cap
    # with its spans counted on the way) 0.4 s in release, 1.7 s in debug on a loaded machine.
    out = run_case(bench, "payload decompression bombs", post_loop(bench.port, reqs), rss_bound_mb=128)
    assert max(out.detail["slowest_s"].values()) < 5, out.detail
    assert_only({n: out.detail[n] for n, *_ in cases}, {n: allowed for n, _, _, allowed in cases})
