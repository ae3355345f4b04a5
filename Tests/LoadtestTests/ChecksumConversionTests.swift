import Codecs
import Spans
import Testing
@testable import LoadtestCore

/// The checksum covers what must survive a format conversion (issue 11: a Zipkin → Datadog
/// relay showed ~half the spans "altered" because the checksum covered tags the translation
/// adds from the remote endpoint and the error tag Datadog carries as a field).
@Suite struct ChecksumConversionTests {
    static let pairs: [(WireFormat, WireFormat)] = {
        let all: [WireFormat] = [.zipkinJSON, .zipkinProto, .datadogV04, .datadogV05]
        return all.flatMap { a in all.map { (a, $0) } }
    }()

    static let seed: UInt64 = 0x11C0DE

    func rendered(_ f: WireFormat, spans: Int = 400) throws -> [UInt8] {
        var shaper = TraceShaper(shape: MeshShape(), seed: Self.seed)
        let t = try PayloadTemplate(format: f, shaper: &shaper, spans: spans, seed: Self.seed)
        var ids = IDSource(seed: Self.seed)
        var scratch = PayloadTemplate.Scratch()
        return t.render(ids: &ids, baseMicros: 1_764_000_000_000_000, scratch: &scratch)
    }

    @Test(arguments: pairs)
    func everyConversionKeepsEveryChecksum(_ pair: (WireFormat, WireFormat)) throws {
        let (from, to) = pair
        let decoded = try from.decode(try rendered(from))
        let converted = try to.decode(try to.encode(decoded))
        #expect(converted.count == decoded.count)
        let checked = SinkAccounting.check(converted, region: nil, bytes: 0)
        // Datadog → Zipkin included: a Datadog error span gets Zipkin's `error` tag, so its
        // error flag (part of the checksum) survives.
        #expect(checked.altered == 0, "\(from.rawValue) → \(to.rawValue): \(checked.altered) of \(converted.count) altered (seed \(Self.seed))")
        #expect((0..<decoded.count).filter { decoded.spans[$0].isError } == (0..<converted.count).filter { converted.spans[$0].isError })
        #expect(checked.unverified == 0)
    }

    @Test func theGeneratorSetsOnlyCoveredTags() {
        var shaper = TraceShaper(shape: MeshShape(), seed: Self.seed)
        let drafts = shaper.draftSpans(count: 2000).spans
        let keys = Set(drafts.flatMap { $0.tags.map(\.0) })
        let covered = Set(SpanChecksum.coveredTagKeys).union(["error"])
        #expect(keys.subtracting(covered).isEmpty, "generator tags outside coveredTagKeys: \(keys.subtracting(covered).sorted())")
        #expect(Set(SpanChecksum.coveredTagKeys).subtracting(keys).isEmpty, "covered keys the generator never sets")
    }

    @Test(arguments: [WireFormat.zipkinJSON, .datadogV04])
    func renamingACoveredTagOrSettingTheErrorFlagIsAnAlteration(_ f: WireFormat) throws {
        let batch = try f.decode(try rendered(f, spans: 60))
        // Rename `upstream_cluster` on the first span (the covered tag is gone, an uncovered one appears).
        var dropped = batch
        let first = dropped.spans[0]
        let at = try #require(first.tags.first { dropped.equals(dropped.tags[Int($0)].key, "upstream_cluster") })
        dropped.tags[Int(at)].key = dropped.intern("upstream_cluster.renamed")
        dropped.spans[0].raw = .empty  // or the Zipkin JSON encoder copies the span's original bytes
        let reread = try f.decode(try f.encode(dropped))
        let c1 = SinkAccounting.check(reread, region: nil, bytes: 0)
        #expect(c1.altered == 1)
        // Flip the error flag of a span without an error tag (in the decoded batch: the Zipkin
        // encoders would not carry a bare flag, the bug `everyConversionKeepsEveryChecksum` knows).
        var flipped = batch
        let i = try #require(flipped.spans.indices.first { !flipped.spans[$0].isError })
        flipped.spans[i].flags.insert(.error)
        #expect(SinkAccounting.check(flipped, region: nil, bytes: 0).altered == 1)
        #expect(SinkAccounting.check(batch, region: nil, bytes: 0).altered == 0)
    }
}
