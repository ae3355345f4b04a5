"""An independent (Python) implementation of the Datadog → span-model mapping documented in
Sources/Codecs/Datadog/DatadogMapping.swift, used to write the expectation JSON the Swift
decoder tests compare against, and to cross-check a payload with what ddtrace reported."""
import ipaddress

import msgpack

SPAN_FIELDS_V05 = ["service", "name", "resource", "trace_id", "span_id", "parent_id",
                   "start", "duration", "error", "meta", "metrics", "type"]


def _chunks(body, version):
    raw = msgpack.unpackb(body, raw=False, strict_map_key=False)
    if version == "v0.5":
        table, traces = raw
        out = []
        for trace in traces:
            chunk = []
            for a in trace:
                d = dict(zip(SPAN_FIELDS_V05, a))
                for k in ("service", "name", "resource", "type"):
                    d[k] = table[d[k]]
                d["meta"] = {table[k]: table[v] for k, v in d["meta"].items()}
                d["metrics"] = {table[k]: v for k, v in d["metrics"].items()}
                chunk.append(d)
            out.append(chunk)
        return out
    return raw


def _ip(v):
    try:
        return ipaddress.ip_address(v).version
    except ValueError:
        return None


def decode(body, version):
    spans = []
    for chunk in _chunks(body, version):
        tid = None
        for s in chunk:
            if tid is None and "_dd.p.tid" in (s.get("meta") or {}):
                tid = (s["trace_id"], int(s["meta"]["_dd.p.tid"], 16))
        for s in chunk:
            meta = dict(s.get("meta") or {})
            metrics = dict(s.get("metrics") or {})
            high = tid[1] if tid and tid[0] == s["trace_id"] else 0
            kind = meta.pop("span.kind", "")
            meta.pop("_dd.p.tid", None)
            prio = metrics.pop("_sampling_priority_v1", None)
            remote = {"service": meta.get("peer.service", ""), "ipv4": "", "ipv6": "", "port": 0}
            for key in ("out.host", "network.destination.ip"):
                if key in meta and _ip(meta[key]):
                    remote["ipv4" if _ip(meta[key]) == 4 else "ipv6"] = meta[key]
            for key in ("out.port", "network.destination.port"):
                v = meta.get(key, metrics.get(key))
                if v is not None and 1 <= int(float(v)) <= 65535:
                    remote["port"] = int(float(v))
            spans.append({
                "trace_id": "%016x%016x" % (high, s["trace_id"]) if high else "%016x" % s["trace_id"],
                "span_id": "%016x" % s["span_id"],
                "parent_id": "%016x" % (s.get("parent_id") or 0),
                "service": s.get("service") or "",
                "name": s.get("name") or "",
                "resource": s.get("resource") or "",
                "type": s.get("type") or "",
                "start": s.get("start") or 0,
                "duration": s.get("duration") or 0,
                "error": bool(s.get("error")),
                "kind": kind if kind in ("server", "client", "producer", "consumer") else "",
                "sampling_priority": None if prio is None else int(prio),
                "top_level": metrics.get("_dd.top_level") == 1,
                "meta": meta,
                "metrics": metrics,
                "remote": remote,
            })
    return spans


def cross_check(spans, reported):
    """Every span ddtrace reported is in the payload with the same ids, names, times, error."""
    by_id = {s["span_id"]: s for s in spans}
    for r in reported:
        s = by_id["%016x" % r["span_id"]]
        tid = r["trace_id"]
        want = "%032x" % tid if tid >> 64 else "%016x" % tid
        assert s["trace_id"] == want, (s["trace_id"], want)
        assert s["parent_id"] == "%016x" % r["parent_id"], (s, r)
        for k in ("name", "service", "resource", "start", "duration"):
            assert s[k] == r[k], (k, s[k], r[k])
        assert s["error"] == bool(r["error"]), (s, r)
