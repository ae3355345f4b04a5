"""Independent validation of tracerelay's Zipkin encoders.

The Swift test `ZipkinJSONV2Tests.committedEncoderOutputsAreCurrent` decodes every captured
real-client fixture and checks that what our encoders make of it is committed, unchanged, in
Tests/CodecsTests/Fixtures/zipkin/encoded/ (it fails when they are stale; run it with
TRACERELAY_UPDATE_FIXTURES=1 to rewrite them):
  <fixture>.to-v2.json    ZipkinJSONV2.encode output
  <fixture>.to-proto.bin  ZipkinProto3.encode output
This test checks those committed files with tools that share no code with ours:
  * JSON: a JSON Schema written from zipkin-api's zipkin2-api.yaml definitions (ListOfSpans,
    Span, Endpoint, Annotation, Tags), tightened with the rules its descriptions state
    (lower-case hex ids of 16/32 and 16 digits, upper-case kinds, string tags, integer µs),
    validated with `jsonschema`;
  * proto3: parsed with Python protobuf using a descriptor built from zipkin.proto's field
    numbers;
and both must mean the same spans as the fixture's `.expected.json` (written by capture.py).
"""
import ipaddress
import json
import pathlib

import jsonschema
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "CodecsTests" / "Fixtures" / "zipkin"
ENCODED = FIXTURES / "encoded"
STEMS = ["otel-v2", "otel-proto", "otel-v1", "pyzipkin-v2", "pyzipkin-proto", "pyzipkin-v1"]

