import Foundation
import Testing
@testable import Codecs
import Spans

/// Span links through every path: ddtrace's native v0.4 `span_links` and its v0.5
/// `_dd.span_links` meta (both captured from ddtrace's encoders by
/// Fixtures/datadog/capture_span_links.py) mean the same links, v0.4 output carries them
/// natively, and Zipkin output carries them as the `_dd.span_links` tag.
@Suite struct DatadogSpanLinksTests {
    typealias W = MessagePackWriter

    /// A link as the JSON tag states it.
    struct Link: Equatable, Sendable {
        var traceID: String, spanID: String
        var tracestate: String? = nil
        var flags: Int? = nil
        var attributes: [String: String]? = nil
    }

    /// The links ddtrace was given.
    static let rootLinks = [
        Link(traceID: "00000000000000aa0000000000000055", spanID: "0000000000000066", tracestate: "dd=s:1;t.dm:-4", flags: 1,
             attributes: ["link.kind": "follows_from", "n": "3", "ok": "true", "list.0": "x", "list.1": "y"]),
        Link(traceID: "00000000000000000000000000000077", spanID: "0000000000000088"),
    ]
    static let childLinks = [
        Link(traceID: "00000000000000000000000000000099", spanID: "000000000000009a", attributes: ["quote": "say \"hi\""]),
    ]

