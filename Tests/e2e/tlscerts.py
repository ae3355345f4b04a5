"""Certificates for the TLS tests, made with the openssl CLI: a CA; a server certificate for
localhost (DNS SAN, IP SAN 127.0.0.1); client certificates whose URI SAN is Kuma's SPIFFE form
for a zone (spiffe://default/<zone>/collector); a second CA with its own client; an expired
client. `Certs(dir)` makes them once; attributes are file paths."""
import os
import subprocess


def _run(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Certs:
    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._ca("ca", "/CN=tracerelay e2e CA")
        self._ca("other-ca", "/CN=some other CA")
        self.ca = self.path("ca.pem")
        self.other_ca = self.path("other-ca.pem")
        self.server_cert, self.server_key = self.issue("server", "/CN=localhost",
                                                       "subjectAltName=DNS:localhost,IP:127.0.0.1", "serverAuth")
        # A second server certificate from the same CA (a rotated one, for reload tests).
        self.server2_cert, self.server2_key = self.issue("server2", "/CN=localhost rotated",
                                                         "subjectAltName=DNS:localhost,IP:127.0.0.1", "serverAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _ca(self, name, subject):
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.path(name + ".key"), "-out", self.path(name + ".pem"), "-days", "30", "-subj", subject,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name, subject, san, usage, ca="ca", days=30):
        """A certificate signed by `ca`; returns (cert, key) paths. days=-1 makes an expired one."""
        key, csr, cert = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".pem")
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write(f"{san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
             "-subj", subject)
        _run("x509", "-req", "-in", csr, "-CA", self.path(ca + ".pem"), "-CAkey", self.path(ca + ".key"),
             "-CAcreateserial", "-out", cert, "-extfile", ext, "-days", str(days))
        return cert, key

    def zone_client(self, zone, ca="ca", days=30):
        """A collector's client certificate for `zone`: URI SAN spiffe://default/<zone>/collector."""
        name = f"client-{zone}-{ca}-{days}"
        return self.issue(name, f"/CN={zone} collector", f"subjectAltName=URI:spiffe://default/{zone}/collector",
                          "clientAuth", ca=ca, days=days)


def two_region_routing(eu_url, us_url, us_selector, export=""):
    """The routing part the TLS tests share: backends `eu` (eu-west-1) and `us` (us-east-1) behind
    Zipkin sinks, the Mesh defaulting to `eu`, and a TrafficTrace sending `us_selector` (a flow
    mapping's body, e.g. "region: us-east-1") to `us`. `export`: a line of export options."""
    ex = f"    {export}\n" if export else ""
    return f"""\
backends:
  - name: eu
    type: zipkin
    region: eu-west-1
{ex}    conf: {{url: "{eu_url}"}}
  - name: us
    type: zipkin
    region: us-east-1
{ex}    conf: {{url: "{us_url}"}}
---
type: Mesh
name: default
tracing:
  defaultBackend: eu
---
type: TrafficTrace
name: us-traffic
mesh: default
selectors:
  - match: {{{us_selector}}}
conf: {{backend: us}}
"""
