#!/usr/bin/env python3
"""Helpers for Benchmarks/pipeline.sh (standard library only).

  bench.py payloads DIR FIXTURES N     write N distinct 500-span bodies per format into DIR:
                                       zipkin-<i>.json (Envoy-shaped Zipkin v2 JSON, 15 tags),
                                       zipkinc-<i>.json (the same with localEndpoint.port 8080) and
                                       dd-<i>.msgpack (the ddtrace 4.16 v0.4 capture, replicated with
                                       fresh ids); prints "zipkin_bytes dd_bytes dd_traces"
  bench.py status ADMIN                print /status as compact JSON (GET http://ADMIN/status)
  bench.py wait-drained ADMIN BACKEND SECONDS
                                       wait until BACKEND sent (or dropped) every span routed to it
                                       and its queue is empty; prints "drained <s>" or "timeout"
  bench.py summary ADMIN BACKEND       prints "ingest_spans rejected_requests sent_spans sent_bytes
                                       dropped retried disk_bytes" (BACKEND '-': a discard backend)
  bench.py access-log FILE OFFSET      sums nginx's log after byte OFFSET: "requests 2xx non2xx
                                       content_length_sum"
  bench.py perf-groups                 reads `perf script` (demangled) on stdin, prints the share
                                       of each pipeline stage (innermost stage on the call chain)
"""
import json, os, random, re, struct, sys, time, urllib.request

SPANS_PER_BODY = int(os.environ.get("SPANS_PER_BODY", "500"))

# ---------------------------------------------------------------- Zipkin: Envoy sidecar spans
SERVICES = ["orders", "payments", "catalog", "frontend", "cart", "shipping", "users", "search"]

def envoy_span(rnd, trace_id, parent, span_id, i, port=0):
    svc = SERVICES[i % len(SERVICES)]
    up = SERVICES[(i + 3) % len(SERVICES)]
    ip = "10.%d.%d.%d" % (rnd.randint(0, 3), rnd.randint(0, 255), rnd.randint(1, 254))
    s = {"traceId": trace_id, "parentId": parent, "id": span_id,
         "kind": "CLIENT" if i % 2 else "SERVER", "name": "%s_default_svc_8080" % up,
         "timestamp": 1700000000000000 + rnd.randint(0, 10**9), "duration": rnd.randint(100, 900000),
         "localEndpoint": {"serviceName": "%s_default_svc_8080" % svc, "ipv4": ip, "port": port},
         "tags": {  # the 15 tags Envoy's HTTP connection manager puts on a span
             "component": "proxy",
             "downstream_cluster": "-",
             "guid:x-request-id": "%08x-%04x-4%03x-a%03x-%012x" % (rnd.getrandbits(32), rnd.getrandbits(16), rnd.getrandbits(12), rnd.getrandbits(12), rnd.getrandbits(48)),
             "http.method": "GET" if i % 3 else "POST",
             "http.protocol": "HTTP/1.1",
             "http.status_code": "200" if i % 17 else "503",
             "http.url": "http://%s:8080/api/v1/%s/%d" % (up, up, rnd.randint(1, 99999)),
             "node_id": "default.%s-5d8f9c-%05x.kuma-demo" % (svc, rnd.getrandbits(20)),
             "peer.address": ip,
             "request_size": str(rnd.randint(0, 4000)),
             "response_flags": "-" if i % 17 else "UF",
             "response_size": str(rnd.randint(0, 40000)),
             "upstream_cluster": "%s_default_svc_8080" % up,
             "upstream_cluster.name": "%s_default_svc_8080" % up,
             "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
         }}
    if parent is None:
        del s["parentId"]
    return s

def zipkin_body(seed, port=0):
    """Envoy writes its local address with "port":0 (which Zipkin reads as absent); port=8080
    gives the same spans in the form the relay forwards as their original bytes."""
    rnd = random.Random(seed)
    spans = []
    while len(spans) < SPANS_PER_BODY:  # traces of 5 spans: a root and 4 children
        tid = "%032x" % rnd.getrandbits(128)
        root = "%016x" % rnd.getrandbits(64)
        for k in range(min(5, SPANS_PER_BODY - len(spans))):
            sid = root if k == 0 else "%016x" % rnd.getrandbits(64)
            spans.append(envoy_span(rnd, tid, None if k == 0 else root, sid, len(spans), port))
    return json.dumps(spans, separators=(",", ":")).encode()