    /// The links of a span, parsed from its `_dd.span_links` tag with Foundation's JSON parser.
    static func links(_ b: SpanBatch, _ s: Span) throws -> [Link] {
        let text = try #require(b.tagValue(s, "_dd.span_links"), "span \(hex16(s.id)) has no _dd.span_links")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        return try list.map { d in
            Link(traceID: try #require(d["trace_id"] as? String), spanID: try #require(d["span_id"] as? String),
                 tracestate: d["tracestate"] as? String, flags: (d["flags"] as? NSNumber)?.intValue,
                 attributes: d["attributes"] as? [String: String])
        }
    }

    static func decodeFixture(_ name: String) throws -> SpanBatch {
        let body = try DD.fixture(name)
        return name.contains("v05") ? try DatadogV05.decode(body, metadata: .init(format: .datadogV05))
                                    : try DatadogV04.decode(body, metadata: .init(format: .datadogV04))
    }

    @Test(arguments: ["ddtrace_links_v04.msgpack", "ddtrace_links_v05.msgpack"])
    func nativeAndMetaLinksDecodeAlike(_ file: String) throws {
        let b = try Self.decodeFixture(file)
        try #require(b.count == 2)
        #expect(try Self.links(b, b.spans[0]) == Self.rootLinks)
        #expect(try Self.links(b, b.spans[1]) == Self.childLinks)
        #expect(b.tags(of: b.spans[0]).filter { b.string($0.key) == "_dd.span_links" }.count == 1)
    }

    /// v0.4 output always writes links natively (from v0.4 and from v0.5 input), and nothing
    /// is lost through a second decode.
    @Test(arguments: ["ddtrace_links_v04.msgpack", "ddtrace_links_v05.msgpack"])
    func v04OutputCarriesNativeLinks(_ file: String) throws {
        let b = try Self.decodeFixture(file)
        var out: [UInt8] = []
        DatadogV04.encode(b, into: &out)
        #expect(!out.contains(subsequence: Array("_dd.span_links".utf8)), "no meta copy beside the native field")
        #expect(out.contains(subsequence: Array("span_links".utf8)))
        let again = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
        #expect(try Self.links(again, again.spans[0]) == Self.rootLinks)
        #expect(try Self.links(again, again.spans[1]) == Self.childLinks)
        // Native fields as the agent's SpanLink has them: flags with bit 31, trace_id_high.
        let native = try Self.nativeLinks(out)
        #expect(native[0][0]["flags"] == 0x8000_0001 && native[0][0]["trace_id_high"] == 0xaa && native[0][0]["trace_id"] == 0x55)
        #expect(native[0][1]["flags"] == nil && native[0][1]["trace_id_high"] == nil && native[0][1]["span_id"] == 0x88)
    }

    /// Zipkin has no links: the Zipkin encoders carry them as the `_dd.span_links` tag, and a
    /// Zipkin span with that tag gets native links when it goes to Datadog.
    @Test func zipkinCarriesLinksAsATag() throws {
        var b = try Self.decodeFixture("ddtrace_links_v04.msgpack")
        b.metadata.format = .constructed
        var json: [UInt8] = []
        ZipkinJSONV2.encode(b, into: &json)
        let z = try ZipkinJSONV2.decode(json, metadata: .init(format: .zipkinV2JSON))
        #expect(try Self.links(z, z.spans[0]) == Self.rootLinks)
        var proto: [UInt8] = []
        ZipkinProto3.encode(b, into: &proto)
        let zp = try ZipkinProto3.decode(proto, metadata: .init(format: .zipkinV2Proto))
        #expect(try Self.links(zp, zp.spans[1]) == Self.childLinks)
        var dd: [UInt8] = []
        DatadogV04.encode(z, into: &dd)
        #expect(try Self.nativeLinks(dd)[1][0]["span_id"] == 0x9a)
    }

    /// A `_dd.span_links` value that is not a list of links stays a meta entry, byte for byte.
    @Test func unreadableLinkTagStaysMeta() throws {
        for value in ["not json", #"[{"span_id":"0000000000000001"}]"#, #"[{"trace_id":"zz","span_id":"1"}]"#, "{}"] {
            var b = SpanBatch(metadata: .init(format: .constructed))
            var s = Span(traceID: TraceID(low: 1), id: 2)
            s.tags = b.addTags([Tag(key: b.intern("_dd.span_links"), value: b.intern(value))])
            b.spans.append(s)
            var out: [UInt8] = []
            DatadogV04.encode(b, into: &out)
            let d = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
            #expect(d.tagValue(d.spans[0], "_dd.span_links") == value)
            #expect(try Self.nativeLinks(out)[0].isEmpty)
        }
    }

    /// Links without their required ids are dropped on decode (they point nowhere).
    @Test func linksWithoutIdsAreDropped() throws {
        var body: [UInt8] = []
        W.writeArrayHeader(1, into: &body); W.writeArrayHeader(1, into: &body); W.writeMapHeader(3, into: &body)
        W.writeString("trace_id", into: &body); W.writeUInt(1, into: &body)
        W.writeString("span_id", into: &body); W.writeUInt(2, into: &body)
        W.writeString("span_links", into: &body); W.writeArrayHeader(2, into: &body)
        W.writeMapHeader(1, into: &body); W.writeString("trace_id", into: &body); W.writeUInt(5, into: &body)
        W.writeMapHeader(2, into: &body); W.writeString("trace_id_high", into: &body); W.writeUInt(5, into: &body)
        W.writeString("span_id", into: &body); W.writeUInt(6, into: &body)
        let b = try DatadogV04.decode(body, metadata: .init(format: .datadogV04))
        #expect(try Self.links(b, b.spans[0]) == [Link(traceID: "00000000000000050000000000000000", spanID: "0000000000000006")])
    }

    /// Per trace chunk, per span: the native links' integer fields (independent msgpack walk).
    static func nativeLinks(_ body: [UInt8]) throws -> [[[String: UInt64]]] {
        try body.withUnsafeBytes { raw in
            var r = MessagePackReader(raw)
            var spans: [[[String: UInt64]]] = []
            for _ in 0..<(try r.readArrayHeader()) {
                for _ in 0..<(try r.readArrayHeader()) {
                    var links: [[String: UInt64]] = []
                    for _ in 0..<(try r.readMapHeader()) {
                        let k = try r.readString { String(decoding: $0, as: UTF8.self) }
                        guard k == "span_links" else { try r.skip(); continue }
                        for _ in 0..<(try r.readArrayHeader()) {
                            var link: [String: UInt64] = [:]
                            for _ in 0..<(try r.readMapHeader()) {
                                let lk = try r.readString { String(decoding: $0, as: UTF8.self) }
                                if ["trace_id", "trace_id_high", "span_id", "flags"].contains(lk) { link[lk] = try r.readUInt64Bits() } else { try r.skip() }
                            }
                            links.append(link)
                        }
                    }
                    spans.append(links)
                }
            }
            return spans
        }
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence s: [UInt8]) -> Bool {
        guard s.count <= count else { return false }
        return (0...(count - s.count)).contains { self[$0..<($0 + s.count)].elementsEqual(s) }
    }
}