ENDPOINT = {
    "type": "object",
    "properties": {
        "serviceName": {"type": "string"},
        "ipv4": {"type": "string", "format": "ipv4"},
        "ipv6": {"type": "string", "format": "ipv6"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
    "additionalProperties": False,
}
SPAN = {
    "type": "object",
    "required": ["traceId", "id"],
    "properties": {
        "traceId": {"type": "string", "minLength": 16, "maxLength": 32, "pattern": "^([0-9a-f]{16}|[0-9a-f]{32})$"},
        "name": {"type": "string"},
        "parentId": {"type": "string", "minLength": 16, "maxLength": 16, "pattern": "^[0-9a-f]{16}$"},
        "id": {"type": "string", "minLength": 16, "maxLength": 16, "pattern": "^[0-9a-f]{16}$"},
        "kind": {"type": "string", "enum": ["CLIENT", "SERVER", "PRODUCER", "CONSUMER"]},
        "timestamp": {"type": "integer", "minimum": 1},
        "duration": {"type": "integer", "minimum": 1},
        "debug": {"type": "boolean"},
        "shared": {"type": "boolean"},
        "localEndpoint": ENDPOINT,
        "remoteEndpoint": ENDPOINT,
        "annotations": {"type": "array", "items": {
            "type": "object", "required": ["timestamp", "value"],
            "properties": {"timestamp": {"type": "integer"}, "value": {"type": "string"}},
            "additionalProperties": False}},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
LIST_OF_SPANS = {"type": "array", "items": SPAN}


def zipkin_proto_classes():
    """ListOfSpans built from zipkin.proto's field numbers (package zipkin.proto3)."""
    f = descriptor_pb2.FileDescriptorProto(name="tracerelay_test_zipkin.proto", package="trtest.zipkin", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def add(msg, name, number, type_, label=T.LABEL_OPTIONAL, type_name=None):
        fld = msg.field.add(name=name, number=number, type=type_, label=label)
        if type_name:
            fld.type_name = type_name

    ep = f.message_type.add(name="Endpoint")
    add(ep, "service_name", 1, T.TYPE_STRING); add(ep, "ipv4", 2, T.TYPE_BYTES)
    add(ep, "ipv6", 3, T.TYPE_BYTES); add(ep, "port", 4, T.TYPE_INT32)
    an = f.message_type.add(name="Annotation")
    add(an, "timestamp", 1, T.TYPE_FIXED64); add(an, "value", 2, T.TYPE_STRING)
    sp = f.message_type.add(name="Span")
    entry = sp.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    add(entry, "key", 1, T.TYPE_STRING); add(entry, "value", 2, T.TYPE_STRING)
    add(sp, "trace_id", 1, T.TYPE_BYTES); add(sp, "parent_id", 2, T.TYPE_BYTES); add(sp, "id", 3, T.TYPE_BYTES)
    add(sp, "kind", 4, T.TYPE_INT32)  # enum Kind on the wire is a varint
    add(sp, "name", 5, T.TYPE_STRING); add(sp, "timestamp", 6, T.TYPE_FIXED64); add(sp, "duration", 7, T.TYPE_UINT64)
    add(sp, "local_endpoint", 8, T.TYPE_MESSAGE, type_name=".trtest.zipkin.Endpoint")
    add(sp, "remote_endpoint", 9, T.TYPE_MESSAGE, type_name=".trtest.zipkin.Endpoint")
    add(sp, "annotations", 10, T.TYPE_MESSAGE, T.LABEL_REPEATED, ".trtest.zipkin.Annotation")
    add(sp, "tags", 11, T.TYPE_MESSAGE, T.LABEL_REPEATED, ".trtest.zipkin.Span.TagsEntry")
    add(sp, "debug", 12, T.TYPE_BOOL); add(sp, "shared", 13, T.TYPE_BOOL)
    ls = f.message_type.add(name="ListOfSpans")
    add(ls, "spans", 1, T.TYPE_MESSAGE, T.LABEL_REPEATED, ".trtest.zipkin.Span")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    desc = pool.FindMessageTypeByName("trtest.zipkin.ListOfSpans")
    try:
        from google.protobuf import message_factory
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(desc)
        return message_factory.MessageFactory(pool).GetPrototype(desc)
    except ImportError:  # pragma: no cover
        raise


def summarise_json(spans):
    out = []
    for s in spans:
        tags = s.get("tags", {})
        remote = s.get("remoteEndpoint", {})
        out.append({
            "traceId": s["traceId"], "id": s["id"], "parentId": s.get("parentId"), "name": s.get("name", ""),
            "kind": s.get("kind"), "timestamp": s.get("timestamp", 0), "duration": s.get("duration", 0),
            "localServiceName": s.get("localEndpoint", {}).get("serviceName", ""),
            "remoteServiceName": remote.get("serviceName", ""), "remoteIPv4": remote.get("ipv4", ""),
            "remotePort": remote.get("port", 0), "tags": tags, "error": "error" in tags,
            "debug": s.get("debug", False), "shared": s.get("shared", False),
            "annotations": [[a["timestamp"], a["value"]] for a in s.get("annotations", [])],
        })
    return sorted(out, key=lambda s: (s["id"], s["shared"]))


def summarise_proto(msg):
    kinds = {0: None, 1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}
    out = []
    for s in msg.spans:
        assert len(s.trace_id) in (8, 16) and len(s.id) == 8 and len(s.parent_id) in (0, 8)
        assert not (len(s.trace_id) == 16 and s.trace_id[:8] == b"\0" * 8), "128-bit id with zero high half"
        for ep in (s.local_endpoint, s.remote_endpoint):
            assert len(ep.ipv4) in (0, 4) and len(ep.ipv6) in (0, 16)
        tags = dict(s.tags)
        out.append({
            "traceId": s.trace_id.hex(), "id": s.id.hex(), "parentId": s.parent_id.hex() or None, "name": s.name,
            "kind": kinds[s.kind], "timestamp": s.timestamp, "duration": s.duration,
            "localServiceName": s.local_endpoint.service_name,
            "remoteServiceName": s.remote_endpoint.service_name,
            "remoteIPv4": str(ipaddress.IPv4Address(s.remote_endpoint.ipv4)) if s.remote_endpoint.ipv4 else "",
            "remotePort": s.remote_endpoint.port, "tags": tags, "error": "error" in tags,
            "debug": s.debug, "shared": s.shared,
            "annotations": [[a.timestamp, a.value] for a in s.annotations],
        })
    return sorted(out, key=lambda s: (s["id"], s["shared"]))


def expected(stem):
    spans = json.loads((FIXTURES / f"{stem}.expected.json").read_text())["spans"]
    return sorted(spans, key=lambda s: (s["id"], s["shared"]))


@pytest.mark.parametrize("stem", STEMS)
def test_json_encoder_output_is_valid_zipkin_v2(stem):
    data = json.loads((ENCODED / f"{stem}.to-v2.json").read_bytes())
    jsonschema.validate(data, LIST_OF_SPANS, format_checker=jsonschema.FormatChecker())
    assert summarise_json(data) == expected(stem)


@pytest.mark.parametrize("stem", STEMS)
def test_proto_encoder_output_parses_as_zipkin_proto3(stem):
    ListOfSpans = zipkin_proto_classes()
    msg = ListOfSpans()
    raw = (ENCODED / f"{stem}.to-proto.bin").read_bytes()
    msg.ParseFromString(raw)
    assert msg.SerializeToString() and len(msg.spans) > 0
    assert summarise_proto(msg) == expected(stem)


def test_schema_rejects_what_zipkin_forbids():
    bad = [
        [{"traceId": "ABCDEF0123456789", "id": "0123456789abcdef"}],
        [{"traceId": "0123456789abcdef", "id": "123"}],
        [{"traceId": "0123456789abcdef", "id": "0123456789abcdef", "kind": "client"}],
        [{"traceId": "0123456789abcdef", "id": "0123456789abcdef", "tags": {"a": 1}}],
        [{"traceId": "0123456789abcdef", "id": "0123456789abcdef", "timestamp": 1.5}],
    ]
    for b in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(b, LIST_OF_SPANS, format_checker=jsonschema.FormatChecker())
