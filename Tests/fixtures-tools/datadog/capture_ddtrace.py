#!/usr/bin/env python3
"""Captures the exact bytes the real ddtrace library sends to an agent, for the codec tests.

Usage: /work/venv-dd/bin/python capture_ddtrace.py OUTDIR
(needs `ddtrace` and `msgpack`; see requirements.txt next to this file)

For each API version (v0.4, v0.5) it starts a tiny local agent stand-in (127.0.0.1, port chosen
by the OS) that answers GET /info like the Datadog agent and saves every trace payload, then runs
`emit_traces.py` in a child process with DD_TRACE_AGENT_URL / DD_TRACE_API_VERSION pointing at it.
Writes OUTDIR/ddtrace_<version>.msgpack (the body exactly as received) and
OUTDIR/ddtrace_<version>.expected.json (what a decoder must produce, built by
expectations.py from the payload and cross-checked against the spans ddtrace reported).
"""
import http.server
import json
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import expectations  # noqa: E402


class Agent(http.server.BaseHTTPRequestHandler):
    bodies = []  # (path, headers, body)

    def log_message(self, *args):
        pass

    def _reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/info":
            self._reply(200, {
                "version": "7.60.0",
                "endpoints": ["/v0.4/traces", "/v0.5/traces", "/v0.6/stats", "/info"],
                "client_drop_p0s": False,
                "span_meta_structs": True,
                "config": {},
            })
        else:
            self._reply(404, {})

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n)

    def do_PUT(self):
        body = self._body()
        if self.path.startswith("/v0.4/traces") or self.path.startswith("/v0.5/traces"):
            Agent.bodies.append((self.path, self.headers, body))
            self._reply(200, {"rate_by_service": {"service:,env:": 1.0}})
        else:
            self._reply(200, {})

    do_POST = do_PUT


def capture(version, outdir):
    Agent.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    reported = os.path.join(outdir, f".reported_{version}.json")
    env = dict(os.environ)
    env.update({
        "DD_TRACE_AGENT_URL": f"http://127.0.0.1:{port}",
        "DD_TRACE_API_VERSION": version,
        "DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED": "true",
        "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
        "DD_REMOTE_CONFIGURATION_ENABLED": "false",
        "DD_TRACE_STATS_COMPUTATION_ENABLED": "false",
        "DD_DATA_STREAMS_ENABLED": "false",
        "DD_PROFILING_ENABLED": "false",
        "DD_ENV": "fixture",
        "DD_VERSION": "1.2.3",
        "DD_TRACE_STARTUP_LOGS": "false",
    })
    subprocess.run([sys.executable, os.path.join(HERE, "emit_traces.py"), reported], env=env, check=True)
    server.shutdown()
    traces = [b for b in Agent.bodies if b[2]]
    if len(traces) != 1:
        raise SystemExit(f"{version}: expected one trace payload, got {len(traces)}: {[p for p, _, _ in Agent.bodies]}")
    path, headers, body = traces[0]
    name = f"ddtrace_{version.replace('.', '')}"
    with open(os.path.join(outdir, name + ".msgpack"), "wb") as f:
        f.write(body)
    spans = expectations.decode(body, version)
    with open(reported) as f:
        expectations.cross_check(spans, json.load(f))
    os.remove(reported)
    exp = {
        "source": f"ddtrace {headers.get('Datadog-Meta-Tracer-Version', '?')} ({headers.get('Datadog-Meta-Lang', '?')}) {path}",
        "trace_count_header": headers.get("X-Datadog-Trace-Count"),
        "spans": spans,
    }
    with open(os.path.join(outdir, name + ".expected.json"), "w") as f:
        json.dump(exp, f, indent=1, sort_keys=True)
    print(f"{version}: {len(body)} bytes, {len(spans)} spans -> {name}.msgpack")


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../CodecsTests/Fixtures/datadog")
    os.makedirs(out, exist_ok=True)
    for v in ("v0.4", "v0.5"):
        capture(v, out)