# ---------------------------------------------------------------- MessagePack (just what v0.4 uses)
def mp_decode(b, i=0):
    t = b[i]
    if t <= 0x7f: return t, i + 1
    if 0x80 <= t <= 0x8f: return mp_map(b, i + 1, t & 0x0f)
    if 0x90 <= t <= 0x9f: return mp_arr(b, i + 1, t & 0x0f)
    if 0xa0 <= t <= 0xbf: n = t & 0x1f; return b[i+1:i+1+n].decode(), i + 1 + n
    if t >= 0xe0: return t - 256, i + 1
    if t == 0xc0: return None, i + 1
    if t == 0xc2: return False, i + 1
    if t == 0xc3: return True, i + 1
    if t == 0xca: return struct.unpack(">f", b[i+1:i+5])[0], i + 5
    if t == 0xcb: return struct.unpack(">d", b[i+1:i+9])[0], i + 9
    fmt = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q", 0xd0: ">b", 0xd1: ">h", 0xd2: ">i", 0xd3: ">q"}
    if t in fmt:
        n = struct.calcsize(fmt[t]); return struct.unpack(fmt[t], b[i+1:i+1+n])[0], i + 1 + n
    if t in (0xd9, 0xda, 0xdb):
        w = {0xd9: 1, 0xda: 2, 0xdb: 4}[t]; n = int.from_bytes(b[i+1:i+1+w], "big")
        return b[i+1+w:i+1+w+n].decode(), i + 1 + w + n
    if t in (0xdc, 0xdd):
        w = 2 if t == 0xdc else 4; return mp_arr(b, i + 1 + w, int.from_bytes(b[i+1:i+1+w], "big"))
    if t in (0xde, 0xdf):
        w = 2 if t == 0xde else 4; return mp_map(b, i + 1 + w, int.from_bytes(b[i+1:i+1+w], "big"))
    raise ValueError("msgpack type 0x%02x" % t)

def mp_arr(b, i, n):
    out = []
    for _ in range(n):
        v, i = mp_decode(b, i); out.append(v)
    return out, i

def mp_map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = mp_decode(b, i); v, i = mp_decode(b, i); out[k] = v
    return out, i

UINT64_KEYS = {"trace_id", "span_id", "parent_id"}

def mp_encode(v, out, key=None):
    if v is None: out.append(0xc0)
    elif v is True: out.append(0xc3)
    elif v is False: out.append(0xc2)
    elif isinstance(v, int):
        if key in UINT64_KEYS: out.append(0xcf); out += struct.pack(">Q", v)
        elif 0 <= v <= 0x7f: out.append(v)
        elif -32 <= v < 0: out.append(v + 256)
        elif v >= 0 and v < 1 << 32: out.append(0xce); out += struct.pack(">I", v)
        else: out.append(0xd3); out += struct.pack(">q", v)
    elif isinstance(v, float): out.append(0xcb); out += struct.pack(">d", v)
    elif isinstance(v, str):
        s = v.encode(); n = len(s)
        if n < 32: out.append(0xa0 | n)
        elif n < 256: out += bytes([0xd9, n])
        elif n < 65536: out.append(0xda); out += struct.pack(">H", n)
        else: out.append(0xdb); out += struct.pack(">I", n)
        out += s
    elif isinstance(v, list):
        n = len(v)
        if n < 16: out.append(0x90 | n)
        elif n < 65536: out.append(0xdc); out += struct.pack(">H", n)
        else: out.append(0xdd); out += struct.pack(">I", n)
        for x in v: mp_encode(x, out)
    elif isinstance(v, dict):
        n = len(v)
        if n < 16: out.append(0x80 | n)
        elif n < 65536: out.append(0xde); out += struct.pack(">H", n)
        else: out.append(0xdf); out += struct.pack(">I", n)
        for k, x in v.items(): mp_encode(k, out); mp_encode(x, out, k)
    else: raise TypeError(type(v))

