import TestSupport
import Foundation
import Testing
@testable import Codecs
import Spans

/// Zipkin-origin spans → Datadog v0.4 → back, and Datadog → Datadog re-encoding.
@Suite struct TranslationZipkinDatadogTests {
    /// A batch shaped as the Zipkin v2 decoder produces it: 128-bit and 64-bit trace ids,
    /// parent links, µs timestamps ×1000, kinds, tags, an error, remote endpoints, debug.
    static func zipkinBatch() -> SpanBatch {
        var b = SpanBatch(metadata: BatchMetadata(format: .zipkinV2JSON))
        let trace128 = TraceID(high: 0x463a_c35c_9f64_13ad, low: 0x4848_5a39_53bb_6124)
        func tags(_ pairs: [(String, String)]) -> Range<UInt32> {
            let list = pairs.map { Tag(key: b.intern($0.0), value: b.intern($0.1)) }
            return b.addTags(list)
        }
        var root = Span(traceID: trace128, id: 0x1111)
        root.name = b.intern("get /api/{id}")
        root.kind = .server
        root.startNanos = 1_700_000_000_123_456_000
        root.durationNanos = 25_000_000
        root.localEndpoint = Endpoint(serviceName: b.intern("frontend"), ipv4: b.intern("10.0.0.1"), port: 8080)
        root.tags = tags([("http.method", "GET"), ("http.route", "/api/{id}"), ("http.path", "/api/7"), ("mesh", "default")])
        root.flags = [.shared]
        b.spans.append(root)

        var client = Span(traceID: trace128, id: 0x2222)
        client.parentID = 0x1111
        client.name = b.intern("call backend")
        client.kind = .client
        client.startNanos = 1_700_000_000_124_000_000
        client.durationNanos = 20_000_000
        client.localEndpoint = Endpoint(serviceName: b.intern("frontend"))
        client.remoteEndpoint = Endpoint(serviceName: b.intern("backend"), ipv4: b.intern("10.1.2.3"), port: 9000)
        client.tags = tags([("http.method", "POST"), ("error", "connection refused")])
        client.flags = [.error]
        b.spans.append(client)

        var db = Span(traceID: trace128, id: 0x3333)
        db.parentID = 0x2222
        db.name = b.intern("query")
        db.kind = .client
        db.startNanos = 1_700_000_000_125_000_000
        db.durationNanos = 1_000
        db.localEndpoint = Endpoint(serviceName: b.intern("backend"))
        db.tags = tags([("db.system", "postgresql"), ("db.statement", "SELECT 1")])
        b.spans.append(db)

        var producer = Span(traceID: TraceID(low: 0xabcdef), id: 0x4444)
        producer.name = b.intern("send")
        producer.kind = .producer
        producer.startNanos = 1_700_000_001_000_000_000
        producer.durationNanos = 5_000
        producer.localEndpoint = Endpoint(serviceName: b.intern("worker"))
        producer.tags = tags([("messaging.operation", "publish"), ("messaging.destination", "orders")])
        producer.flags = [.debug]
        producer.samplingPriority = 2
        b.spans.append(producer)
        return b
    }

