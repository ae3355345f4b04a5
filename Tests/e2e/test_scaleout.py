"""Scale-out (issue 13): a regional relay in front of central relays found through a file
resolver. Every trace's spans land on exactly one central relay; a central relay removed from
the file under load loses nothing (its queue at the regional relay is rerouted); a fourth one
added takes about 1/N of the new traces.

Real processes on loopback: four `tracerelay serve` central relays, each exporting to its own
Zipkin sink, and one regional relay whose `tracerelay` backend lists them in a file.
"""
import os
import random
import re
import threading
import time

import requests

from conftest import Relay
from sinks import ZipkinSink

SPANS_PER_TRACE = 3


def central_config(sink, durability="spill"):
    return f"""
type: Relay
spill: {{durability: {durability}}}
backends:
  - name: store
    type: zipkin
    export: {{batchDelay: 20ms, maxBackoff: 200ms}}
    conf: {{url: '{sink.url}', traceId128bit: true}}
---
type: Mesh
name: default
tracing:
  defaultBackend: store
"""


def regional_config(endpoints_file):
    return f"""
type: Relay
backends:
  - name: central
    type: tracerelay
    export: {{batchDelay: 20ms, maxBackoff: 200ms, downAfter: 2, timeout: 3s}}
    conf:
      resolver: {{file: '{endpoints_file}', interval: 100ms}}
      routingKey: traceID
---
type: Mesh
name: default
tracing:
  defaultBackend: central
"""


def write_endpoints(path, relays):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write("# central relays\n" + "".join(f"127.0.0.1:{r.port}\n" for r in relays))
    os.replace(tmp, path)


def trace_id(t):
    return f"{(t + 1) * 0x9E3779B9 & (1 << 64) - 1:016x}{t + 1:016x}"


def span_id(t, k):
    return f"{t * SPANS_PER_TRACE + k + 1:016x}"


def body(traces):
    return [{"traceId": trace_id(t), "id": span_id(t, k), "name": "op", "timestamp": 1700000000000000,
             "duration": 5, "localEndpoint": {"serviceName": f"svc{t % 7}"}}
            for k in range(SPANS_PER_TRACE) for t in traces]


def all_ids(traces):
    return {span_id(t, k) for t in traces for k in range(SPANS_PER_TRACE)}


def send(relay, traces, rng, per_request=40):
    """POSTs the traces' spans in shuffled requests; every one must be accepted."""
    traces = list(traces)
    rng.shuffle(traces)
    for i in range(0, len(traces), per_request):
        r = requests.post(relay.url + "/api/v2/spans", json=body(traces[i:i + per_request]), timeout=15)
        assert r.status_code == 202, r.text


def owners(sinks):
    """trace id → the set of sink indices that hold any of its spans."""
    out = {}
    for i, s in enumerate(sinks):
        for span in s.delivered_spans():
            out.setdefault(span["traceId"], set()).add(i)
    return out


