import Foundation
import Spans
import Testing
@testable import LoadtestCore

@Suite struct SinkAccountingTests {
    func body(_ f: WireFormat = .zipkinJSON, spans: Int = 100, idSeed: UInt64 = 1) throws -> (PayloadTemplate, [UInt8]) {
        var shaper = TraceShaper(shape: MeshShape(), seed: 5)
        let t = try PayloadTemplate(format: f, shaper: &shaper, spans: spans, seed: 5)
        var ids = IDSource(seed: idSeed)
        var scratch = PayloadTemplate.Scratch()
        return (t, t.render(ids: &ids, baseMicros: 1_764_000_000_000_000, scratch: &scratch))
    }

    @Test func countsUniqueAndDuplicateSpans() throws {
        let (_, b) = try body()
        let batch = try WireFormat.zipkinJSON.decode(b)
        var a = SinkAccounting(region: nil)
        a.add(batch, bytes: b.count)
        #expect(a.stats.spans == 100 && a.stats.uniqueSpans == 100 && a.stats.duplicates == 0)
        a.add(batch, bytes: b.count)  // a retried request
        #expect(a.stats.spans == 200 && a.stats.uniqueSpans == 100 && a.stats.duplicates == 100)
        #expect(a.stats.altered == 0 && a.stats.unverified == 0)
        #expect(a.stats.requests == 2 && a.stats.bytes == 2 * b.count)
        #expect(a.stats.perService.values.reduce(0, +) == 200)
        #expect(a.stats.perFormat["zipkin_v2_json"] == 200)
    }

    @Test func flagsSpansOutsideTheRegion() throws {
        let (t, b) = try body()
        let batch = try WireFormat.zipkinJSON.decode(b)
        let us = (0..<batch.count).filter { batch.tag(batch.spans[$0], "region").map(batch.string) == "us-east-1" }.count
        #expect(us > 0 && us < t.spanCount)
        var a = SinkAccounting(region: "eu-west-1")
        a.add(batch)
        #expect(a.stats.violations == us)
        #expect(a.stats.noRegion == 0)
        var none = SinkAccounting(region: nil)
        none.add(batch)
        #expect(none.stats.violations == 0)
    }

    @Test func spansWithoutChecksumAreUnverifiedNotAltered() throws {
        let json = #"[{"traceId":"1","id":"2","name":"x","localEndpoint":{"serviceName":"web"},"tags":{"region":"us-east-1"}}]"#
        let batch = try WireFormat.zipkinJSON.decode(Array(json.utf8))
        var a = SinkAccounting(region: "eu-west-1")
        a.add(batch)
        #expect(a.stats.unverified == 1 && a.stats.altered == 0 && a.stats.violations == 1)
        #expect(a.stats.perService == ["web": 1])
    }

    @Test func alteredTimestampIsCaught() throws {
        let (_, b) = try body(spans: 20)
        var batch = try WireFormat.zipkinJSON.decode(b)
        batch.spans[3].startNanos += 1000  // as if a hop rewrote the time by 1 µs
        var a = SinkAccounting(region: nil)
        a.add(batch)
        #expect(a.stats.altered == 1)
    }

    @Test func statsEncodeAsJSON() throws {
        var s = SinkStats()
        s.uniqueSpans = 3; s.perService = ["a": 3]
        let data = try JSONEncoder().encode(s)
        let back = try JSONDecoder().decode(SinkStats.self, from: data)
        #expect(back == s)
        #expect(String(decoding: data, as: UTF8.self).contains("\"uniqueSpans\":3"))
    }
}

@Suite struct SendReportTests {
    @Test func reportCarriesPercentilesAndStatusCodes() throws {
        var h = LatencyHistogram()
        for v in [100, 200, 300, 400, 10_000] as [UInt64] { h.record(v) }
        let r = SendReport(format: "zipkin-json", http: "http/1.1", target: "http://127.0.0.1:1/", connections: 2, streams: 1,
                           batchSpans: 500, rateSpansPerSecond: 1000, elapsedSeconds: 2, sentRequests: 5, sentSpans: 2500,
                           sentBytes: 10, acceptedRequests: 4, acceptedSpans: 2000, failedRequests: 1,
                           statusCodes: ["202": 4, "503": 1], spansPerSecond: 1250, requestsPerSecond: 2.5, cpuSeconds: 0.5,
                           spansPerCPUSecond: 5000, maxSendLagMicros: 3, latencyMicros: LatencySummary(h))
        let json = r.json()
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let lat = try #require(obj["latencyMicros"] as? [String: Any])
        #expect(lat["p99.9"] as? Int == 10_000)
        #expect(lat["p50"] as? Int == 300)
        #expect(lat["max"] as? Int == 10_000)
        #expect((obj["statusCodes"] as? [String: Int])?["503"] == 1)
        #expect(try JSONDecoder().decode(SendReport.self, from: Data(json.utf8)) == r)
        #expect(r.summary().contains("p99.9"))
    }
}

@Suite struct SpanIDSetTests {
    @Test func insertsGrowsAndFindsDuplicates() {
        var s = SpanIDSet(capacity: 4)
        var rng = SplitMix64(seed: 1)
        var keys: [(UInt64, UInt64)] = []
        for i in 0..<50_000 { keys.append((i % 3 == 0 ? 0 : rng.next(), rng.next())) }
        var fresh = 0, again = 0
        for k in keys where s.insert(traceLow: k.0, id: k.1) { fresh += 1 }
        #expect(fresh == 50_000 && s.count == 50_000)
        for k in keys.prefix(1000) where !s.insert(traceLow: k.0, id: k.1) { again += 1 }
        #expect(again == 1000)
        let z1 = s.insert(traceLow: 0, id: 0), z2 = s.insert(traceLow: 0, id: 0)
        let o1 = s.insert(traceLow: 1, id: 0), o2 = s.insert(traceLow: 1, id: 0)
        #expect(z1 && !z2 && o1 && !o2)
        #expect(s.count == 50_001)
    }
}
