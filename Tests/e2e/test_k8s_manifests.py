"""docker/k8s/ (issue 13) without a cluster: every manifest validates against the Kubernetes API
schemas (kubernetes-validate, strict: unknown fields refused) of a recent Kubernetes release; the
kustomization renders (with `kustomize build`, else `kubectl kustomize` — both offline — when one is
installed; always with the small renderer below, which handles exactly the kustomization fields the
files use and refuses any other); every tracerelay config embedded in a ConfigMap passes
`tracerelay check`; and the manifests agree with those configs and with each other (probe and scrape
ports = the config's admin port, terminationGracePeriodSeconds >= --grace + preStop sleep, the
collectors' DNS resolver names the headless Service of the central StatefulSet, …). Finally both
configs run as real processes with the containers' own arguments, their addresses mapped to
loopback (the resolver's hostname to 127.0.0.1): spans sent to the collector reach a Zipkin sink
behind the central relay, the probe and scrape paths answer, and SIGTERM stops both cleanly.

`consistency_problems` returns what is wrong instead of asserting, so test_breakage_is_caught can
prove each check fails on a broken copy of the manifests.

Longer than our ~500 lines: the readers of the manifests and configs, the cross-checks and their
breakages belong together and are used by this file only; split it into a helper module once a
second test needs them."""
import copy
import json
import os
import shutil
import subprocess
import time

import kubernetes_validate
import pytest
import requests
import yaml

from conftest import BIN, Relay
from sinks import ZipkinSink, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
K8S = os.path.join(ROOT, "docker", "k8s")
# The newest schemas kubernetes-validate ships, and the oldest Kubernetes minor still maintained
# upstream when this was written (Dec 2026).
KUBE_VERSIONS = sorted({"1.34.0", kubernetes_validate.latest_version()})
# Kustomization fields the renderer below applies; anything else must be added to it first.
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
WORKLOADS = ("StatefulSet", "Deployment", "DaemonSet")


# --- reading the files ----------------------------------------------------------------------------

def manifest_files():
    """Every YAML file under docker/k8s but the kustomizations, relative to docker/k8s."""
    out = []
    for d, _, files in os.walk(K8S):
        for f in files:
            if f.endswith((".yaml", ".yml")) and f not in ("kustomization.yaml", "kustomization.yml"):
                out.append(os.path.relpath(os.path.join(d, f), K8S))
    return sorted(out)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization(directory):
    path = os.path.join(directory, "kustomization.yaml")
    assert os.path.isfile(path), f"{directory}: no kustomization.yaml"
    with open(path) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - KUSTOMIZE_FIELDS
    assert not unknown, f"{path}: fields {sorted(unknown)} are not applied by this test's renderer; extend render()"
    assert k.get("kind") == "Kustomization", path
    return k


