import Buffering
import Codecs
import Routing
import Spans
import Testing
@testable import Relay

/// Encoding the spans a backend receives into queue records, and joining records into request
/// bodies: checked by decoding the output again with the relay's own decoders.
@Suite struct BackendEncoderTests {
    static let twoSpans = #"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","kind":"SERVER","name":"get","timestamp":1700000000000000,"duration":1500,"localEndpoint":{"serviceName":"web"},"tags":{"kuma.zone":"eu-west-zone-1"}},{"traceId":"000000000000abcd","id":"00000000000000b1","kind":"CLIENT","name":"q","localEndpoint":{"serviceName":"web"},"remoteEndpoint":{"serviceName":"db"}}]"#

    func batch(_ json: String = twoSpans, format: SpanFormat = .zipkinV2JSON) throws -> SpanBatch {
        try ZipkinJSONV2.decode(Array(json.utf8), metadata: BatchMetadata(format: format, requestTags: [(key: "kuma.io/zone", value: "z,1")]))
    }

    func table(_ backends: String) throws -> RoutingTable {
        try RoutingTable(try RelayConfig.parse(yaml: """
        type: Mesh
        name: default
        tracing:
          backends:
        \(backends)
        """))
    }

    func all(_ b: SpanBatch) -> [BatchRoutes.Routed] { b.spans.indices.map { .init(span: UInt32($0), addedTags: 0) } }

    @Test func zipkinSameFormatCopiesTheOriginalBytes() throws {
        let b = try batch()
        let t = try table("    - {name: z, type: zipkin, conf: {url: 'http://127.0.0.1:1/api/v2/spans', traceId128bit: true}}")
        let r = BackendEncoder(t.backends[0]).encode(b, routed: all(b), table: t)
        let body = String(decoding: r.bytes, as: UTF8.self)
        #expect(body == Self.twoSpans, "raw spans are forwarded byte for byte")
        #expect(r.spanCount == 2)
        #expect(RecordMeta(r.metadata)?.format == .zipkinJSON)
    }

    @Test func traceId128bitFalseKeepsTheLow64Bits() throws {
        let b = try batch()
        let t = try table("    - {name: z, type: zipkin, conf: {url: 'http://127.0.0.1:1/api/v2/spans'}}")
        let r = BackendEncoder(t.backends[0]).encode(b, routed: all(b), table: t)
        let back = try ZipkinJSONV2.decode(Array(r.bytes), metadata: BatchMetadata(format: .zipkinV2JSON))
        #expect(back.spans.map(\.traceID.description) == ["48485a3953bb6124", "000000000000abcd"])
        #expect(back.spans.map(\.id) == b.spans.map(\.id))
    }

    @Test func protoBackendGetsProto3() throws {
        let b = try batch()
        let t = try table("    - {name: z, type: zipkin, conf: {url: 'http://127.0.0.1:1/api/v2/spans', apiVersion: httpProto, traceId128bit: true}}")
        let r = BackendEncoder(t.backends[0]).encode(b, routed: all(b), table: t)
        let back = try ZipkinProto3.decode(Array(r.bytes), metadata: BatchMetadata(format: .zipkinV2Proto))
        #expect(back.spans.map(\.traceID) == b.spans.map(\.traceID))
        #expect(RecordMeta(r.metadata)?.format == .zipkinProto)
    }

    @Test func datadogGetsTracesAndSplitServiceNames() throws {
        let b = try batch()
        let t = try table("    - {name: d, type: datadog, conf: {address: 127.0.0.1, port: 8126, splitService: true}}")
        let r = BackendEncoder(t.backends[0]).encode(b, routed: all(b), table: t)
        let meta = try #require(RecordMeta(r.metadata))
        #expect(meta.format == .datadogV04 && meta.traceCount == 2)
        #expect(meta.headers.contains { $0.name == "Datadog-Meta-Tracer-Version" })
        let back = try DatadogV04.decode(Array(r.bytes), metadata: BatchMetadata(format: .datadogV04))
        let services = Set(back.spans.map { back.string($0.localEndpoint.serviceName) })
        #expect(services == ["web_INBOUND", "web_OUTBOUND_db"])
    }

    @Test func tracerelayCarriesRequestTagsAndFullIds() throws {
        let b = try batch()
        let t = try table("    - {name: c, type: tracerelay, conf: {url: 'http://127.0.0.1:1/api/v2/spans'}}")
        let r = BackendEncoder(t.backends[0]).encode(b, routed: all(b), table: t)
        let meta = try #require(RecordMeta(r.metadata))
        #expect(meta.headers.first { $0.name == TracerelayTagsHeader.name }?.value == "kuma.io/zone=z%2C1")
        #expect(String(decoding: r.bytes, as: UTF8.self) == Self.twoSpans)
    }

