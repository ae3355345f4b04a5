"""The Docker recipe (issue 12) without a Docker engine: the Dockerfiles pass hadolint and the
compose file `docker-compose config`; the image's build phase (docker/build-steps.sh) runs on this
host into a temporary root, every library the binary loads is one the runtime image installs, and
the binary starts the way the image's ENTRYPOINT + CMD start it (embedded default config) and
passes the image's HEALTHCHECK. Then the compose demo topology runs on this host from
docker/compose.yaml (container names and ports mapped to loopback ports, named volumes to
directories, its one-shot `certs` service first): the load reaches each region's sink over the
collectors' mutual-TLS hop to the central relay, and no span lands in the wrong region.

The host build is a debug build (BUILD_CONFIG=debug; the image builds release) in the scratch
directory that built TRACERELAY_BIN, with the same flags, so it costs nothing after the suite's build;
the binaries then run with the Swift runtime libraries the build phase copied (LD_LIBRARY_PATH stands
in for the image, where they sit at the binaries' RUNPATH)."""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import requests
import yaml

from conftest import BIN
from sinks import free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
DOCKER = os.path.join(ROOT, "docker")
SCRATCH = os.environ.get("DOCKER_CHECK_SCRATCH") or os.path.dirname(os.path.dirname(os.path.abspath(BIN)))
CONFIG = os.environ.get("DOCKER_CHECK_CONFIG", "debug")


