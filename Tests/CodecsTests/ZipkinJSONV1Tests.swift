import Testing
import Spans
@testable import Codecs

/// The v1 JSON reader's rules (Zipkin's `V1JsonSpanReader`); the conversion cases are in
/// ZipkinV1ConverterTests.
@Suite struct ZipkinJSONV1Tests {
    static let meta = BatchMetadata(format: .zipkinV1JSON)
    func decode(_ text: String) throws(DecodeError) -> SpanBatch { try ZipkinJSONV1.decode(Array(text.utf8), metadata: Self.meta) }

    /// `"duration": 0` is "unset", as absent is: the times come from the core annotations.
    @Test(arguments: [#","duration":0"#, ""])
    func zeroOrAbsentDurationIsUnset(_ duration: String) throws {
        let b = try decode(#"""
        [{"traceId":"a","id":"1","name":"get","timestamp":100\#(duration),
          "annotations":[{"timestamp":100,"value":"cs","endpoint":{"serviceName":"front"}},
                         {"timestamp":160,"value":"cr","endpoint":{"serviceName":"front"}}]}]
        """#)
        #expect(b.spans.count == 1)
        #expect(b.spans[0].kind == .client && b.spans[0].startNanos == 100_000 && b.spans[0].durationNanos == 60_000)
    }

    @Test func sharedClientServerSpanSplitsInTwoWithTheirOwnData() throws {
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
            {"key":"db.instance","value":"orders","endpoint":{"serviceName":"back"}}]}]
        """#)
        #expect(b.spans.count == 2)
        let (c, s) = (b.spans[0], b.spans[1])
        #expect(c.kind == .client && c.startNanos == 100_000 && c.durationNanos == 50_000)
        #expect(c.traceID == TraceID(low: 0xabc) && c.parentID == 0)
        #expect(b.string(c.localEndpoint.serviceName) == "front")
        #expect(b.tagDictionary(c) == ["http.path": "/x", "error": ""])
        #expect(c.isError && !c.flags.contains(.shared))
        #expect(s.kind == .server && s.flags.contains(.shared) && s.startNanos == 110_000 && s.durationNanos == 30_000)
        #expect(b.string(s.localEndpoint.serviceName) == "back" && s.localEndpoint.port == 9000)
        #expect(s.id == c.id && b.tagDictionary(s) == ["db.instance": "orders"] && !s.isError)
    }

    /// Zipkin keeps string binary annotations (any declared type) and drops the rest; `true`
    /// is an address only under ca/sa/ma with a non-empty endpoint; an empty `lc` is a marker.
    @Test func binaryAnnotationTypes() throws {
        let b = try decode(#"""
        [{"traceId":"1","id":"2","timestamp":5,"duration":1,"binaryAnnotations":[
           {"key":"s","value":"text","endpoint":{"serviceName":"svc"}},
           {"key":"bytes","value":"AQID","type":"BYTES"},
           {"key":"i64","value":3,"type":"I64"},
           {"key":"dbl","value":1.5,"type":"DOUBLE"},
           {"key":"no","value":false,"type":"BOOL"},
           {"key":"yes","value":true,"type":"BOOL"},
           {"key":"obj","value":{"a":1}},
           {"key":"nul","value":null},
           {"key":"lc","value":""},
           {"key":"sa","value":true,"endpoint":{}},
           {"key":"ca","value":true}]}]
        """#)
        try #require(b.spans.count == 1)
        let s = b.spans[0]
        #expect(b.tagDictionary(s) == ["s": "text", "bytes": "AQID"])
        #expect(b.string(s.localEndpoint.serviceName) == "svc")
        #expect(s.remoteEndpoint.isEmpty && s.kind == .unspecified)
        #expect(s.startNanos == 5000 && s.durationNanos == 1000)
    }

    /// A core annotation needs an endpoint; an empty endpoint is none.
    @Test func coreAnnotationWithoutEndpointIsPlain() throws {
        let b = try decode(#"""
        [{"traceId":"1","id":"2","annotations":[{"timestamp":5,"value":"sr","endpoint":{"serviceName":"s"}},
            {"timestamp":9,"value":"ss","endpoint":{}},{"timestamp":7,"value":"custom","endpoint":{"serviceName":"s"}}]}]
        """#)
        let s = b.spans[0]
        #expect(s.kind == .server && s.startNanos == 5000 && s.durationNanos == 0 && s.flags.contains(.shared))
        #expect(b.annotations(of: s).map { b.string($0.value) } == ["custom", "ss"])
    }

    /// Zipkin lower-cases service names, so spans of "Front" and "front" are one span; the
    /// relay keeps the case it received.
    @Test func serviceNamesCompareIgnoringCase() throws {
        let b = try decode(#"""
        [{"traceId":"1","id":"2","annotations":[{"timestamp":5,"value":"cs","endpoint":{"serviceName":"Front"}},
            {"timestamp":9,"value":"cr","endpoint":{"serviceName":"front"}}],
          "binaryAnnotations":[{"key":"k","value":"v","endpoint":{"serviceName":"FRONT"}}]}]
        """#)
        #expect(b.spans.count == 1)
        #expect(b.string(b.spans[0].localEndpoint.serviceName) == "Front" && b.spans[0].durationNanos == 4000)
        #expect(b.tagDictionary(b.spans[0]) == ["k": "v"])
    }

    /// Like zipkin2's span builder: a parent equal to the span is dropped, a repeated tag keeps
    /// the last value, repeated annotations collapse, debug is the sampled flag (AUTO_KEEP).
    @Test func builderNormalisation() throws {
        let b = try decode(#"""
        [{"traceId":"1","id":"2","parentId":"2","debug":true,"annotations":[
            {"timestamp":5,"value":"x"},{"timestamp":5,"value":"x"},{"timestamp":4,"value":"y"}],
          "binaryAnnotations":[{"key":"k","value":"a"},{"key":"k","value":"b"}]}]
        """#)
        let s = b.spans[0]
        #expect(s.parentID == 0)
        #expect(b.tagDictionary(s) == ["k": "b"] && b.tags(of: s).count == 1)
        #expect(b.annotations(of: s).map { "\($0.timestampNanos / 1000):\(b.string($0.value))" } == ["4:y", "5:x"])
        #expect(s.isDebug && s.samplingPriority == 1)
    }

    @Test func errorsNameWhatAndWhere() {
        do throws(DecodeError) { _ = try decode(#"[{"traceId":"0","id":"1"}]"#); Issue.record("accepted") }
        catch { #expect(error.message == "traceId is all zeros" && error.offset == 12 && error.format == .zipkinV1JSON) }
        do throws(DecodeError) { _ = try decode(#"[{"traceId":"1","id":"1","annotations":[{"timestamp":1,"value":5}]}]"#); Issue.record("accepted") }
        catch { #expect(error.message.contains("expected a string") && error.offset == 63) }
        do throws(DecodeError) { _ = try decode(#"[{"traceId":"1","id":"1","annotations":[{"value":"cs"}]}]"#); Issue.record("accepted") }
        catch { #expect(error.message == "annotation needs a timestamp and a value" && error.offset == 40) }
        do throws(DecodeError) { _ = try decode(#"[{"traceId":"1","id":"1","binaryAnnotations":[{"value":"x"}]}]"#); Issue.record("accepted") }
        catch { #expect(error.message == "binary annotation has no key" && error.offset == 46) }
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        for (i, name) in ["pyzipkin-v1.json", "otel-v1.json"].enumerated() {
            let r = Fuzz.run(try ZipkinFixtures.bytes(name), rounds: 2000, seed: UInt64(100 + i),
                             decode: { b throws(DecodeError) in try ZipkinJSONV1.decode(b, metadata: Self.meta) },
                             property: Fuzz.zipkinRoundTrip)
            #expect(r.failed > 0 && r.ok > 0, "\(name)")
        }
    }
}
