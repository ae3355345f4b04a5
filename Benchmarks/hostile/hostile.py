"""Issue 10's hostile mix against a running relay, for Benchmarks/hostile-mix.sh.

Subcommands (every loop ends at a deadline or after a fixed count; loopback only):
  bomb-file PATH                 write the gzip bomb of tiny spans (gzip -1 of 4,194,294 tiny spans)
  steady URL OUT                 the well-behaved client: keep-alive POST of one small Zipkin span every
                                 20 ms until SIGTERM (or MAX_SECS); one line per request: start latency result
  rss PID OUT                    VmRSS of PID every 100 ms until PID exits or SIGTERM: "time kB"
  probe NAME HOST PORT SECS      one probe (bomb, stall-h2, stall-h1, headers-h2, hpack, noread); prints a
                                 one-line summary
  report DIR                     the table from DIR/phases.txt, steady.txt, rss.txt, probe-*.txt

Only the Python standard library, h2 and requests.
"""
import collections
import gzip
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time

TINY = b'{"traceId":"1","id":"1"}'
BOMB_SPANS = 4_194_294
DECLARED = 26_214_400  # 25 MiB
FRAME = 16_000
FRAMES = 64


def env_int(name, default):
    return int(os.environ.get(name, default))


class Stats:
    """Thread-safe counters; printed as one summary line."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.peak = collections.Counter()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def high(self, key, value):
        with self.lock:
            self.peak[key] = max(self.peak[key], value)

    def line(self, name, secs):
        with self.lock:
            parts = [f"{k}={v}" for k, v in sorted(self.c.items())]
            parts += [f"max_{k}={v}" for k, v in sorted(self.peak.items())]
        return f"{name} ({secs:.0f} s): " + " ".join(parts)


# --- the well-behaved client and the RSS sampler -------------------------------------------------

def steady(url, out):
    import requests
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    body = json.dumps([{"traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312", "name": "get",
                        "timestamp": 1700000000000000, "duration": 1200,
                        "localEndpoint": {"serviceName": "steady"}}])
    s = requests.Session()
    end = time.time() + env_int("MAX_SECS", 3600)
    with open(out, "a", buffering=1) as f:
        while not stop.is_set() and time.time() < end:
            wall, t = time.time(), time.monotonic()
            try:
                r = s.post(url + "/api/v2/spans", data=body, headers={"Content-Type": "application/json"}, timeout=5)
                result = str(r.status_code)
            except Exception as e:  # noqa: BLE001 — any failure is an error of the well-behaved client
                result = type(e).__name__
                s = requests.Session()
            lat = time.monotonic() - t
            f.write(f"{wall:.4f} {lat:.6f} {result}\n")
            stop.wait(max(0.0, 0.02 - (time.monotonic() - t)))


def rss(pid, out):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(out, "a", buffering=1) as f:
        end = time.time() + env_int("MAX_SECS", 3600)
        while not stop.is_set() and time.time() < end:
            try:
                with open(f"/proc/{pid}/status") as st:
                    kb = next(int(l.split()[1]) for l in st if l.startswith("VmRSS:"))
                with open(f"/proc/{pid}/stat") as st:
                    fields = st.read().rsplit(")", 1)[1].split()
                ticks = int(fields[11]) + int(fields[12])  # utime + stime
            except (OSError, StopIteration, IndexError, ValueError):
                return
            f.write(f"{time.time():.3f} {kb} {ticks}\n")
            stop.wait(0.1)


# --- (1) the gzip bomb of tiny spans, two at once -----------------------------------------------------

def bomb_file(path):
    if os.path.exists(path):
        return
    raw = b"[" + b",".join([TINY] * BOMB_SPANS) + b"]"
    with open(path + ".tmp", "wb") as f:
        f.write(gzip.compress(raw, compresslevel=1))
    os.rename(path + ".tmp", path)


def probe_bomb(host, port, deadline, st):
    import requests
    path = os.environ["BOMB_FILE"]
    bomb_file(path)
    payload = open(path, "rb").read()
    pause = float(os.environ.get("BOMB_PAUSE", "0.25"))

    def sender():
        s = requests.Session()
        while time.time() < deadline:
            t = time.monotonic()
            try:
                r = s.post(f"http://{host}:{port}/api/v2/spans", data=payload, timeout=30,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
                st.add(f"status_{r.status_code}")
            except Exception as e:  # noqa: BLE001
                st.add(type(e).__name__)
                s = requests.Session()
            st.high("answer_ms", round((time.monotonic() - t) * 1000))
            time.sleep(pause)

    ts = [threading.Thread(target=sender, daemon=True) for _ in range(env_int("BOMB_CONCURRENCY", 2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=max(0, deadline - time.time()) + 35)


# --- h2 connections with stalled bodies (2) and headers without data (3) -------------------------------

def connections(host, port, deadline, st, retry_after=1.0):
    """Yields a new connection to the relay until `deadline`, counted; a refused connect is
    counted and retried after `retry_after` s."""
    while time.time() < deadline:
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError:
            st.add("connect_error")
            time.sleep(retry_after)
            continue
        st.add("connections")
        yield sock


def h2_stalled(host, port, deadline, st, streams, frames, ping_every):
    """One h2c connection (prior knowledge) holding `streams` POST streams that declare 25 MiB and send
    `frames` DATA frames of 16,000 B (as flow control allows), never END_STREAM; a PING every
    `ping_every` s. Streams the relay ends are replaced (once a second at most); a closed connection is
    reopened after 1 s."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"{host}:{port}"),
               (":path", "/api/v2/spans"), ("content-type", "application/json"),
               ("content-length", str(DECLARED))]
    chunk = b"0" * FRAME
    for sock in connections(host, port, deadline, st):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        pending = {}  # stream id → body bytes still to send
        last_open = 0.0
        last_ping = time.time()
        closed = False
        try:
            sock.sendall(conn.data_to_send())
            while time.time() < deadline and not closed:
                now = time.time()
                if len(pending) < streams and now - last_open >= 1.0:
                    last_open = now
                    for _ in range(streams - len(pending)):
                        if conn.open_outbound_streams >= conn.remote_settings.max_concurrent_streams:
                            break
                        sid = conn.get_next_available_stream_id()
                        conn.send_headers(sid, headers, end_stream=False)
                        pending[sid] = frames * FRAME
                        st.add("streams_opened")
                for sid, left in list(pending.items()):
                    for _ in range(frames):  # bounded: at most `frames` frames per stream per pass
                        if left <= 0:
                            break
                        n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, FRAME, left)
                        if n <= 0:
                            break
                        try:
                            conn.send_data(sid, chunk[:n])
                        except h2.exceptions.StreamClosedError:
                            pending.pop(sid, None)
                            break
                        left -= n
                        st.add("body_bytes_sent", n)
                    if sid in pending:
                        pending[sid] = left
                if now - last_ping >= ping_every:
                    conn.ping(b"hostile!")
                    last_ping = now
                    st.add("pings")
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                st.high("streams_in_flight", len(pending))
                sel = selectors.DefaultSelector()
                sel.register(sock, selectors.EVENT_READ)
                ready = sel.select(timeout=0.2)
                sel.close()
                if not ready:
                    continue
                data = sock.recv(65536)
                if not data:
                    st.add("closed_by_relay")
                    closed = True
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        st.add("status_" + dict(ev.headers).get(":status", "?"))
                    elif isinstance(ev, h2.events.StreamReset):
                        st.add(f"rst_{ev.error_code.name if hasattr(ev.error_code, 'name') else ev.error_code}")
                        pending.pop(ev.stream_id, None)
                    elif isinstance(ev, h2.events.StreamEnded):
                        pending.pop(ev.stream_id, None)
                        try:  # the relay answered early: end our half too, so the slot frees
                            conn.reset_stream(ev.stream_id)
                        except h2.exceptions.ProtocolError:
                            pass
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        st.add(f"goaway_{ev.error_code.name if hasattr(ev.error_code, 'name') else ev.error_code}")
                        closed = True
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except (OSError, h2.exceptions.ProtocolError) as e:
            st.add(type(e).__name__)
            closed = True
        finally:
            sock.close()
        if closed and time.time() < deadline:
            time.sleep(1)