    @Test func zipkinSpansSurviveDatadogRoundTrip() throws {
        let zipkin = Self.zipkinBatch()
        var out: [UInt8] = []
        DatadogV04.encode(zipkin, into: &out)
        #expect(DatadogV04.traceCount(zipkin) == 2)
        let dd = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
        try #require(dd.count == zipkin.count)
        for (z, d) in zip(zipkin.spans, dd.spans) {
            #expect(d.traceID == z.traceID, "128-bit id carried via _dd.p.tid")
            #expect(d.id == z.id)
            #expect(d.parentID == z.parentID)
            #expect(d.startNanos == z.startNanos)
            #expect(d.durationNanos == z.durationNanos)
            #expect(d.kind == z.kind)
            #expect(d.isError == z.isError)
            #expect(dd.string(d.name) == zipkin.string(z.name))
            #expect(dd.string(d.localEndpoint.serviceName) == zipkin.string(z.localEndpoint.serviceName))
            #expect(dd.string(d.remoteEndpoint.serviceName) == zipkin.string(z.remoteEndpoint.serviceName))
            #expect(dd.string(d.remoteEndpoint.ipv4) == zipkin.string(z.remoteEndpoint.ipv4))
            #expect(d.remoteEndpoint.port == z.remoteEndpoint.port)
            #expect(d.samplingPriority == z.samplingPriority)
            // Every Zipkin tag except `error` comes back; `error` became error=1 + error.msg.
            var want = zipkin.tagDictionary(z)
            if let e = want.removeValue(forKey: "error") { want["error.msg"] = e }
            if !z.remoteEndpoint.serviceName.isEmpty { want["peer.service"] = zipkin.string(z.remoteEndpoint.serviceName) }
            if !z.remoteEndpoint.ipv4.isEmpty { want["network.destination.ip"] = zipkin.string(z.remoteEndpoint.ipv4) }
            #expect(dd.tagDictionary(d) == want)
        }
        // Resource and type as the agent's OpenTelemetry translation derives them.
        #expect(dd.spans.map { dd.string($0.resource) } == ["GET /api/{id}", "POST", "SELECT 1", "publish orders"])
        #expect(dd.spans.map { dd.string($0.type) } == ["web", "http", "sql", "custom"])
    }