def dd_body(template, seed):
    """The captured ddtrace traces, copied until SPANS_PER_BODY spans, each copy with fresh
    128-bit trace ids (low 64 bits in trace_id, high in meta _dd.p.tid), span ids and times."""
    rnd = random.Random(seed)
    traces, n = [], 0
    while n < SPANS_PER_BODY:
        for tr in template:
            if n >= SPANS_PER_BODY: break
            tid, hi = rnd.getrandbits(64), "%08x00000000" % rnd.getrandbits(32)
            ids = {s["span_id"]: rnd.getrandbits(64) for s in tr}
            shift = rnd.randint(0, 10**12)
            copy = []
            for s in tr[:SPANS_PER_BODY - n]:
                c = dict(s); c["meta"] = dict(s.get("meta", {}))
                c["trace_id"] = tid; c["span_id"] = ids[s["span_id"]]
                c["parent_id"] = ids.get(s.get("parent_id", 0), 0)
                c["start"] = s["start"] + shift
                if "_dd.p.tid" in c["meta"]: c["meta"]["_dd.p.tid"] = hi
                copy.append(c)
            traces.append(copy); n += len(copy)
    out = bytearray(); mp_encode(traces, out)
    return bytes(out), len(traces)

def payloads(d, fixtures, count):
    os.makedirs(d, exist_ok=True)
    raw = open(os.path.join(fixtures, "datadog", "ddtrace_v04.msgpack"), "rb").read()
    template, end = mp_decode(raw)
    assert end == len(raw), "trailing bytes in the fixture"
    # Sanity: our encoder reproduces a decodable equivalent of the capture.
    again = bytearray(); mp_encode(template, again); assert mp_decode(bytes(again))[0] == template
    zb = db = traces = 0
    for i in range(count):
        z = zipkin_body(1000 + i); open(os.path.join(d, "zipkin-%d.json" % i), "wb").write(z)
        open(os.path.join(d, "zipkinc-%d.json" % i), "wb").write(zipkin_body(1000 + i, 8080))
        b, traces = dd_body(template, 2000 + i); open(os.path.join(d, "dd-%d.msgpack" % i), "wb").write(b)
        zb, db = len(z), len(b)
    print(zb, db, traces)

# ---------------------------------------------------------------- relay /status
def status(admin):
    with urllib.request.urlopen("http://%s/status" % admin, timeout=5) as r:
        return json.loads(r.read())

def counts(st, backend):
    """Spans accepted (answered 2xx) at ingest, requests refused (429), the backend's counters."""
    ingest = sum(v["spans"] for v in st["ingest"].values())
    rejected = sum(v["rejected_requests"] for v in st["ingest"].values())
    b = st["backends"].get(backend) if backend != "-" else None
    return ingest, rejected, b

def wait_drained(admin, backend, seconds):
    t0 = time.time()
    while time.time() - t0 < seconds:
        # Every accepted span must be sent or dropped (one backend, no sampling: accepted = routed
        # to it; /status's routing.routed also counts spans of requests the queue then refused).
        ingest, _, b = counts(status(admin), backend)
        if b is None:
            print("drained 0"); return
        q = b["queue"]
        done = b["sent_spans"] + b["dropped_spans"] + sum(q["dropped_spans"].values())
        if done >= ingest and q["records"] == 0 and q["in_flight"] == 0:
            print("drained %.1f" % (time.time() - t0)); return
        time.sleep(0.1)
    print("timeout")

def summary(admin, backend):
    st = status(admin)
    ingest, rejected, b = counts(st, backend)
    if b is None:
        print(ingest, rejected, 0, 0, 0, 0, 0); return
    q = b["queue"]
    print(ingest, rejected, b["sent_spans"], b["sent_bytes"], b["dropped_spans"] + sum(q["dropped_spans"].values()),
          b["retried_spans"], q["disk_bytes"])

# ---------------------------------------------------------------- nginx access log
def access_log(path, offset):
    n = ok = bad = total = 0
    with open(path, "rb") as f:
        f.seek(int(offset))
        for line in f:
            parts = line.split()
            if len(parts) < 2: continue
            n += 1
            if parts[0].startswith(b"2"):
                ok += 1; total += int(parts[1]) if parts[1].isdigit() else 0
            else: bad += 1
    print(n, ok, bad, total)