def run(cmd, timeout, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    return r


def dockerfile_instructions(path):
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = open(path).read().replace("\\\n", " ")
    stages, current = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current = []
            stages.append(current)
        current.append((word.upper(), rest.strip()))
    return stages[-1]


def exec_form(text):
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


@pytest.fixture(scope="module")
def image_root():
    """docker/build-steps.sh build, as the Dockerfile runs it, into a temporary root."""
    root = tempfile.mkdtemp(prefix="tracerelay-image-")
    env = dict(os.environ, BUILD_CONFIG=CONFIG, SCRATCH_PATH=SCRATCH, SRC=ROOT)
    started = time.time()
    products = ["tracerelay", "loadtest"]
    r = run([os.path.join(DOCKER, "build-steps.sh"), "build", root, *products], timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"build phase ({CONFIG}, scratch {SCRATCH}): {time.time() - started:.1f} s")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_hadolint_and_compose_config():
    r = run([os.path.join(ROOT, "scripts/docker-check.sh")], timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hadolint docker/Dockerfile: ok" in r.stdout and "docker-compose config docker/compose.yaml: ok" in r.stdout


def image_env(root):
    """The environment of the image: its binaries on PATH, its Swift runtime libraries first."""
    return dict(os.environ, PATH=os.path.join(root, "usr/local/bin") + os.pathsep + os.environ["PATH"],
                LD_LIBRARY_PATH=os.path.join(root, "usr/lib/swift/linux"))


def test_the_runtime_image_has_every_library_the_binaries_load(image_root):
    r = run([os.path.join(DOCKER, "build-steps.sh"), "check-runtime", image_root], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("every library it loads is in the image") == 2, r.stdout
    # The Swift runtime comes from the image root, not from the toolchain of this host.
    ldd = run(["ldd", os.path.join(image_root, "usr/local/bin/tracerelay")], timeout=30, env=image_env(image_root)).stdout
    assert os.path.join(image_root, "usr/lib/swift/linux/libswiftCore.so") in ldd, ldd


class Started:
    """A process started from an argv with loopback ports; its output in a file."""

    def __init__(self, argv, workdir, name, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir, env=env)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=20):
        """SIGTERM (what `docker stop` sends), SIGKILL after `timeout`; the exit code."""
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


def wait_until(check, timeout, what, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        if proc is not None and proc.proc.poll() is not None:
            pytest.fail(f"{proc.name} exited ({proc.proc.returncode}) before {what}:\n{proc.output()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"not {what} within {timeout} s" + (f":\n{proc.output()[-3000:]}" if proc else ""))


def test_the_image_command_serves_the_embedded_default_and_is_healthy(image_root):
    final = dockerfile_instructions(os.path.join(DOCKER, "Dockerfile"))
    entry = exec_form(next(a for i, a in final if i == "ENTRYPOINT"))
    cmd = exec_form(next(a for i, a in final if i == "CMD"))
    health = next(a for i, a in final if i == "HEALTHCHECK")
    volume = exec_form(next(a for i, a in final if i == "VOLUME"))
    user = next(a for i, a in final if i == "USER")
    assert not user.startswith("0") and user != "root", "the image runs as a non-root user"
    assert "--config" not in cmd, "the image's default command runs the embedded default config"
    health_cmd = exec_form(health.split("CMD", 1)[1])
    # In the container the relay listens on every interface; here each port maps to a free loopback one.
    addresses = [a for a in cmd if re.fullmatch(r"0\.0\.0\.0:\d+", a)]
    assert {a.split(":")[1] for a in addresses} == {"9411", "8126", "9901"}, cmd
    ports = {a.split(":")[1]: free_port() for a in addresses}
    work = tempfile.mkdtemp(prefix="tracerelay-image-run-")
    spill = os.path.join(work, "spill")

    def host(arg):
        for p, q in ports.items():
            arg = arg.replace(f"0.0.0.0:{p}", f"127.0.0.1:{q}").replace(f"127.0.0.1:{p}/", f"127.0.0.1:{q}/")
        return arg.replace(volume[0], spill)

    env = image_env(image_root)
    relay = Started([host(a) for a in entry + cmd], work, "relay", env=env)
    try:
        def healthy():
            return subprocess.run([host(a) for a in health_cmd], env=env, capture_output=True, timeout=30).returncode == 0
        wait_until(healthy, 30, "healthy (HEALTHCHECK command)", relay)
        assert requests.get(f"http://127.0.0.1:{ports['9901']}/health/ready", timeout=5).status_code == 200
        span = [{"traceId": "1234567890abcdef", "id": "1234567890abcdef", "name": "docker", "localEndpoint": {"serviceName": "image-check"}}]
        assert requests.post(f"http://127.0.0.1:{ports['9411']}/api/v2/spans", json=span, timeout=5).status_code == 202
        assert requests.get(f"http://127.0.0.1:{ports['8126']}/info", timeout=5).status_code == 200
        wait_until(lambda: "image-check" in relay.output(), 10, "logged by the default `log` backend", relay)
    finally:
        code = relay.stop()
    out = relay.output()
    shutil.rmtree(work, ignore_errors=True)
    assert code == 0, out[-3000:]
    # Not a terminal: JSON lines (what a container log collector reads).
    for line in out.splitlines():
        json.loads(line)
    assert subprocess.run([host(a) for a in health_cmd], env=env, capture_output=True, timeout=30).returncode != 0, \
        "the health check fails when the relay is gone"


def test_the_compose_demo_runs_on_this_host(image_root):
    """docker/compose.yaml's services started as processes: each service's container ports become
    free loopback ports, `name:port` references in commands and mounted configs point there, and
    each named volume becomes a directory. The one-shot `certs` service makes the demo CA and the
    relays' certificates first (every relay that mounts them waits for it to complete), so the
    collector → central hop runs over mutual TLS with identity pinning (`peers`)."""
    compose = yaml.safe_load(open(os.path.join(DOCKER, "compose.yaml")))
    services = compose["services"]
    # Ports a service listens on in its container: from its command and its mounted config.
    mounts, volumes, listens = {}, {}, {}
    for name, s in services.items():
        mounts[name], volumes[name] = {}, {}
        for v in s.get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith("./"):
                mounts[name][dst] = open(os.path.join(DOCKER, src)).read()
            else:
                volumes[name][dst] = src
        text = " ".join(s["command"]) + " ".join(mounts[name].values())
        listens[name] = sorted(set(re.findall(r"0\.0\.0\.0:(\d+)", text)))
    port = {(n, p): free_port() for n, ps in listens.items() for p in ps}

    def depends(name):
        deps = services[name].get("depends_on") or {}
        return {d: "service_started" for d in deps} if isinstance(deps, list) else {d: c["condition"] for d, c in deps.items()}
    one_shot = {d for n in services for d, c in depends(n).items() if c == "service_completed_successfully"}
    assert one_shot == {"certs"}, one_shot
    # Whoever mounts a volume the certs service writes waits until it completed, and mounts it read-only.
    written, readers = set(volumes["certs"].values()), set()
    for name, s in services.items():
        for v in s.get("volumes", []) if name != "certs" else []:
            src, _, *mode = v.split(":")
            if src in written:
                readers.add(name)
                assert depends(name).get("certs") == "service_completed_successfully" and mode == ["ro"], (name, v)
    assert readers == {"central", "collector-eu", "collector-us"}, readers

    def host(name, text):
        text = re.sub(r"0\.0\.0\.0:(\d+)", lambda m: f"127.0.0.1:{port[(name, m.group(1))]}", text)
        text = re.sub(r"\b([a-z][a-z0-9-]*):(\d+)\b",
                      lambda m: f"127.0.0.1:{port[(m.group(1), m.group(2))]}" if (m.group(1), m.group(2)) in port else m.group(0), text)
        for dst in sorted(volumes[name], key=len, reverse=True):
            text = text.replace(dst, volume_dir[volumes[name][dst]])
        return text

    work = tempfile.mkdtemp(prefix="tracerelay-demo-")
    volume_dir = {v: os.path.join(work, "volume-" + v) for v in compose["volumes"]}
    env = image_env(image_root)
    # The certs image has no entrypoint: its command runs as written (`sh` and the mounted script).
    # Its CERTS_OWNER (the relays' user in their image) does not apply here: every process runs as us.
    entrypoint = {"tracerelay:demo": ["tracerelay"], "tracerelay-loadtest:demo": ["loadtest"], "tracerelay-certs:demo": []}
    started = {}

    def start(name):
        s = services[name]
        argv = entrypoint[s["image"]] + [host(name, a) for a in s["command"]]
        for dst, content in mounts[name].items():
            path = os.path.join(work, name + "-" + os.path.basename(dst))
            with open(path, "w") as f:
                f.write(host(name, content))
            argv = [path if a == dst else a for a in argv]
        if name.startswith("load-"):
            # A bounded run instead of the demo's day-long one, with a report of what was accepted.
            argv[argv.index("--duration") + 1] = "4"
            argv += ["--report", os.path.join(work, name + ".json")]
        started[name] = Started(argv, work, name, env=env)
        return started[name]

    order = ["certs", "sink-eu", "sink-us", "central", "collector-eu", "collector-us", "load-eu", "load-us"]
    assert set(order) == set(services), f"the test knows every service of the demo: {sorted(services)}"
    try:
        for name in order:
            p = start(name)
            if name in one_shot:
                assert p.proc.wait(timeout=120) == 0, p.output()[-3000:]
            elif "healthcheck" in services[name]:
                admin = port[(name, "9901")]
                wait_until(lambda: _ready(admin), 30, f"{name} ready", p)
            elif name.startswith("sink-"):
                sink = port[(name, "9411")]
                wait_until(lambda: _listening(sink), 30, f"{name} listening", p)
        for name in ("load-eu", "load-us"):
            started[name].proc.wait(timeout=60)
            assert started[name].proc.returncode == 0, started[name].output()[-3000:]

        def stats(name):
            return requests.get(f"http://127.0.0.1:{port[(name, '9411')]}/stats", timeout=5).json()

        accepted = {}
        for load, sink in (("load-eu", "sink-eu"), ("load-us", "sink-us")):
            with open(os.path.join(work, load + ".json")) as f:
                accepted[sink] = json.load(f)["acceptedSpans"]
            assert accepted[sink] > 0, load

        def delivered():
            return all(stats(n)["uniqueSpans"] >= accepted[n] for n in accepted)
        # Two hops with batching: every span the collectors accepted reaches its region's sink.
        wait_until(delivered, 30, f"all accepted spans ({accepted}) at the sinks")
        for name, region in (("sink-eu", "eu-west-1"), ("sink-us", "us-east-1")):
            s = stats(name)
            print(name, {k: s.get(k) for k in ("spans", "uniqueSpans", "violations", "noRegion", "altered", "perFormat")})
            assert s["violations"] == 0 and s["noRegion"] == 0 and s["altered"] == 0, (name, s)
            assert s["uniqueSpans"] == accepted[name], (name, s, accepted)
        assert "zipkin" in json.dumps(stats("sink-eu")["perFormat"]).lower()
        _check_central_mtls(f"http://127.0.0.1:{port[('central', '9901')]}", port[("central", "9443")], volume_dir)
        assert {n: stats(n)["uniqueSpans"] for n in accepted} == accepted, "a span refused for its identity reached a sink"
    finally:
        codes = {n: p.stop() for n, p in reversed(list(started.items()))}
        logs = {n: p.output()[-2000:] for n, p in started.items()}
        shutil.rmtree(work, ignore_errors=True)
    for name in ("central", "collector-eu", "collector-us"):
        assert codes[name] == 0, f"{name} exit {codes[name]}:\n{logs[name]}"


def _check_central_mtls(admin_url, tls_port, volume_dir):
    """The demo's collector → central hop is mutual TLS: central counted handshakes (both
    collectors, no failures yet), refuses a client without a certificate, and pins a collector's
    certificate to its zone: collector-us's certificate cannot send an eu span."""
    def metric(name, **labels):
        text = requests.get(admin_url + "/metrics", timeout=5).text
        want = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(float(m.group(3)) for m in re.finditer(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", text, re.M)
                   if m.group(1) == name and all(w in (m.group(2) or "") for w in want))
    def tls_lines():
        return [line for line in requests.get(admin_url + "/metrics", timeout=5).text.splitlines() if line.startswith("tracerelay_tls_")]
    handshakes = metric("tracerelay_tls_handshakes_total")
    print("central:", tls_lines())
    assert handshakes >= 2, f"both collectors reach central over TLS: {tls_lines()}"
    assert metric("tracerelay_tls_failures_total") == 0, tls_lines()
    central, us = volume_dir["central-tls"], volume_dir["collector-us-tls"]
    ca = os.path.join(central, "ca.pem")

    # No client certificate: the handshake (or, with TLS 1.3, the first read after it) fails.
    context = ssl.create_default_context(cafile=ca)
    answer = b""
    try:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=10), server_hostname="central") as s:
            s.sendall(b"POST /api/v2/spans HTTP/1.1\r\nHost: central\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")
            answer = s.recv(4096)
    except (ssl.SSLError, ConnectionError) as e:
        print("central refused a client without a certificate:", e)
    assert answer == b"", f"central answered a client without a certificate: {answer[:200]!r}"
    wait_until(lambda: metric("tracerelay_tls_failures_total", reason="certificate_missing") >= 1, 10,
               "a certificate_missing failure counted by central")

    # collector-us's certificate claiming the eu zone (the collectors' header, which central trusts
    # from a known peer): accepted on the wire, refused for its identity.
    span = {"traceId": "5eed00000000d0c4", "id": "5eed00000000d0c4", "name": "forged", "localEndpoint": {"serviceName": "forger"}}
    r = requests.post(f"https://127.0.0.1:{tls_port}/api/v2/spans", json=[span], verify=ca, timeout=10,
                      headers={"X-Tracerelay-Tags": "kuma.io/zone=eu-west-zone-1"},
                      cert=(os.path.join(us, "cert.pem"), os.path.join(us, "key.pem")))
    assert r.status_code == 202, (r.status_code, r.text)

    def refused():
        return requests.get(admin_url + "/status", timeout=5).json()["routing"]["refused"]
    wait_until(refused, 10, "the forged eu span refused")
    counts = refused()
    assert counts == {"identity|eu-west-1|": 1}, f"refused for its identity, nothing else refused: {counts}"


def _ready(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