    @Test func meshTraceLiteralTagsAreAdded() throws {
        let b = try batch()
        var cfg = try RelayConfig.parse(yaml: """
        type: Mesh
        name: default
        tracing:
          backends:
            - {name: z, type: zipkin, conf: {url: 'http://127.0.0.1:1/api/v2/spans', traceId128bit: true}}
        ---
        type: MeshTrace
        name: t
        mesh: default
        spec:
          targetRef: {kind: Mesh}
          default:
            backends: [{type: Zipkin, name: z, zipkin: {url: 'http://127.0.0.1:1/api/v2/spans', traceId128bit: true}}]
            tags: [{name: team, literal: core}]
        """)
        cfg.diagnostics = []
        let t = try RoutingTable(cfg)
        let routes = t.route(b)
        let backend = try #require(routes.perBackend.firstIndex { !$0.isEmpty })
        let r = BackendEncoder(t.backends[backend]).encode(b, routed: routes.perBackend[backend], table: t)
        let back = try ZipkinJSONV2.decode(Array(r.bytes), metadata: BatchMetadata(format: .zipkinV2JSON))
        for s in back.spans { #expect(back.tagValue(s, "team") == "core") }
        #expect(back.tagValue(back.spans[0], "kuma.zone") == "eu-west-zone-1")
    }

    @Test func fileBackendWritesOneSpanALine() throws {
        // Pretty-printed input: its raw bytes hold newlines, so lines must be re-encoded.
        let pretty = "[\n {\"traceId\":\"1\",\n \"id\":\"2\"},\n {\"traceId\":\"3\",\"id\":\"4\"}\n]"
        let b = try batch(pretty)
        let t = try table("    - {name: f, type: file, conf: {path: /tmp/x}}")
        let r = BackendEncoder(t.backends[0]).encode(b, routed: all(b), table: t)
        let lines = String(decoding: r.bytes, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2)
        for l in lines { _ = try ZipkinJSONV2.decode(Array(("[" + l + "]").utf8), metadata: BatchMetadata(format: .zipkinV2JSON)) }
    }

    @Test func recordsJoinIntoOneValidBody() throws {
        let b = try batch()
        let tz = try table("    - {name: z, type: zipkin, conf: {url: 'http://127.0.0.1:1/', traceId128bit: true}}")
        let ez = BackendEncoder(tz.backends[0])
        let r1 = ez.encode(b, routed: [all(b)[0]], table: tz), r2 = ez.encode(b, routed: [all(b)[1]], table: tz)
        let pz = Payload.join([r1, r2], meta: RecordMeta(r1.metadata)!)
        let backZ = try ZipkinJSONV2.decode(pz.body, metadata: BatchMetadata(format: .zipkinV2JSON))
        #expect(backZ.spans.map(\.id) == b.spans.map(\.id) && pz.spanCount == 2)

        // 20 one-trace records: the joined array header must switch from fixarray to array16.
        let td = try table("    - {name: d, type: datadog, conf: {address: 127.0.0.1, port: 8126}}")
        let ed = BackendEncoder(td.backends[0])
        let records = (0..<20).map { i in ed.encode(b, routed: [all(b)[i % 2]], table: td) }
        let pd = Payload.join(records, meta: RecordMeta(records[0].metadata)!)
        #expect(pd.traceCount == 20 && pd.body[0] == 0xdc)
        let backD = try DatadogV04.decode(pd.body, metadata: BatchMetadata(format: .datadogV04))
        #expect(backD.count == 20)
    }

    @Test func recordMetaRoundTripsAndRejectsUnknownFormats() {
        let m = RecordMeta(format: .datadogV04, traceCount: 70000, groupKey: "A: b\nX-Tracerelay-Tags: k=v")
        #expect(RecordMeta(m.encoded()[...]) == m)
        #expect(m.headers.map(\.value) == ["b", "k=v"])
        // A value that begins with a combining mark keeps it (": " + U+0301 is one Character).
        let odd = RecordMeta(format: .zipkinJSON, groupKey: RecordMeta.groupKey([("X-Tracerelay-Tags", "\u{301}k=v")]))
        #expect(odd.headers.map(\.value) == ["\u{301}k=v"])
        #expect(RecordMeta([9, 0, 0, 0, 0][...]) == nil)
        #expect(RecordMeta([][...]) == nil)
    }

    @Test func aWholeBodyIsForwardedWithoutEncodingWhenEverySpanGoesUnchanged() throws {
        let t = try table("    - {name: z, type: zipkin, conf: {url: 'http://127.0.0.1:1/', traceId128bit: true}}")
        let e = BackendEncoder(t.backends[0])
        // Whitespace around the spans: still a list of the original spans, sent as received.
        let spaced = "  [\n " + Self.twoSpans.dropFirst().dropLast() + " \n]\n"
        let b = try batch(String(spaced))
        #expect(BackendEncoder.bodyIsListOfRaws(b))
        let r = e.encode(b, routed: all(b), table: t)
        #expect(Array(r.bytes) == Array(spaced.utf8))
        // Only some spans routed: encoded from their raws instead.
        let one = e.encode(b, routed: [all(b)[1]], table: t)
        #expect(try ZipkinJSONV2.decode(Array(one.bytes), metadata: BatchMetadata(format: .zipkinV2JSON)).count == 1)
        // A span the decoder normalised (no raw: ids in upper case) rules the whole body out.
        let upper = try batch(#"[{"traceId":"ABC","id":"1"},{"traceId":"abc","id":"2"}]"#)
        #expect(!BackendEncoder.bodyIsListOfRaws(upper))
        let re = e.encode(upper, routed: all(upper), table: t)
        #expect(String(decoding: re.bytes, as: UTF8.self).contains("\"0000000000000abc\""))
        // Datadog v0.4 to a Datadog backend: the tracer's own bytes, trace count from them.
        let ddBytes = try ddBody()
        let dd = try DatadogV04.decode(ddBytes, metadata: BatchMetadata(format: .datadogV04))
        let td = try table("    - {name: d, type: datadog, conf: {address: 127.0.0.1, port: 8126}}")
        let rd = BackendEncoder(td.backends[0]).encode(dd, routed: all(dd), table: td)
        #expect(Array(rd.bytes) == ddBytes)
        #expect(RecordMeta(rd.metadata)?.traceCount == 2)
    }

    /// Two traces, msgpack v0.4, as a tracer writes them.
    func ddBody() throws -> [UInt8] {
        let b = try batch()
        var out: [UInt8] = []
        DatadogV04.encode(b, into: &out)
        return out
    }
}