def metric(relay, name, backend):
    text = requests.get(relay.admin_url + "/metrics", timeout=5).text
    m = re.search(rf'^{name}{{backend="{backend}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def seeded():
    seed = int(os.environ.get("TRACERELAY_E2E_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    return seed, random.Random(seed)


def stop_all(regional, centrals, sinks):
    for r in ([regional] if regional else []) + centrals:
        r.stop()
    for s in sinks:
        s.stop()


def test_rescale_keeps_traces_together_and_loses_nothing(tmp_path):
    seed, rng = seeded()
    sinks = [ZipkinSink() for _ in range(4)]
    centrals, regional = [], None
    try:
        for s in sinks:
            path = tmp_path / f"central-{len(centrals)}.yaml"
            path.write_text(central_config(s))
            centrals.append(Relay(config=path, debug_capture=0))
        endpoints = tmp_path / "endpoints.txt"
        write_endpoints(endpoints, centrals[:3])
        rpath = tmp_path / "regional.yaml"
        rpath.write_text(regional_config(endpoints))
        regional = Relay(config=rpath, debug_capture=0)

        def delivered():
            return set().union(*(s.ids() for s in sinks))

        def wait_delivered(ids, timeout=30):
            deadline = time.time() + timeout
            while time.time() < deadline and not ids <= delivered():
                time.sleep(0.1)
            return ids - delivered()

        # 1. Affinity: every trace at exactly one central relay, each with about a third.
        send(regional, range(0, 300), rng)
        assert not wait_delivered(all_ids(range(300))), f"seed {seed}\n{regional.tail()}"
        own = owners(sinks)
        assert len(own) == 300 and all(len(v) == 1 for v in own.values()), f"seed {seed}: a trace split over central relays"
        shares = [sum(1 for v in own.values() if i in v) / 300 for i in range(3)]
        print(f"shares over 3 central relays: {shares}")
        assert all(0.2 < x < 0.47 for x in shares), shares

        # 2. Central relay 2 goes away under load (SIGTERM: it flushes what it took and exits);
        # the regional relay queues its share, then the file drops it: that queue is rerouted.
        sender = threading.Thread(target=send, args=(regional, range(300, 900), random.Random(rng.random()), 10))
        sender.start()
        gone = centrals[2]
        assert gone.stop() == 0
        send(regional, range(900, 1000), rng)  # about a third of these wait for relay 2
        child = f"central@127.0.0.1_{gone.port}"
        deadline = time.time() + 10
        while time.time() < deadline and not (metric(regional, "tracerelay_queue_records", child) or 0) > 0:
            time.sleep(0.05)
        assert metric(regional, "tracerelay_queue_records", child) > 0, regional.tail()
        write_endpoints(endpoints, centrals[:2])
        sender.join(60)
        assert not sender.is_alive()
        missing = wait_delivered(all_ids(range(1000)))
        assert not missing, f"seed {seed}: {len(missing)} spans lost\n{regional.tail()}"
        assert metric(regional, "tracerelay_backend_endpoints", "central") == 2
        rerouted = metric(regional, "tracerelay_backend_spans_rerouted_total", "central")
        assert rerouted > 0, regional.tail()

        # 3. A fourth central relay joins: about 1/3 of the new traces go to it.
        write_endpoints(endpoints, [centrals[0], centrals[1], centrals[3]])
        deadline = time.time() + 10
        while time.time() < deadline and metric(regional, "tracerelay_backend_endpoints", "central") != 3:
            time.sleep(0.05)
        send(regional, range(1000, 1600), rng)
        assert not wait_delivered(all_ids(range(1600))), f"seed {seed}\n{regional.tail()}"
        new = {trace_id(t) for t in range(1000, 1600)}
        to_fourth = {s["traceId"] for s in sinks[3].delivered_spans()}
        share = len(to_fourth & new) / len(new)
        print(f"share of new traces at the joining relay: {share:.3f} (ideal 0.333)")
        assert 0.22 < share < 0.45, share
        assert to_fourth <= new

        # Nothing twice, every trace still in one place, and the figures say what happened.
        counts = [c for s in sinks for c in s.counts().values()]
        dup = sum(c - 1 for c in counts if c > 1)
        own = owners(sinks)
        split = [t for t, v in own.items() if len(v) > 1]
        print(f"duplicates {dup}, traces split {len(split)}, rerouted {rerouted}")
        # At least once: a request relay 2 took but could not answer while stopping is sent
        # again elsewhere. Anything more than a stray request's worth would be a bug.
        assert dup <= 100, f"seed {seed}: {dup} duplicate spans"
        # Only such a duplicate may leave a trace in two places.
        assert all(int(t[16:], 16) - 1 in range(300, 1000) for t in split), split[:5]
        assert metric(regional, "tracerelay_backend_ring_changes_total", "central") == 2
    finally:
        stop_all(regional, centrals, sinks)


def test_kill_9_of_a_central_relay_under_load_loses_nothing(tmp_path):
    """A central relay killed with SIGKILL under load and started again (same port, same spill,
    `wal`): nothing is lost, and its traces wait for it rather than move (a down endpoint keeps
    its place in the ring)."""
    seed, rng = seeded()
    sinks = [ZipkinSink() for _ in range(3)]
    centrals, regional = [], None
    try:
        for i, s in enumerate(sinks):
            path = tmp_path / f"central-{i}.yaml"
            path.write_text(central_config(s, durability="wal"))
            centrals.append(Relay(config=path, debug_capture=0, spill_dir=str(tmp_path / f"spill-{i}")))
        endpoints = tmp_path / "endpoints.txt"
        write_endpoints(endpoints, centrals)
        rpath = tmp_path / "regional.yaml"
        rpath.write_text(regional_config(endpoints))
        regional = Relay(config=rpath, debug_capture=0)

        sender = threading.Thread(target=send, args=(regional, range(0, 900), random.Random(rng.random()), 10))
        sender.start()
        victim = centrals[1]
        assert sinks[1].wait_for(lambda s: len(s.ids()) > 0), "load reaches the victim before it is killed"
        victim.proc.kill()
        victim.stop()
        # The regional relay finds it down and queues its share.
        child = f"central@127.0.0.1_{victim.port}"
        deadline = time.time() + 15
        while time.time() < deadline and metric(regional, "tracerelay_backend_up", child) != 0:
            time.sleep(0.05)
        assert metric(regional, "tracerelay_backend_up", child) == 0, regional.tail()
        centrals[1] = Relay(config=tmp_path / "central-1.yaml", port=victim.port, debug_capture=0,
                            spill_dir=str(tmp_path / "spill-1"))
        sender.join(60)
        assert not sender.is_alive()
        ids = all_ids(range(900))
        deadline = time.time() + 30
        while time.time() < deadline and not ids <= set().union(*(s.ids() for s in sinks)):
            time.sleep(0.1)
        missing = ids - set().union(*(s.ids() for s in sinks))
        assert not missing, f"seed {seed}: {len(missing)} spans lost\n{regional.tail()}\n{centrals[1].tail()}"
        counts = [c for s in sinks for c in s.counts().values()]
        dup = sum(c - 1 for c in counts if c > 1)
        split = [t for t, v in owners(sinks).items() if len(v) > 1]
        print(f"kill -9: duplicates {dup} (at least once), traces split {len(split)}")
        assert not split, f"seed {seed}: traces moved while their relay was down: {split[:5]}"
        assert metric(regional, "tracerelay_backend_ring_changes_total", "central") == 0
    finally:
        stop_all(regional, centrals, sinks)