# ---------------------------------------------------------------- perf grouping
# Each sample goes to the innermost stage found on its call chain (leaf → root), so memcpy, ARC
# and malloc count for the stage that called them; samples whose leaf is in the kernel are
# "kernel", split by the stage that made the system call (or took the page fault).
STAGES = [
    ("compression", r"Compressor|ZSTD_|deflate|libz\.so|libzstd"),
    ("encoding/joining", r"ZipkinJSONV2\.encode|ZipkinProto3\.encode|DatadogV04\.encode|BackendEncoder|JSONWriter|MessagePackWriter|Payload\.join|DatadogMapping|MsgpackArray"),
    ("JSON decoder", r"ZipkinJSONV[12]\.decode|JSONReader|ZipkinIDs|parseHex"),
    ("Datadog decoder", r"DatadogV0[3457]\.decode|MessagePackReader|DatadogSpanBuilder"),
    ("content decoding", r"ContentDecoding|ZlibInflater|ZstdDecompressor"),
    ("queue/spill", r"BackendQueue|Buffering|SpillFileSystem|SegmentFormat|Ledger"),
    ("routing", r"RoutingConsumer|Router\.|RoutingTable|RequestTags|TagResolver"),
    ("client I/O (outbound)", r"HTTPClient|ClientConnection|HTTP[12]ClientEngine|HTTPSender|BackendExporter"),
    ("server I/O (ingest HTTP/2, HTTP/1.1)", r"HTTP2ServerEngine|HTTP1Engine|Connection\.|nghttp2|EpollPoller|IngestEndpoints|HTTPServer|Acceptor"),
    ("libdispatch/threads", r"libdispatch|_dispatch|start_thread"),
]

def perf_groups():
    """Reads `perf script` output (demangled) on stdin."""
    rx = [(n, re.compile(r)) for n, r in STAGES]
    total = 0; groups = {}; kernel = {}; leaves = {}
    def flush(frames):
        nonlocal total
        if not frames: return
        total += 1
        leaf_sym, leaf_dso = frames[0]
        in_kernel = "kernel" in leaf_dso
        stage = "other"
        for sym, dso in frames:
            if "kernel" in dso: continue
            key = sym + " " + dso
            hit = next((n for n, r in rx if r.search(key)), None)
            if hit: stage = hit; break
        if in_kernel and stage == "other":
            # libc's send/madvise/futex wrappers end the user stack: name the system call instead
            # (send: mostly the exporter's request bodies; madvise: glibc returning freed memory).
            names = [sym for sym, dso in frames if "kernel" in dso]
            sc = next((re.sub(r"^__x64_sys_", "", n) for n in names if n.startswith("__x64_sys_")), None)
            stage = "syscall " + sc if sc else ("page fault" if any("page_fault" in n for n in names) else "other")
        if in_kernel:
            groups["kernel"] = groups.get("kernel", 0) + 1
            kernel[stage] = kernel.get(stage, 0) + 1
        else:
            groups[stage] = groups.get(stage, 0) + 1
        k = (leaf_sym[:100], os.path.basename(leaf_dso))
        leaves[k] = leaves.get(k, 0) + 1
    frames = []
    for line in sys.stdin:
        if not line.strip():
            flush(frames); frames = []; continue
        if not line[0].isspace():
            flush(frames); frames = []; continue   # a sample's header line
        m = re.match(r"\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, m.group(2)))
    flush(frames)
    if total == 0:
        print("  no samples"); return
    print("  %d samples" % total)
    for g, n in sorted(groups.items(), key=lambda x: -x[1]):
        print("  %5.1f%%  %s" % (100.0 * n / total, g))
        if g == "kernel":
            for st, kn in sorted(kernel.items(), key=lambda x: -x[1])[:8]:
                print("           %5.1f%%  under %s" % (100.0 * kn / total, st))
    print("  top leaf symbols (self time):")
    for (sym, dso), n in sorted(leaves.items(), key=lambda x: -x[1])[:15]:
        print("  %5.1f%%  %s (%s)" % (100.0 * n / total, sym, dso))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "payloads": payloads(args[0], args[1], int(args[2]))
    elif cmd == "status": print(json.dumps(status(args[0]), separators=(",", ":")))
    elif cmd == "wait-drained": wait_drained(args[0], args[1], float(args[2]))
    elif cmd == "summary": summary(args[0], args[1])
    elif cmd == "access-log": access_log(args[0], args[1])
    elif cmd == "perf-groups": perf_groups()
    else: sys.exit(__doc__)