    /// Real client payloads (OpenTelemetry SDK and py_zipkin, captured by the Zipkin helper's
    /// tools) decoded by the Zipkin decoder, translated to Datadog and decoded back.
    @Test(arguments: ["otel-v2.json", "pyzipkin-v2.json"])
    func realZipkinPayloadsTranslate(file: String) throws {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/zipkin/\(file)", withExtension: nil))
        let zipkin = try ZipkinJSONV2.decode(Array(try Data(contentsOf: url)), metadata: .init(format: .zipkinV2JSON))
        try #require(!zipkin.isEmpty)
        var out: [UInt8] = []
        DatadogV04.encode(zipkin, into: &out)
        let dd = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
        let byID = Dictionary(dd.spans.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(dd.count == zipkin.count)
        for z in zipkin.spans {
            let d = try #require(byID[z.id])
            #expect(d.traceID == z.traceID && d.parentID == z.parentID)
            #expect(d.startNanos == z.startNanos && d.durationNanos == z.durationNanos)
            #expect(d.kind == z.kind && d.isError == z.isError)
            #expect(dd.string(d.name) == (z.name.isEmpty ? "unnamed_operation" : zipkin.string(z.name)))
            var want = zipkin.tagDictionary(z)
            if let e = want.removeValue(forKey: "error"), !e.isEmpty, e != "true",
               want["error.msg"] == nil, want["error.message"] == nil { want["error.msg"] = e }
            let got = dd.tagDictionary(d)
            for (k, v) in want { #expect(got[k] == v, "tag \(k) of \(hex16(z.id))") }
        }
    }

    /// Datadog carries an error as `error: 1` (message in `error.msg`); Zipkin as an `error` tag.
    /// Written to Zipkin (JSON and proto3), a Datadog error span gets the tag — the message, or
    /// "true" without one — so it decodes as an error again; a span that has the tag keeps it.
    @Test func datadogErrorsBecomeZipkinErrorTags() throws {
        var b = SpanBatch(metadata: BatchMetadata(format: .datadogV04))
        for (i, msg) in [(1, "upstream reset"), (2, nil), (3, nil)] as [(UInt64, String?)] {
            var s = Span(traceID: TraceID(low: 7), id: i)
            s.name = b.intern("op")
            s.localEndpoint = Endpoint(serviceName: b.intern("web"))
            s.flags = i == 3 ? [] : [.error]
            if let msg { s.tags = b.addTags([Tag(key: b.intern("error.msg"), value: b.intern(msg))]) }
            b.spans.append(s)
        }
        var json: [UInt8] = [], proto: [UInt8] = []
        ZipkinJSONV2.encode(b, into: &json)
        ZipkinProto3.encode(b, into: &proto)
        for decoded in [try ZipkinJSONV2.decode(json, metadata: .init(format: .zipkinV2JSON)),
                        try ZipkinProto3.decode(proto, metadata: .init(format: .zipkinV2Proto))] {
            #expect(decoded.spans.map { $0.flags.contains(.error) } == [true, true, false])
            #expect(decoded.tagValue(decoded.spans[0], "error") == "upstream reset")
            #expect(decoded.tagValue(decoded.spans[0], "error.msg") == "upstream reset")
            #expect(decoded.tagValue(decoded.spans[1], "error") == "true")
            #expect(decoded.tagValue(decoded.spans[2], "error") == nil)
        }
        // A Zipkin span that has its own error tag is written with it, once.
        let z = try ZipkinJSONV2.decode(Array(#"[{"traceId":"1","id":"2","tags":{"error":"boom"}}]"#.utf8), metadata: .init(format: .zipkinV2JSON))
        var again: [UInt8] = []
        ZipkinJSONV2.encode(z, into: &again)
        #expect(String(decoding: again, as: UTF8.self).components(separatedBy: "\"error\"").count == 2)
    }

    @Test func encoderSelectsSpansAndGroupsByTrace() throws {
        let zipkin = Self.zipkinBatch()
        var out: [UInt8] = []
        DatadogV04.encode(zipkin, spans: [3, 2, 0], into: &out)
        #expect(DatadogV04.traceCount(zipkin, spans: [3, 2, 0]) == 2)
        let dd = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
        #expect(dd.spans.map(\.id) == [0x4444, 0x3333, 0x1111])
        #expect(dd.spans[1].traceID.high == 0x463a_c35c_9f64_13ad, "tid goes on the first span of the chunk, whichever it is")
        #expect(dd.spans[2].traceID.high == 0x463a_c35c_9f64_13ad)
        var empty: [UInt8] = []
        DatadogV04.encode(zipkin, spans: [], into: &empty)
        #expect(empty == [0x90])
    }

    @Test(arguments: ["ddtrace_v04.msgpack", "ddtrace_v05.msgpack"])
    func datadogSpansReencodeLosslessly(file: String) throws {
        let body = try DD.fixture(file)
        let a = file.contains("v05") ? try DatadogV05.decode(body, metadata: .init(format: .datadogV05))
                                     : try DatadogV04.decode(body, metadata: .init(format: .datadogV04))
        var out: [UInt8] = []
        DatadogV04.encode(a, into: &out)
        let b = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
        #expect(DD.flat(b) == DD.flat(a))
        // The expectation written from ddtrace's bytes also holds for our re-encoding.
        DD.expectMatches(b, try DD.expectation(file.replacingOccurrences(of: ".msgpack", with: ".expected.json")))
    }

    /// Random batches (any origin, shared and 128-bit trace ids, kinds, tags, errors, remote
    /// endpoints, priorities) keep every modelled field through encode → decode.
    @Test func randomBatchesRoundTrip() throws {
        var rng = SplitMix64(seed: 2024)
        let keys = ["http.method", "component", "db.system", "k", "ünï", "a.b.c"]
        for round in 0..<200 {
            var b = SpanBatch(metadata: BatchMetadata(format: round % 2 == 0 ? .zipkinV2JSON : .datadogV04))
            let traces = (0..<3).map { _ in TraceID(high: rng.next() % 3 == 0 ? 0 : rng.next(), low: rng.next() | 1) }
            for i in 0..<Int(rng.next() % 12) {
                var s = Span(traceID: traces[Int(rng.next() % 3)], id: UInt64(i + 1) << 8 | (rng.next() & 0xff))
                s.parentID = rng.next() % 2 == 0 ? 0 : rng.next()
                s.name = rng.next() % 5 == 0 ? .empty : b.intern("op\(rng.next() % 100)")
                s.kind = SpanKind(rawValue: UInt8(rng.next() % 5))!
                s.startNanos = Int64(bitPattern: rng.next() >> 2)
                s.durationNanos = Int64(rng.next() % 1_000_000_000)
                s.localEndpoint.serviceName = b.intern("svc\(rng.next() % 4)")
                if rng.next() % 3 == 0 {
                    s.remoteEndpoint = Endpoint(serviceName: b.intern("peer"), ipv4: b.intern("192.168.\(rng.next() % 256).1"),
                                                port: UInt16(rng.next() % 65535 + 1))
                }
                if rng.next() % 4 == 0 { s.flags.insert(.error) }
                if rng.next() % 3 == 0 { s.samplingPriority = Int8(Int(rng.next() % 4) - 1) }
                var tags: [Spans.Tag] = []
                for k in keys where rng.next() % 2 == 0 {
                    tags.append(Spans.Tag(key: b.intern(k), value: b.intern(String(repeating: "v", count: Int(rng.next() % 40)))))
                }
                s.tags = b.addTags(tags)
                let m0 = UInt32(b.metrics.count)
                if rng.next() % 2 == 0 { b.metrics.append(Metric(key: b.intern("m"), value: Double(rng.next() % 1000) / 8)) }
                s.metrics = m0..<UInt32(b.metrics.count)
                b.spans.append(s)
            }
            var out: [UInt8] = []
            DatadogV04.encode(b, into: &out)
            let d = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
            try #require(d.count == b.count)
            let byID = Dictionary(uniqueKeysWithValues: d.spans.map { ($0.id, $0) })
            for z in b.spans {
                let x = try #require(byID[z.id])
                #expect(x.traceID == z.traceID && x.parentID == z.parentID)
                #expect(x.startNanos == z.startNanos && x.durationNanos == z.durationNanos)
                #expect(x.kind == z.kind && x.isError == z.isError)
                // The priority is the trace chunk's (the agent's rule), whichever span carried it.
                let chunk = b.spans.indices.filter { b.spans[$0].traceID == z.traceID }
                #expect(x.samplingPriority == DDChunk.priority(b.spans, chunk), "seed 2024 round \(round)")
                #expect(d.string(x.localEndpoint.serviceName) == b.string(z.localEndpoint.serviceName))
                #expect(d.string(x.name) == (z.name.isEmpty ? "unnamed_operation" : b.string(z.name)))
                #expect(x.remoteEndpoint == Endpoint() || d.string(x.remoteEndpoint.ipv4) == b.string(z.remoteEndpoint.ipv4))
                #expect(x.remoteEndpoint.port == z.remoteEndpoint.port)
                var want = b.tagDictionary(z)
                if !z.remoteEndpoint.isEmpty {
                    want["peer.service"] = "peer"; want["network.destination.ip"] = b.string(z.remoteEndpoint.ipv4)
                }
                #expect(d.tagDictionary(x) == want)
                let metrics = d.metrics(of: x).map { d.string($0.key) }
                #expect(metrics.filter { $0 == "m" }.count == b.metrics(of: z).count)
            }
        }
    }

    /// Encoder outputs committed for Tests/e2e/test_datadog_encoder.py, which checks them with
    /// Python's msgpack against the agent's field types. This test fails when the encoder's
    /// output changes without the files being regenerated (TRACERELAY_UPDATE_FIXTURES=1).
    @Test func committedEncoderOutputsAreCurrent() throws {
        var zipkinOut: [UInt8] = []
        DatadogV04.encode(Self.zipkinBatch(), into: &zipkinOut)
        let dd = try DatadogV04.decode(try DD.fixture("ddtrace_v04.msgpack"), metadata: .init(format: .datadogV04))
        var ddOut: [UInt8] = []
        DatadogV04.encode(dd, into: &ddOut)
        // ddtrace's v0.5 span links (`_dd.span_links` meta) become v0.4's native field.
        let links = try DatadogV05.decode(try DD.fixture("ddtrace_links_v05.msgpack"), metadata: .init(format: .datadogV05))
        var linksOut: [UInt8] = []
        DatadogV04.encode(links, into: &linksOut)
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/datadog")
        for (name, bytes) in [("encoder_from_zipkin.msgpack", zipkinOut), ("encoder_from_ddtrace_v04.msgpack", ddOut),
                              ("encoder_from_ddtrace_links_v05.msgpack", linksOut)] {
            let url = dir.appendingPathComponent(name)
            if ProcessInfo.processInfo.environment["TRACERELAY_UPDATE_FIXTURES"] == "1" {
                try Data(bytes).write(to: url)
            }
            #expect(Array(try Data(contentsOf: url)) == bytes, "\(name) is stale: rerun with TRACERELAY_UPDATE_FIXTURES=1")
        }
    }
}
