import Testing
import Spans
@testable import Codecs

@Suite struct ZipkinJSONV1Tests {
    static let meta = BatchMetadata(format: .zipkinV1JSON)
    func decode(_ text: String) throws(DecodeError) -> SpanBatch { try ZipkinJSONV1.decode(Array(text.utf8), metadata: Self.meta) }

    @Test func sharedClientServerSpanSplitsInTwo() throws {
        let b = try decode(#"""
        [{"traceId":"ABC","id":"1","parentId":"0","name":"get","timestamp":100,"duration":50,
          "annotations":[
            {"timestamp":100,"value":"cs","endpoint":{"serviceName":"front","ipv4":"10.0.0.1"}},
            {"timestamp":110,"value":"sr","endpoint":{"serviceName":"back","ipv4":"10.0.0.2","port":9000}},
            {"timestamp":140,"value":"ss","endpoint":{"serviceName":"back"}},
            {"timestamp":150,"value":"cr","endpoint":{"serviceName":"front"}}],
          "binaryAnnotations":[
            {"key":"http.path","value":"/x","endpoint":{"serviceName":"front"}},
            {"key":"error","value":"","endpoint":{"serviceName":"front"}},
            {"key":"retry","value":false},
            {"key":"count","value":3,"type":"I64"}]}]
        """#)
        #expect(b.spans.count == 2)
        let (c, s) = (b.spans[0], b.spans[1])
        #expect(c.kind == .client && c.startNanos == 100_000 && c.durationNanos == 50_000)
        #expect(c.traceID == TraceID(low: 0xabc) && c.parentID == 0)
        #expect(b.string(c.localEndpoint.serviceName) == "front")
        #expect(b.tagDictionary(c) == ["http.path": "/x", "error": "", "retry": "false", "count": "3"])
        #expect(c.isError && !c.flags.contains(.shared))
        #expect(s.kind == .server && s.flags.contains(.shared) && s.startNanos == 110_000 && s.durationNanos == 30_000)
        #expect(b.string(s.localEndpoint.serviceName) == "back" && s.localEndpoint.port == 9000)
        #expect(s.id == c.id && s.tags.isEmpty)
    }

    @Test func addressAnnotationsAndMessaging() throws {
        let b = try decode(#"""
        [{"traceId":"1","id":"2","name":"q","annotations":[{"timestamp":5,"value":"sr","endpoint":{"serviceName":"s"}},
            {"timestamp":9,"value":"ss"},{"timestamp":7,"value":"custom","endpoint":{"serviceName":"s"}}],
          "binaryAnnotations":[{"key":"ca","value":true,"endpoint":{"serviceName":"caller","ipv6":"::1","port":1}}]},
         {"traceId":"1","id":"3","timestamp":20,"annotations":[{"timestamp":20,"value":"ms","endpoint":{"serviceName":"p"}}],
          "binaryAnnotations":[{"key":"ma","value":true,"endpoint":{"serviceName":"kafka"}}]},
         {"traceId":"1","id":"4","timestamp":30,"duration":2,
          "binaryAnnotations":[{"key":"lc","value":"cache","endpoint":{"serviceName":"local"}},
                               {"key":"sa","value":true,"endpoint":{"serviceName":"redis"}}]}]
        """#)
        let (srv, prod, local) = (b.spans[0], b.spans[1], b.spans[2])
        #expect(srv.kind == .server && srv.startNanos == 5000 && srv.durationNanos == 4000 && srv.flags.contains(.shared))
        #expect(b.string(srv.remoteEndpoint.serviceName) == "caller" && b.string(srv.remoteEndpoint.ipv6) == "::1")
        #expect(b.annotations(of: srv).map { b.string($0.value) } == ["custom"])
        #expect(srv.tags.isEmpty)
        #expect(prod.kind == .producer && prod.startNanos == 20_000 && b.string(prod.remoteEndpoint.serviceName) == "kafka")
        #expect(local.kind == .unspecified && b.string(local.localEndpoint.serviceName) == "local")
        #expect(b.string(local.remoteEndpoint.serviceName) == "redis")
        #expect(b.tagDictionary(local) == ["lc": "cache"])
        #expect(b.spans.allSatisfy { $0.raw.isEmpty })
    }

    @Test func errorsNameWhatAndWhere() {
        do throws(DecodeError) { _ = try decode(#"[{"traceId":"0","id":"1"}]"#); Issue.record("accepted") }
        catch { #expect(error.message == "traceId is all zeros" && error.offset == 12 && error.format == .zipkinV1JSON) }
        do throws(DecodeError) { _ = try decode(#"[{"traceId":"1","id":"1","annotations":[{"value":5}]}]"#); Issue.record("accepted") }
        catch { #expect(error.message.contains("expected a string") && error.offset == 49) }
    }

    @Test func robustAgainstMutations() throws {
        for (i, name) in ["pyzipkin-v1.json", "otel-v1.json"].enumerated() {
            fuzz(try ZipkinFixtures.bytes(name), iterations: 2000, seed: UInt64(100 + i)) { b in
                _ = try ZipkinJSONV1.decode(b, metadata: Self.meta)
            }
        }
    }
}