def render(directory, listed=None):
    """The resources `kustomize build directory` gives, for the fields in KUSTOMIZE_FIELDS: the
    listed files and directories in order, then this level's namespace and image rewrites. Every
    file reached goes into `listed` (paths relative to docker/k8s)."""
    listed = listed if listed is not None else []
    k = kustomization(directory)
    out = []
    for entry in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, entry))
        assert os.path.exists(path), f"{directory}/kustomization.yaml lists {entry}, which does not exist"
        if os.path.isdir(path):
            out += render(path, listed)
        else:
            listed.append(os.path.relpath(path, K8S))
            out += load_docs(path)
    out = copy.deepcopy(out)
    if "namespace" in k:
        for r in out:
            if r["kind"] not in CLUSTER_SCOPED:
                r["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for r in out:
            for c in containers(r):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = image.get("newName", name) + ":" + image.get("newTag", tag or "latest")
    return out


def containers(resource):
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def key(resource):
    return (resource["kind"], resource["metadata"].get("namespace"), resource["metadata"]["name"])


def kustomize_command():
    """An offline kustomize renderer, if one is installed (neither needs a cluster)."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


# --- the embedded tracerelay configs --------------------------------------------------------------

def embedded_configs(resources):
    """(configmap name, data key, text) of every ConfigMap value that is a tracerelay config: YAML
    whose documents include a Relay document or a Kuma resource."""
    out = []
    for r in resources:
        if r["kind"] != "ConfigMap":
            continue
        for k, text in (r.get("data") or {}).items():
            try:
                docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            except yaml.YAMLError:
                continue
            if any(d.get("type") in ("Relay", "Mesh", "TrafficTrace", "MeshTrace") or str(d.get("apiVersion", "")).startswith("kuma.io/")
                   for d in docs):
                out.append((r["metadata"]["name"], k, text))
    return out


def relay_document(text):
    for d in yaml.safe_load_all(text):
        if isinstance(d, dict) and d.get("type") == "Relay":
            return d
    return {}


def backends_of(text):
    """Every backend of a config: the Relay document's and the Meshes'."""
    out = []
    for d in yaml.safe_load_all(text):
        if not isinstance(d, dict):
            continue
        if d.get("type") == "Relay":
            out += d.get("backends") or []
        if d.get("type") == "Mesh":
            out += (d.get("tracing") or {}).get("backends") or []
    return out


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def run_check(text, tmp_path, name):
    path = os.path.join(tmp_path, name)
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run([BIN, "check", "--config", path], capture_output=True, text=True, timeout=60)


def binary_knows_resolver(tmp_path):
    """Whether TRACERELAY_BIN reads `conf.resolver` (the scale-out code of issue 13). The probe has
    both `url` (which a binary without the scale-out code requires, so that its only complaint is
    the warning "unknown field 'resolver'") and `resolver` (which a binary with it refuses as a
    conflict, without calling the field unknown). A binary that knows the field but refuses the
    embedded configs is then not excused."""
    probe = ("type: Relay\nbackends:\n  - name: c\n    type: tracerelay\n    conf:\n"
             "      url: http://127.0.0.1:9411\n      resolver:\n        file: /dev/null\n---\ntype: Mesh\nname: default\ntracing:\n  defaultBackend: c\n")
    r = run_check(probe, tmp_path, "probe-resolver.yaml")
    return "unknown field 'resolver'" not in r.stdout + r.stderr


# --- consistency ----------------------------------------------------------------------------------

def arg_value(args, flag, default=None):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


def prestop_seconds(container):
    pre = (container.get("lifecycle") or {}).get("preStop")
    if not pre:
        return None
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep":
        return int(cmd[1])
    return None


def quantity(q):
    """Kubernetes quantity → bytes or cores (float)."""
    q = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for u, f in sorted(units.items(), key=lambda x: -len(x[0])):
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def consistency_problems(resources):
    """Everything that disagrees between the workloads, their configs, Services, HPA and PDBs."""
    problems = []
    by_kind = {}
    for r in resources:
        by_kind.setdefault(r["kind"], []).append(r)
    configmaps = {r["metadata"]["name"]: r for r in by_kind.get("ConfigMap", [])}
    services = by_kind.get("Service", [])
    workloads = [r for kind in WORKLOADS for r in by_kind.get(kind, [])]
    if not any(w["kind"] == "StatefulSet" for w in workloads):
        problems.append("no StatefulSet (the central tier)")
    if not any(w["kind"] in ("Deployment", "DaemonSet") for w in workloads):
        problems.append("no Deployment or DaemonSet (the regional collectors)")
    configs = {}  # workload name → its config text
    for w in workloads:
        name = f"{w['kind']} {w['metadata']['name']}"
        pod = w["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"].get("labels", {})
        if not selects(w["spec"]["selector"].get("matchLabels"), labels):
            problems.append(f"{name}: selector does not match its pod labels")
        relay = [c for c in spec["containers"] if c.get("args", [])[:1] == ["serve"]]
        if len(relay) != 1:
            problems.append(f"{name}: expected one container running `tracerelay serve`")
            continue
        c = relay[0]
        args = c["args"]
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        # The config file: --config names a key of a mounted ConfigMap.
        cfg_path = arg_value(args, "--config")
        if not cfg_path:
            problems.append(f"{name}: no --config")
            continue
        vol = volumes.get(mounts.get(os.path.dirname(cfg_path)))
        cm = configmaps.get(((vol or {}).get("configMap") or {}).get("name"))
        text = ((cm or {}).get("data") or {}).get(os.path.basename(cfg_path))
        if text is None:
            problems.append(f"{name}: --config {cfg_path} is not a key of a ConfigMap mounted at {os.path.dirname(cfg_path)}")
            continue
        configs[w["metadata"]["name"]] = text
        relay_doc = relay_document(text)
        admin_port = port_of(arg_value(args, "--admin") or (relay_doc.get("admin") or {}).get("address")
                             or relay_doc.get("adminAddress") or "127.0.0.1:9901")
        admin_host = (arg_value(args, "--admin") or (relay_doc.get("admin") or {}).get("address") or "127.0.0.1:").rsplit(":", 1)[0]
        if admin_host in ("127.0.0.1", "localhost", "[::1]"):
            problems.append(f"{name}: the admin listener is on loopback; the kubelet's probes cannot reach it")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        # Probes: live and ready on the config's admin port.
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"), ("startupProbe", None)):
            p = c.get(probe)
            if p is None:
                if probe != "startupProbe":
                    problems.append(f"{name}: no {probe}")
                continue
            get = p.get("httpGet") or {}
            port = get.get("port")
            port = ports.get(port) if isinstance(port, str) else port
            if port != admin_port:
                problems.append(f"{name}: {probe} on port {get.get('port')!r} = {port}, the config's admin port is {admin_port}")
            if path and get.get("path") != path:
                problems.append(f"{name}: {probe} path {get.get('path')!r}, expected {path}")
            if not path and get.get("path") not in ("/health/live", "/health/ready"):
                problems.append(f"{name}: {probe} path {get.get('path')!r} is not a health endpoint")
        # Prometheus scrape annotations: /metrics on the admin port.
        ann = pod["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics" \
                or str(ann.get("prometheus.io/port")) != str(admin_port):
            problems.append(f"{name}: scrape annotations {ann} do not point at /metrics on admin port {admin_port}")
        # Every listener of the config is a container port.
        listeners = arg_value(args, "--listen")
        for lst in ([{"address": listeners}] if listeners else relay_doc.get("listeners") or [{"address": "127.0.0.1:9411"}]):
            if port_of(lst["address"]) not in ports.values():
                problems.append(f"{name}: listener {lst['address']} has no containerPort")
            if lst["address"].rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"):
                problems.append(f"{name}: listener {lst['address']} is on loopback")
        # Graceful stop: preStop sleep, then --grace; the kubelet must not SIGKILL before both.
        grace = int(arg_value(args, "--grace", "10"))  # tracerelay serve's default
        pre = prestop_seconds(c)
        tgps = spec.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
        if pre is None:
            problems.append(f"{name}: no preStop sleep (the Service must drain before the listeners close)")
        elif tgps < grace + pre:
            problems.append(f"{name}: terminationGracePeriodSeconds {tgps} < --grace {grace} + preStop {pre}")
        # Spill on a volume: a PVC for a StatefulSet (replayed after a crash or reschedule).
        spill = arg_value(args, "--spill-dir") or (relay_doc.get("spill") or {}).get("directory")
        spill_volume = mounts.get((spill or "").rstrip("/"))
        if spill_volume is None:
            problems.append(f"{name}: spill directory {spill!r} is not a volume mount")
        elif w["kind"] == "StatefulSet" and spill_volume not in claims:
            problems.append(f"{name}: spill volume {spill_volume} is not a volumeClaimTemplate")
        # Resources, and memory bounds that fit the limit (the relay's defaults follow the node's RAM).
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    problems.append(f"{name}: no resources.{part}.{r}")
        limit = quantity(res.get("limits", {}).get("memory", 0))
        budget = arg_value(args, "--memory-budget-bytes")
        bodies = arg_value(args, "--max-buffered-body-bytes")
        if budget is None or bodies is None:
            problems.append(f"{name}: --memory-budget-bytes and --max-buffered-body-bytes must be set (defaults follow the node's RAM)")
        elif limit and int(budget) + int(bodies) >= limit:
            problems.append(f"{name}: memory budget {budget} + body budget {bodies} leave nothing of the {limit:.0f}-byte limit")
        loops = arg_value(args, "--loops")
        cpu_limit = quantity(res.get("limits", {}).get("cpu", 0))
        if loops is None or (cpu_limit and int(loops) > max(1, cpu_limit)):
            problems.append(f"{name}: --loops {loops} should be set and at most the CPU limit {cpu_limit}")
    # The central tier: StatefulSet governed by a headless Service that the collectors resolve.
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    for sts in by_kind.get("StatefulSet", []):
        gov = [s for s in headless if s["metadata"]["name"] == sts["spec"].get("serviceName")]
        if not gov:
            problems.append(f"StatefulSet {sts['metadata']['name']}: serviceName {sts['spec'].get('serviceName')!r} is not a headless Service")
    resolvers = []
    for wname, text in configs.items():
        for b in backends_of(text):
            dns = (((b.get("conf") or {}).get("resolver") or {}).get("dns"))
            if dns:
                resolvers.append((wname, b["name"], dns))
    if not resolvers:
        problems.append("no config forwards through a DNS resolver (the regional collectors' tracerelay backend)")
    workload_names = {w["metadata"]["name"]: w for w in workloads}
    for wname, bname, dns in resolvers:
        labels = str(dns.get("hostname", "")).rstrip(".").split(".")
        ns = workload_names[wname]["metadata"].get("namespace")
        svc = [s for s in headless if s["metadata"]["name"] == labels[0]]
        if not svc:
            problems.append(f"{wname}: backend {bname} resolves {dns.get('hostname')!r}, which is no headless Service here")
            continue
        s = svc[0]
        if len(labels) > 1 and labels[1] != (s["metadata"].get("namespace") or ns):
            problems.append(f"{wname}: backend {bname} resolves {dns.get('hostname')!r}, but Service {labels[0]} is in namespace {s['metadata'].get('namespace')}")
        if len(labels) == 1 and s["metadata"].get("namespace") != ns:
            problems.append(f"{wname}: the short name {labels[0]} only resolves in the collector's own namespace")
        if s["spec"].get("publishNotReadyAddresses") is not True:
            problems.append(f"Service {labels[0]}: publishNotReadyAddresses should be true (a restarting replica stays in the rings)")
        targets = [t for t in by_kind.get("StatefulSet", []) if selects(s["spec"].get("selector"), t["spec"]["template"]["metadata"].get("labels", {}))]
        if not targets:
            problems.append(f"Service {labels[0]}: selects no StatefulSet's pods")
            continue
        sts = targets[0]
        sts_ports = {p.get("name"): p["containerPort"] for c in containers(sts) for p in c.get("ports", [])}
        central_cfg = configs.get(sts["metadata"]["name"], "")
        central_listeners = {port_of(lst["address"]) for lst in relay_document(central_cfg).get("listeners") or []}
        svc_ports = [sts_ports.get(p.get("targetPort"), p.get("targetPort", p["port"])) for p in s["spec"].get("ports", [])]
        if dns.get("port") not in central_listeners:
            problems.append(f"{wname}: backend {bname} sends to port {dns.get('port')}, not a listener of the central config {sorted(central_listeners)}")
        if dns.get("port") not in svc_ports:
            problems.append(f"{wname}: backend {bname} port {dns.get('port')} is not a port of Service {labels[0]} {svc_ports}")
        if relay_document(central_cfg).get("trustUpstreamTags") is not True:
            problems.append(f"StatefulSet {sts['metadata']['name']}: trustUpstreamTags must be true, or the collectors' zone tags are dropped")
    # Every Service selects a workload's pods, and its named target ports exist there.
    for s in services:
        targets = [w for w in workloads if selects(s["spec"].get("selector"), w["spec"]["template"]["metadata"].get("labels", {}))]
        if not targets:
            problems.append(f"Service {s['metadata']['name']}: selects no pods")
            continue
        names = {p.get("name") for c in containers(targets[0]) for p in c.get("ports", [])}
        for p in s["spec"].get("ports", []):
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                problems.append(f"Service {s['metadata']['name']}: targetPort {p['targetPort']} is no container port name")
    # HPA and PDB point at the central tier.
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if not any(w["kind"] == ref["kind"] and w["metadata"]["name"] == ref["name"] for w in workloads):
            problems.append(f"HPA {h['metadata']['name']}: target {ref['kind']}/{ref['name']} does not exist")
        if not any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" for m in h["spec"].get("metrics", [])):
            problems.append(f"HPA {h['metadata']['name']}: no CPU metric")
        for w in workloads:
            if w["metadata"]["name"] == ref["name"]:
                for c in containers(w):
                    if "cpu" not in c.get("resources", {}).get("requests", {}):
                        problems.append(f"HPA {h['metadata']['name']}: {ref['name']} has no CPU request to scale on")
    if not by_kind.get("HorizontalPodAutoscaler"):
        problems.append("no HorizontalPodAutoscaler")
    for p in by_kind.get("PodDisruptionBudget", []):
        sel = p["spec"]["selector"].get("matchLabels")
        if not any(selects(sel, w["spec"]["template"]["metadata"].get("labels", {})) for w in workloads):
            problems.append(f"PDB {p['metadata']['name']}: selects no pods")
    if not any(selects(p["spec"]["selector"].get("matchLabels"), s["spec"]["template"]["metadata"].get("labels", {}))
               for p in by_kind.get("PodDisruptionBudget", []) for s in by_kind.get("StatefulSet", [])):
        problems.append("no PodDisruptionBudget covers the StatefulSet")
    return problems


# --- the tests ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered():
    listed = []
    resources = render(K8S, listed)
    return resources, listed


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("path", manifest_files())
def test_manifest_validates(path, version):
    docs = load_docs(os.path.join(K8S, path))
    assert docs, f"{path}: empty"
    for d in docs:
        kubernetes_validate.validate(d, version, strict=True)


def test_kustomization_lists_every_manifest_and_renders(rendered):
    resources, listed = rendered
    assert sorted(listed) == manifest_files(), "files under docker/k8s that no kustomization lists (or listed twice)"
    keys = [key(r) for r in resources]
    assert len(keys) == len(set(keys)), f"duplicate resources: {keys}"
    kinds = {r["kind"] for r in resources}
    for kind in ("Namespace", "ConfigMap", "StatefulSet", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert kind in kinds, f"the kustomization renders no {kind}"
    for r in resources:  # what gets applied validates too (namespace and image set)
        kubernetes_validate.validate(r, KUBE_VERSIONS[-1], strict=True)
        if r["kind"] != "Namespace":
            assert r["metadata"].get("namespace") == "tracerelay", key(r)
    # Every container runs the image docker/Dockerfile builds, as kustomization.yaml's `images` names it.
    image = next(i for i in kustomization(K8S)["images"] if i["name"] == "tracerelay")
    for r in resources:
        for c in containers(r):
            assert c["image"] == f"{image.get('newName', 'tracerelay')}:{image.get('newTag', 'latest')}", (key(r), c["image"])
    for path in manifest_files():
        for d in load_docs(os.path.join(K8S, path)):
            for c in containers(d):
                assert c["image"] == "tracerelay", f"{path}: image {c['image']!r}; set the registry and tag in kustomization.yaml's images"


def test_kustomize_binary_agrees(rendered):
    """The real kustomize (or kubectl's, offline) renders the same resources as render()."""
    cmd = kustomize_command()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl installed: render() and the file checks above stand in")
    r = subprocess.run(cmd + [K8S], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    theirs = [d for d in yaml.safe_load_all(r.stdout) if d]
    ours = rendered[0]
    assert sorted(map(key, theirs)) == sorted(map(key, ours))
    by_key = {key(d): d for d in theirs}
    for d in ours:
        assert by_key[key(d)] == d, f"{key(d)} differs between {' '.join(cmd)} and render()"


def config_cases():
    try:
        return [pytest.param(cm, k, text, id=f"{cm}-{k}") for cm, k, text in embedded_configs(render(K8S))]
    except AssertionError:
        return []  # test_kustomization_lists_every_manifest_and_renders reports it


def test_configs_found():
    names = {cm for cm, _, _ in embedded_configs(render(K8S))}
    assert {"tracerelay-central", "tracerelay-collector"} <= names, names


@pytest.mark.parametrize("cm,data_key,text", config_cases())
def test_embedded_config_passes_check(cm, data_key, text, tmp_path, request):
    uses_resolver = any(((b.get("conf") or {}).get("resolver")) for b in backends_of(text))
    if uses_resolver and not binary_knows_resolver(str(tmp_path)):
        # Only until the scale-out code (resolver, routingKey) is in the binary; then this passes.
        request.applymarker(pytest.mark.xfail(strict=False, reason=f"{BIN} does not know conf.resolver yet (issue 13 scale-out code)"))
    r = run_check(text, str(tmp_path), f"{cm}-{data_key}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"tracerelay check failed on ConfigMap {cm} key {data_key}:\n{out}"
    assert "warning" not in out.lower(), f"tracerelay check warns on ConfigMap {cm} key {data_key}:\n{out}"


def test_manifests_agree(rendered):
    problems = consistency_problems(rendered[0])
    assert not problems, "\n".join(problems)


def _find(resources, kind, name):
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def _sts(rs):
    return _find(rs, "StatefulSet", "tracerelay-central")


def _ctr(rs, kind="StatefulSet", name="tracerelay-central"):
    return _find(rs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _set_config(rs, cm, f):
    data = _find(rs, "ConfigMap", cm)["data"]
    data["relay.yaml"] = f(data["relay.yaml"])


def _set_arg(rs, flag, value, kind="StatefulSet", name="tracerelay-central"):
    args = _ctr(rs, kind, name)["args"]
    args[args.index(flag) + 1] = value


BREAKAGES = {
    "grace-too-long": lambda rs: _set_arg(rs, "--grace", "40"),
    "no-grace-period": lambda rs: _sts(rs)["spec"]["template"]["spec"].pop("terminationGracePeriodSeconds"),
    "no-prestop": lambda rs: _ctr(rs).pop("lifecycle"),
    "probe-on-ingest-port": lambda rs: _ctr(rs)["readinessProbe"]["httpGet"].update(port="zipkin"),
    "probe-wrong-path": lambda rs: _ctr(rs)["livenessProbe"]["httpGet"].update(path="/health"),
    "admin-port-moved": lambda rs: _set_config(rs, "tracerelay-central", lambda t: t.replace("0.0.0.0:9901", "0.0.0.0:9902")),
    "admin-on-loopback": lambda rs: _set_config(rs, "tracerelay-collector", lambda t: t.replace("0.0.0.0:9901", "127.0.0.1:9901")),
    "scrape-port": lambda rs: _sts(rs)["spec"]["template"]["metadata"]["annotations"].update({"prometheus.io/port": "9411"}),
    "resolver-hostname": lambda rs: _set_config(rs, "tracerelay-collector", lambda t: t.replace("hostname: tracerelay-central-headless", "hostname: tracerelay-central")),
    "resolver-namespace": lambda rs: _set_config(rs, "tracerelay-collector", lambda t: t.replace("hostname: tracerelay-central-headless", "hostname: tracerelay-central-headless.other.svc")),
    "resolver-port": lambda rs: _set_config(rs, "tracerelay-collector", lambda t: t.replace("port: 9411", "port: 9412")),
    "headless-renamed": lambda rs: _find(rs, "Service", "tracerelay-central-headless")["metadata"].update(name="central-dns"),
    "not-headless": lambda rs: _find(rs, "Service", "tracerelay-central-headless")["spec"].pop("clusterIP"),
    "spill-not-on-pvc": lambda rs: _set_config(rs, "tracerelay-central", lambda t: t.replace("directory: /var/lib/tracerelay/spill", "directory: /tmp/spill")),
    "no-memory-flags": lambda rs: _ctr(rs)["args"].remove("--memory-budget-bytes"),
    "no-memory-limit": lambda rs: _ctr(rs)["resources"].pop("limits"),
    "hpa-target": lambda rs: _find(rs, "HorizontalPodAutoscaler", "tracerelay-central")["spec"]["scaleTargetRef"].update(name="x"),
    "pdb-selector": lambda rs: _find(rs, "PodDisruptionBudget", "tracerelay-central")["spec"]["selector"]["matchLabels"].update(x="y"),
    "no-trust": lambda rs: _set_config(rs, "tracerelay-central", lambda t: t.replace("trustUpstreamTags: true", "trustUpstreamTags: false")),
    "config-key": lambda rs: _set_arg(rs, "--config", "/etc/tracerelay/central.yaml", "Deployment", "tracerelay-collector"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_breakage_is_caught(rendered, breakage):
    """Each consistency check fails on a copy of the manifests broken in its way."""
    rs = copy.deepcopy(rendered[0])
    BREAKAGES[breakage](rs)
    assert consistency_problems(rs), f"{breakage}: no problem reported"


def test_schema_validation_refuses_a_broken_manifest():
    """Strict validation is not vacuous: an unknown field and a wrong type are refused."""
    sts = load_docs(os.path.join(K8S, "central", "statefulset.yaml"))[0]
    for mutate in (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}),
                   lambda d: d["spec"].update(replicas="three"),
                   lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriod=45)):
        broken = copy.deepcopy(sts)
        mutate(broken)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)


def test_check_refuses_a_broken_config(tmp_path):
    """`tracerelay check` is not vacuous on these configs: a broken backend fails it."""
    _, _, text = next(c for c in embedded_configs(render(K8S)) if c[0] == "tracerelay-central")
    r = run_check(text.replace("sampling", "x").replace("url: http://", "url: ftp://"), str(tmp_path), "broken.yaml")
    assert r.returncode != 0, r.stdout + r.stderr


def test_kustomization_refuses_a_missing_resource(tmp_path):
    """A kustomization listing a file that is not there fails render()."""
    d = os.path.join(str(tmp_path), "k")
    shutil.copytree(K8S, d)
    with open(os.path.join(d, "central", "kustomization.yaml"), "a") as f:
        f.write("  - missing.yaml\n")
    with pytest.raises(AssertionError, match="missing.yaml"):
        render(d)


def _loopback(text, mapping, spill_dir, backend_url=None, resolver_port=None, resolver=True):
    """The config with its listeners and admin on loopback ports (mapping: config port → local
    port), its spill in spill_dir, its zipkin backends at backend_url and its DNS resolver on
    127.0.0.1:resolver_port (resolver=False: a plain `url` there instead, for a binary without
    the scale-out code)."""
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for d in docs:
        if d.get("type") == "Relay":
            for lst in d.get("listeners") or []:
                lst["address"] = f"127.0.0.1:{mapping[port_of(lst['address'])]}"
            d["admin"]["address"] = f"127.0.0.1:{mapping[port_of(d['admin']['address'])]}"
            d["spill"]["directory"] = spill_dir
    for d in docs:
        for b in (d.get("backends") or []) + ((d.get("tracing") or {}).get("backends") or []):
            if b["type"] == "zipkin" and backend_url:
                b["conf"]["url"] = backend_url
            dns = ((b.get("conf") or {}).get("resolver") or {}).get("dns")
            if dns and resolver_port:
                dns.update(hostname="127.0.0.1", port=resolver_port)
                if not resolver:
                    b["conf"] = {"url": f"http://127.0.0.1:{resolver_port}/api/v2/spans"}
    return yaml.safe_dump_all(docs, sort_keys=False)


def _container_args(resources, kind, name):
    """The container's arguments after `serve`, without --config (Relay passes its own)."""
    args = list(_ctr(resources, kind, name)["args"][1:])
    i = args.index("--config")
    del args[i:i + 2]
    return args


def test_configs_run_as_a_chain(rendered, tmp_path):
    rs = rendered[0]
    configs = {cm: text for cm, _, text in embedded_configs(rs)}
    # A binary without the scale-out code runs the chain with a plain url instead of the resolver
    # (test_embedded_config_passes_check xfails for it); everything else is as in the manifests.
    knows_resolver = binary_knows_resolver(str(tmp_path))
    sink = ZipkinSink()
    central_ports = {9411: free_port(), 8126: free_port(), 9901: free_port()}
    collector_ports = {9411: free_port(), 8126: free_port(), 9901: free_port()}
    paths = {}
    for name, text, ports, kw in (
            ("central", configs["tracerelay-central"], central_ports, {"backend_url": sink.url}),
            ("collector", configs["tracerelay-collector"], collector_ports, {"resolver_port": central_ports[9411], "resolver": knows_resolver})):
        paths[name] = os.path.join(str(tmp_path), name + ".yaml")
        with open(paths[name], "w") as f:
            f.write(_loopback(text, ports, os.path.join(str(tmp_path), name + "-spill"), **kw))
    relays = []
    try:
        central = Relay(args=_container_args(rs, "StatefulSet", "tracerelay-central"), config=paths["central"], listen=False,
                        port=central_ports[9411], admin_port=central_ports[9901], spill_dir=os.path.join(str(tmp_path), "central-spill"))
        relays.append(central)
        collector = Relay(args=_container_args(rs, "Deployment", "tracerelay-collector"), config=paths["collector"], listen=False,
                          port=collector_ports[9411], admin_port=collector_ports[9901], spill_dir=os.path.join(str(tmp_path), "collector-spill"))
        relays.append(collector)
        for r in relays:  # what the probes and Prometheus ask
            assert requests.get(r.admin_url + "/health/live", timeout=5).status_code == 200
            assert requests.get(r.admin_url + "/health/ready", timeout=5).status_code == 200
            assert "tracerelay_" in requests.get(r.admin_url + "/metrics", timeout=5).text
        spans = [{"traceId": f"{t + 1:032x}", "id": f"{t * 10 + i + 1:016x}", "name": "op", "timestamp": 1_700_000_000_000_000,
                  "duration": 10, "localEndpoint": {"serviceName": f"svc-{t % 3}"}} for t in range(20) for i in range(5)]
        answer = requests.post(collector.url + "/api/v2/spans", data=json.dumps(spans), headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 202, answer.text
        deadline = time.time() + 30
        while time.time() < deadline and len(sink.delivered_spans()) < len(spans):
            with sink.changed:
                sink.changed.wait(0.5)
        got = sink.delivered_spans()
        assert sorted(s["id"] for s in got) == sorted(s["id"] for s in spans), \
            f"collector: {collector.status()}\n{collector.tail()}\ncentral: {central.status()}\n{central.tail()}\nsink errors: {sink.errors()}"
        for r in (collector, central):
            assert r.stop(timeout=60) == 0, r.tail()
    finally:
        for r in relays:
            r.stop()
        sink.stop()