def run_threads(n, target, *args):
    ts = [threading.Thread(target=target, args=args, daemon=True) for _ in range(n)]
    for t in ts:
        t.start()
        time.sleep(0.005)
    for t in ts:
        t.join(timeout=max(0, args[2] - time.time()) + 10)  # args = (host, port, deadline, ...)


def probe_stall_h2(host, port, deadline, st):
    run_threads(env_int("STALL_CONNS", 40), h2_stalled, host, port, deadline, st,
                env_int("STALL_STREAMS", 64), FRAMES, float(os.environ.get("PING_EVERY", "20")))


def probe_headers_h2(host, port, deadline, st):
    run_threads(env_int("HEADERS_CONNS", 1), h2_stalled, host, port, deadline, st,
                env_int("HEADERS_STREAMS", 250), 0, float(os.environ.get("PING_EVERY", "20")))


# --- (2b) stalled HTTP/1.1 bodies ------------------------------------------------------------------

def h1_stalled(host, port, deadline, st):
    head = (f"POST /api/v2/spans HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {DECLARED}\r\n\r\n").encode()
    part = b"0" * (FRAMES * FRAME)
    for sock in connections(host, port, deadline, st):
        try:
            sock.sendall(head + part)
            st.add("body_bytes_sent", len(part))
            got = b""
            while time.time() < deadline:
                sock.settimeout(max(0.05, min(1.0, deadline - time.time())))
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    st.add("closed_by_relay")
                    break
                if not got:
                    st.add("status_" + data.split(b" ", 2)[1].decode(errors="replace"))
                got += data[:64]
        except OSError as e:
            st.add(type(e).__name__)
        finally:
            sock.close()
        if time.time() < deadline:
            time.sleep(1)


