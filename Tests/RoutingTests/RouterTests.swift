import TestSupport
import Testing
import Spans
@testable import Routing

@Suite struct RouterTests {
    /// The cached path must agree with the uncached one, also when the cache is cleared often.
    @Test(arguments: [4, 8192]) func cacheAgreesWithUncachedRouting(_ capacity: Int) throws {
        let t = try table(regional + trafficTrace("v2", [[("kuma.io/service", "web"), ("version", "v2")]], backend: "global"))
        var rng = SplitMix64(seed: 7)
        let zones = ["zone-eu-1", "zone-us-1", "zone-x", ""]
        let services = ["web", "payments", "api", ""]
        var specs: [TestSpan] = []
        for _ in 0..<3_000 {
            var tags: [(String, String)] = [("http.method", "GET"), ("component", "proxy")]
            let z = zones[Int(rng.next() % 4)]
            if !z.isEmpty { tags.append((rng.next() % 2 == 0 ? "kuma.zone" : "zone", z)) }
            if rng.next() % 3 == 0 { tags.append(("version", rng.next() % 2 == 0 ? "v2" : "v1")) }
            if rng.next() % 10 == 0 { tags.append(("region", "us-east-1")) }
            let s = services[Int(rng.next() % 4)]
            specs.append(TestSpan(tags: tags, service: s.isEmpty ? nil : s, trace: TraceID(low: rng.next())))
        }
        let batch = makeBatch(specs, requestTags: rng.next() % 2 == 0 ? [] : [("team", "core")])
        var router = Router(t, capacity: capacity)
        for i in 0..<batch.count {
            #expect(router.route(i, in: batch) == t.route(i, in: batch))
        }
        let routes = router.route(batch)
        var expected = Array(repeating: [UInt32](), count: t.backends.count)
        var refused = 0
        for i in 0..<batch.count {
            let d = t.route(i, in: batch)
            if let b = d.backend, d.sampled { expected[b].append(UInt32(i)) }
            if d.refusal != nil { refused += 1 }
        }
        #expect(routes.perBackend.map { $0.map(\.span) } == expected)
        #expect(routes.refused.reduce(0) { $0 + $1.count } == refused)
        #expect(refused > 0)
    }

    @Test func emptyValuesAndAbsentTagsAreDistinct() throws {
        // `zone: ""` is present-but-empty; it must not share a cache entry with "no zone".
        let y = regional + trafficTrace("empty-zone", [[("kuma.io/zone", "*")]], backend: "global")
        let t = try table(y)
        var r = Router(t)
        let batch = makeBatch([TestSpan(tags: [("kuma.zone", "")], service: "w"), TestSpan(tags: [], service: "w")])
        #expect(r.route(0, in: batch).matched == t.route(0, in: batch).matched)
        #expect(r.route(1, in: batch).matched == t.route(1, in: batch).matched)
        #expect(r.route(0, in: batch).matched != r.route(1, in: batch).matched)
    }
}

@Suite struct ByteHelperTests {
    @Test func loadWordIsTheZeroPaddedLittleEndianWord() {
        var rng = SplitMix64(seed: 11)
        for n in 0...12 {
            for _ in 0..<50 {
                let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                var expected: UInt64 = 0
                for (i, b) in bytes.prefix(8).enumerated() { expected |= UInt64(b) << UInt64(8 * i) }
                bytes.withUnsafeBytes { p in
                    #expect(n == 0 || loadWord(p.baseAddress!, n) == expected)
                    var other = bytes
                    if n > 0 { other[Int(rng.next() % UInt64(n))] &+= 1 }
                    other.withUnsafeBytes { q in
                        #expect(n == 0 || fastEqual(p.baseAddress!, q.baseAddress!, n) == (bytes == other))
                    }
                }
            }
        }
    }
}
