import Foundation
import Testing
import Spans
@testable import Codecs

/// Bodies captured from real clients (OpenTelemetry SDK exporters, py_zipkin) by
/// Tests/fixtures-tools/zipkin/capture.py, checked against the expectations it wrote.
@Suite struct ZipkinFixtureTests {
    static let cases: [(file: String, expected: String, format: SpanFormat)] = [
        ("otel-v2.json", "otel-v2", .zipkinV2JSON),
        ("otel-proto.bin", "otel-proto", .zipkinV2Proto),
        ("otel-v1.json", "otel-v1", .zipkinV1JSON),
        ("pyzipkin-v2.json", "pyzipkin-v2", .zipkinV2JSON),
        ("pyzipkin-proto.bin", "pyzipkin-proto", .zipkinV2Proto),
        ("pyzipkin-v1.json", "pyzipkin-v1", .zipkinV1JSON),
    ]

    static func decode(_ body: [UInt8], _ format: SpanFormat) throws(DecodeError) -> SpanBatch {
        let meta = BatchMetadata(format: format)
        switch format {
        case .zipkinV2JSON: return try ZipkinJSONV2.decode(body, metadata: meta)
        case .zipkinV2Proto: return try ZipkinProto3.decode(body, metadata: meta)
        default: return try ZipkinJSONV1.decode(body, metadata: meta)
        }
    }

    @Test(arguments: cases.indices)
    func decodesRealClientBodies(_ i: Int) throws {
        let c = Self.cases[i]
        let batch = try Self.decode(try ZipkinFixtures.bytes(c.file), c.format)
        let got = batch.summaries()
        let want = try ZipkinFixtures.expected(c.expected)
        #expect(got.count == want.count, "\(c.file)")
        for (g, w) in zip(got, want) {
            #expect(g == w, "\(c.file): got \(g)\nwant \(w)")
        }
    }

    @Test(arguments: cases.indices)
    func mutatedInputsFailCleanlyOrRoundTrip(_ i: Int) throws {
        let c = Self.cases[i]
        let body = try ZipkinFixtures.bytes(c.file)
        let r = Fuzz.run(body, rounds: 1500, seed: UInt64(i) + 1, decode: { b throws(DecodeError) in try Self.decode(b, c.format) },
                         property: Fuzz.zipkinRoundTrip)
        #expect(r.failed > 0, "\(c.file)")
    }
}