def probe_stall_h1(host, port, deadline, st):
    run_threads(env_int("STALL_CONNS", 40), h1_stalled, host, port, deadline, st)


# --- (4) HPACK amplification ----------------------------------------------------------------------------

def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(b):
    return hpack_int(len(b), 7) + b


def amplified_block(host, port, refs):
    """A header block: pseudo-headers, one ~4 KB literal added to the dynamic table (index 62), then
    `refs` one-byte references to it."""
    block = bytes([0x83, 0x86])  # :method POST, :scheme http
    block += b"\x04" + hpack_str(b"/api/v2/spans")  # :path, literal without indexing
    block += b"\x01" + hpack_str(f"{host}:{port}".encode())  # :authority
    block += b"\x40" + hpack_str(b"x-amp") + hpack_str(b"a" * 4000)  # 5 + 4000 + 32 ≤ 4096
    return block + b"\xbe" * refs


def frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def hpack_conn(host, port, deadline, st, refs):
    block = amplified_block(host, port, refs)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
    for sock in connections(host, port, deadline, st, retry_after=0.5):
        sock.setblocking(False)
        out = bytearray(preface)
        inbuf = bytearray()
        sid = 1
        alive = True
        try:
            while alive and time.time() < deadline:
                if len(out) < 65536 and sid < 2 ** 31 - 1:
                    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
                    for i, p in enumerate(pieces):
                        last = i == len(pieces) - 1
                        if i == 0:
                            out += frame(1, 0x1 | (0x4 if last else 0), sid, p)  # HEADERS, END_STREAM
                        else:
                            out += frame(9, 0x4 if last else 0, sid, p)  # CONTINUATION
                    sid += 2
                    st.add("blocks_queued")
                r, w = select_rw(sock, bool(out), 0.2)
                if w:
                    try:
                        n = sock.send(out)
                        del out[:n]
                        st.add("wire_bytes_sent", n)
                    except BlockingIOError:
                        pass
                if r:
                    data = sock.recv(65536)
                    if not data:
                        st.add("closed_by_relay")
                        alive = False
                        break
                    inbuf += data
                    while len(inbuf) >= 9:  # bounded: each pass consumes one whole frame
                        ln = int.from_bytes(inbuf[:3], "big")
                        if len(inbuf) < 9 + ln:
                            break
                        ftype, flags = inbuf[3], inbuf[4]
                        payload = bytes(inbuf[9:9 + ln])
                        del inbuf[:9 + ln]
                        if ftype == 4 and not flags & 1:
                            out += frame(4, 1, 0, b"")  # SETTINGS ACK
                        elif ftype == 6 and not flags & 1:
                            out += frame(6, 1, 0, payload)  # PING ACK
                        elif ftype == 3:
                            st.add(f"rst_{int.from_bytes(payload[:4], 'big')}")
                        elif ftype == 1:
                            st.add("responses")
                        elif ftype == 7:
                            st.add(f"goaway_{int.from_bytes(payload[4:8], 'big')}")
        except OSError as e:
            st.add(type(e).__name__)
        finally:
            sock.close()


def select_rw(sock, want_write, timeout):
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0))
    ready = sel.select(timeout)
    sel.close()
    ev = ready[0][1] if ready else 0
    return bool(ev & selectors.EVENT_READ), bool(ev & selectors.EVENT_WRITE)


def probe_hpack(host, port, deadline, st):
    run_threads(env_int("HPACK_CONNS", 4), hpack_conn, host, port, deadline, st, env_int("HPACK_REFS", 16000))


# --- (5) connections that never read their answers ------------------------------------------------------

