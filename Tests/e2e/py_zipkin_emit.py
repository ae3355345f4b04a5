"""py_zipkin client: `py_zipkin_emit.py URL ENCODING` sends a two-span trace to the relay with
the given encoding (V2_JSON, V1_JSON, V2_PROTO3) and prints the ids and HTTP statuses as JSON."""
import json
import sys

import requests
from py_zipkin.encoding import Encoding
from py_zipkin.zipkin import zipkin_span

url, name = sys.argv[1], sys.argv[2]
encoding = getattr(Encoding, name)
content_type = "application/x-protobuf" if encoding == Encoding.V2_PROTO3 else "application/json"
path = "/api/v1/spans" if encoding == Encoding.V1_JSON else "/api/v2/spans"
statuses = []


def transport(payload):
    r = requests.post(url + path, data=payload, headers={"Content-Type": content_type}, timeout=5)
    statuses.append(r.status_code)


with zipkin_span(service_name="frontend", span_name="GET /", transport_handler=transport,
                 sample_rate=100.0, encoding=encoding) as root:
    root.update_binary_annotations({"kuma.mesh": "default", "region": "eu-west-1"})
    with zipkin_span(service_name="frontend", span_name="call backend") as child:
        child.update_binary_annotations({"peer": "backend"})
        ids = {"trace_id": root.zipkin_attrs.trace_id, "root_id": root.zipkin_attrs.span_id,
               "child_id": child.zipkin_attrs.span_id}
print(json.dumps(dict(ids, statuses=statuses)))
