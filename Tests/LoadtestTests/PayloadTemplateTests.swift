import Codecs
import Spans
import Testing
@testable import LoadtestCore

@Suite struct PayloadTemplateTests {
    static let formats: [WireFormat] = [.zipkinJSON, .zipkinProto, .datadogV04, .datadogV05]

    func template(_ f: WireFormat, spans: Int = 300, seed: UInt64 = 42) throws -> PayloadTemplate {
        var shaper = TraceShaper(shape: MeshShape(), seed: seed)
        return try PayloadTemplate(format: f, shaper: &shaper, spans: spans, seed: seed)
    }

    @Test(arguments: formats)
    func patchedPayloadsDecodeWithUniqueIDsAndValidChecksums(_ f: WireFormat) throws {
        let t = try template(f)
        #expect(t.spanCount == 300)
        var ids = IDSource(seed: 7)
        var scratch = PayloadTemplate.Scratch()
        var seen = Set<UInt64>()
        var saw128 = false, saw64 = false, sawError = false
        let base: Int64 = 1_764_000_000_000_000
        for round in 0..<3 {
            let body = t.render(ids: &ids, baseMicros: base + Int64(round) * 1_000_000, scratch: &scratch)
            #expect(body.count == t.bytes.count)
            #expect(body != t.bytes)
            let batch = try f.decode(body)
            #expect(batch.count == 300)
            var idsInBatch = Set<UInt64>()
            for i in 0..<batch.count {
                let s = batch.spans[i]
                #expect(seen.insert(s.id).inserted, "span id \(hex16(s.id)) repeated")
                idsInBatch.insert(s.id)
                let carried = try #require(SpanChecksum.carried(batch, i))
                #expect(carried == SpanChecksum.expected(batch, i))
                #expect(s.startNanos / 1000 >= base + Int64(round) * 1_000_000)
                #expect(s.startNanos / 1000 < base + Int64(round) * 1_000_000 + 10_000_000)
                if s.traceID.high != 0 { saw128 = true } else { saw64 = true }
                if batch.tag(s, "error") != nil { sawError = true }
                #expect(batch.tags(of: s).count >= 15)
            }
            // Parents are patched to their parent's new id: every parent is in the same request.
            for s in batch.spans where s.parentID != 0 { #expect(idsInBatch.contains(s.parentID)) }
        }
        #expect(seen.count == 900)
        #expect(saw128 && saw64)
        #expect(sawError || f == .datadogV04 || f == .datadogV05)  // Datadog carries errors as the error field
    }

    @Test(arguments: formats)
    func alteringAnyTagValueBreaksThatSpansChecksumOnly(_ f: WireFormat) throws {
        let t = try template(f, spans: 50)
        var ids = IDSource(seed: 9)
        var scratch = PayloadTemplate.Scratch()
        var body = t.render(ids: &ids, baseMicros: 1_764_000_000_000_000, scratch: &scratch)
        // Rewrite one "zone-eu-1" to "zone-eu-2" (same length, still valid).
        let needle = Array("zone-eu-1".utf8)
        let at = try #require((0...(body.count - needle.count)).first { Array(body[$0..<$0 + needle.count]) == needle })
        body[at + needle.count - 1] = UInt8(ascii: "2")
        let batch = try f.decode(body)
        var accounting = SinkAccounting(region: nil)
        accounting.add(batch)
        if f == .datadogV05 {
            // v0.5 shares strings through its table: every span using that string changed.
            #expect(accounting.stats.altered > 1 && accounting.stats.altered < 50)
        } else {
            #expect(accounting.stats.altered == 1)
        }
        #expect(accounting.stats.uniqueSpans == 50)
    }

    @Test func templatesAreReproducibleFromTheSeed() throws {
        #expect(try template(.zipkinJSON, seed: 3).bytes == template(.zipkinJSON, seed: 3).bytes)
        #expect(try template(.zipkinJSON, seed: 3).bytes != template(.zipkinJSON, seed: 4).bytes)
    }

    @Test func meshShapeSpreadsServicesOverZonesAndRegions() throws {
        let shape = MeshShape(services: 12, zones: ["a", "b", "c"], zoneRegions: try MeshShape.parsePairs("a=r1,b=r2"))
        #expect(shape.serviceName(3) == "svc-03")
        #expect(shape.zone(ofService: 4) == "b")
        #expect(shape.region(ofService: 4) == "r2")
        #expect(shape.region(ofService: 5) == nil)
        #expect(throws: LoadtestError.self) { try MeshShape.parsePairs("a") }
    }

    @Test func v05BodiesCarryTheSameSpansAsV04() throws {
        let a = try template(.datadogV04, spans: 40, seed: 8), b = try template(.datadogV05, spans: 40, seed: 8)
        let da = try WireFormat.datadogV04.decode(a.bytes), db = try WireFormat.datadogV05.decode(b.bytes)
        #expect(da.count == 40 && db.count == 40)
        for i in 0..<40 { #expect(SpanChecksum.expected(da, i) == SpanChecksum.expected(db, i)) }
        #expect(b.bytes.count < a.bytes.count)  // the string table pays off
    }
}