def probe_noread(host, port, deadline, st):
    body = json.dumps([{"traceId": "1", "id": "1", "name": "n", "localEndpoint": {"serviceName": "noread"}}]).encode()
    req = (f"POST /api/v2/spans HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    chunk = req * 256
    cap = env_int("NOREAD_BYTES", 8 << 20)  # request bytes per connection at most
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(env_int("NOREAD_CONNS", 200)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.connect((host, port))
        except OSError:
            st.add("connect_error")
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, [0, memoryview(chunk), time.time()])
    st.add("connections", len(socks))
    hold = float(os.environ.get("NOREAD_HOLD", "0.5"))  # fraction of the time spent writing
    write_until = time.time() + (deadline - time.time()) * hold
    while time.time() < write_until and sel.get_map():
        for key, _ in sel.select(timeout=0.1):
            state = key.data
            try:
                n = key.fileobj.send(state[1])
            except BlockingIOError:
                continue
            except OSError as e:
                st.add(type(e).__name__)
                sel.unregister(key.fileobj)
                continue
            state[0] += n
            state[2] = time.time()
            st.add("request_bytes_sent", n)
            state[1] = state[1][n:] if n < len(state[1]) else memoryview(chunk)
            if state[0] >= cap:
                sel.unregister(key.fileobj)
                st.add("reached_cap")
    # connections the relay stopped reading (no send accepted in the last second, under the cap)
    st.add("blocked_at_stop", sum(1 for k in sel.get_map().values() if time.time() - k.data[2] > 1))
    sel.close()
    time.sleep(max(0, deadline - time.time()))  # connections held, answers unread
    for s in socks:
        s.close()
    st.add("closed", len(socks))


PROBES = {"bomb": probe_bomb, "stall-h2": probe_stall_h2, "stall-h1": probe_stall_h1,
          "headers-h2": probe_headers_h2, "hpack": probe_hpack, "noread": probe_noread}


def probe(name, host, port, secs):
    st = Stats()
    start = time.time()
    PROBES[name](host, int(port), start + float(secs), st)
    print(st.line(name, time.time() - start), flush=True)


# --- the report -----------------------------------------------------------------------------------------

def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p * len(xs))) - 1))]


def report(d):
    phases = [l.split() for l in open(os.path.join(d, "phases.txt")) if l.strip()]
    reqs = [l.split() for l in open(os.path.join(d, "steady.txt")) if len(l.split()) == 3]
    reqs = [(float(t), float(lat), res) for t, lat, res in reqs]
    rss_s = [tuple(map(float, l.split())) for l in open(os.path.join(d, "rss.txt")) if len(l.split()) == 3]
    hz = os.sysconf("SC_CLK_TCK")
    base = next(p for p in phases if p[0] == "idle")
    idle_kb = max((kb for t, kb, _ in rss_s if float(base[1]) <= t < float(base[2])), default=0)
    rows = []
    for name, a, b in phases + [("overall", phases[1][1] if len(phases) > 1 else phases[0][1], phases[-1][2])]:
        a, b = float(a), float(b)
        lat = [x[1] * 1000 for x in reqs if a <= x[0] < b]
        errs = collections.Counter(x[2] for x in reqs if a <= x[0] < b and x[2] != "202")
        inside = [x for x in rss_s if a <= x[0] < b]
        ks = [x[1] for x in inside]
        end_kb = ks[-1] if ks else 0
        ticks = sum(max(0, y[2] - x[2]) for x, y in zip(inside, inside[1:]))  # a new relay restarts its ticks
        cpu = ticks / hz / (inside[-1][0] - inside[0][0]) * 100 if len(inside) > 1 else 0
        rows.append((name, f"{b - a:.0f}", len(lat), sum(errs.values()), f"{pct(lat, .5):.1f}", f"{pct(lat, .99):.1f}",
                     f"{max(lat, default=float('nan')):.1f}", f"{(max(ks, default=0) - idle_kb) / 1024:.0f}",
                     f"{(end_kb - idle_kb) / 1024:.0f}", f"{cpu:.0f}", " ".join(f"{k}×{v}" for k, v in errs.most_common(3))))
    print(f"relay RSS idle (with the steady client): {idle_kb / 1024:.0f} MB; "
          "phase = probe + settle; RSS columns are MB over idle")
    hdr = ("phase", "s", "reqs", "errs", "p50 ms", "p99 ms", "max ms", "peak RSS+", "end RSS+", "relay CPU%", "errors")
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    for r in [hdr] + rows:
        print("| " + " | ".join(str(x).ljust(w[i]) for i, x in enumerate(r)) + " |")
    overall = rows[-1]
    print(f"goals: peak RSS over idle {overall[7]} MB (≤ 300: {'met' if float(overall[7]) <= 300 else 'MISSED'}), "
          f"steady p99 {overall[5]} ms overall (≤ 50: {'met' if float(overall[5]) <= 50 else 'MISSED'}); "
          f"worst phase p99 {max(float(r[5]) for r in rows[1:-1]) if len(rows) > 2 else float('nan'):.1f} ms")
    for f in sorted(os.listdir(d)):
        if f.startswith("probe-") and f.endswith(".txt"):
            for line in open(os.path.join(d, f)):
                if line.strip():
                    print(f"  [{f[6:-4]}] {line.strip()}")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "bomb-file":
        bomb_file(argv[2])
    elif cmd == "steady":
        steady(argv[2], argv[3])
    elif cmd == "rss":
        rss(argv[2], argv[3])
    elif cmd == "probe":
        probe(*argv[2:6])
    elif cmd == "report":
        report(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
