import Codecs
import Dispatch
import Foundation
import Spans
import Synchronization
import Testing
import TestSupport
@testable import Relay

/// A relay whose backend's endpoints come from a file resolver, over real sockets: trace
/// affinity, an endpoint leaving with a full queue (rerouted, nothing lost), one joining
/// (≈ 1/N of the traces move to it).
@Suite(.serialized) struct ScaleOutPipelineTests {
    static let spansPerTrace = 3

    /// Traces `traces`, each with `spansPerTrace` spans, interleaved in one Zipkin body. Span
    /// ids are unique over all traces.
    static func body(_ traces: Range<Int>) -> [UInt8] {
        var spans: [String] = []
        for k in 0..<spansPerTrace {
            for t in traces {
                let trace = String(format: "%016llx%016llx", UInt64(t + 1) &* 0x9E37_79B9, UInt64(t + 1))
                let id = String(format: "%016llx", UInt64(t * spansPerTrace + k + 1))
                spans.append(#"{"traceId":"\#(trace)","id":"\#(id)","name":"op","timestamp":1700000000000000,"duration":5,"localEndpoint":{"serviceName":"web"}}"#)
            }
        }
        return Array(("[" + spans.joined(separator: ",") + "]").utf8)
    }

    /// (trace number, span id) of every span a sink took (2xx answers only).
    static func received(_ sink: SinkServer) -> [(trace: Int, span: UInt64)] {
        sink.requests.filter { (200..<300).contains($0.status) }.flatMap { r in
            let b = (try? ZipkinJSONV2.decode(r.body, metadata: BatchMetadata(format: .zipkinV2JSON)))
            return (b?.spans ?? []).map { (Int($0.traceID.low) - 1, $0.id) }
        }
    }

    static func writeEndpoints(_ path: String, _ sinks: [SinkServer]) throws {
        // Written aside and renamed, as a ConfigMap update is: the resolver never reads half a file.
        let text = "# central relays\n" + sinks.map { "127.0.0.1:\($0.port)\n" }.joined()
        try text.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
        _ = rename(path + ".tmp", path)
    }

    /// A fresh directory, the endpoints file's path in it, and a relay config whose `central`
    /// backend resolves that file every 100 ms.
    static func setUp() throws -> (dir: String, file: String, yaml: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tr-scaleout-\(UInt64.random(in: 0..<UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = dir + "/endpoints.txt"
        return (dir, file, """
        type: Relay
        backends:
          - name: central
            type: zipkin
            export: {batchDelay: 10ms, maxBackoff: 200ms, downAfter: 2}
            conf: {resolver: {file: '\(file)', interval: 100ms}, traceId128bit: true}
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: central
        """)
    }

    @Test func tracesStickToOneEndpointAndAnEndpointThatLeavesLosesNothing() throws {
        let sinks = try (0..<4).map { _ in try SinkServer() }
        defer { for s in sinks { s.stop() } }
        let (a, b, c, d) = (sinks[0], sinks[1], sinks[2], sinks[3])
        let (dir, file, yaml) = try Self.setUp()
        try Self.writeEndpoints(file, [a, b, c])
        let relay = try TestRelay(yaml, spillDir: dir + "/spill")
        defer { relay.stop() }
        let shards = try #require(relay.service.registry.live["central"]?.shards)
        #expect(shards.endpoints.count == 3)

        @Sendable func send(_ traces: Range<Int>) {
            for start in stride(from: traces.lowerBound, to: traces.upperBound, by: 50) {
                let (status, _, text) = (try? relay.post("/api/v2/spans", Self.body(start..<min(start + 50, traces.upperBound)))) ?? (-1, [], "")
                #expect(status == 202, "\(text)")
            }
        }
        func allSpans(_ traces: Range<Int>) -> Set<UInt64> {
            Set(traces.flatMap { t in (0..<Self.spansPerTrace).map { UInt64(t * Self.spansPerTrace + $0 + 1) } })
        }
        func delivered() -> [(trace: Int, span: UInt64)] { sinks.flatMap(Self.received) }

        // 1. Every trace's spans land at exactly one sink; each sink gets about a third.
        send(0..<300)
        #expect(eventually { Set(delivered().map(\.span)) == allSpans(0..<300) })
        var owner: [Int: Set<Int>] = [:]
        for (i, s) in sinks.enumerated() { for r in Self.received(s) { owner[r.trace, default: []].insert(i) } }
        #expect(owner.count == 300 && owner.values.allSatisfy { $0.count == 1 }, "a trace was split over sinks")
        for s in [a, b, c] {
            let share = Double(Set(Self.received(s).map(\.trace)).count) / 300
            #expect(share > 0.2 && share < 0.47, "share \(share)")
        }

        // 2. C fails (503): its spans queue at the relay, its place in the ring stays.
        c.state.answer.withLock { $0 = (503, "{\"error\":\"busy\"}", []) }
        send(300..<600)
        #expect(eventually { c.requests.filter { $0.status == 503 }.count >= 2 })
        #expect(shards.endpoints.count == 3, "a failing endpoint is not removed")

        // 3. C leaves the file while spans keep coming: what it held is rerouted to A and B.
        let sending = DispatchGroup()
        DispatchQueue.global().async(group: sending) { send(600..<900) }
        try Self.writeEndpoints(file, [a, b])
        #expect(eventually { shards.endpoints.count == 2 })
        #expect(eventually { Set(delivered().map(\.span)) == allSpans(0..<900) }, "zero spans lost")
        #expect(sending.wait(timeout: .now() + 30) == .success)
        #expect(eventually { Set(delivered().map(\.span)) == allSpans(0..<900) })
        let spans = delivered().map(\.span)
        #expect(spans.count == Set(spans).count, "no span delivered twice (\(spans.count - Set(spans).count) duplicates)")
        #expect(shards.figures.reroutedSpans > 0 && shards.figures.ringChanges == 1)
        let cQueue = dir + "/spill/" + ShardedBackend.queueName("central", "http://127.0.0.1:\(c.port)")
        #expect(eventually { !FileManager.default.fileExists(atPath: cQueue) }, "the leaver's queue directory is removed once rerouted")
        owner = [:]
        for (i, s) in sinks.enumerated() { for r in Self.received(s) { owner[r.trace, default: []].insert(i) } }
        #expect(owner.values.allSatisfy { $0.count == 1 }, "a trace was split over sinks")

        // 4. D joins: about a third of new traces go to it, the rest stay where the ring had them.
        try Self.writeEndpoints(file, [a, b, d])
        #expect(eventually { shards.endpoints.count == 3 })
        send(900..<1500)
        #expect(eventually { Set(delivered().map(\.span)) == allSpans(0..<1500) })
        let toD = Set(Self.received(d).map(\.trace))
        let share = Double(toD.count) / 600
        print("scale-out: share of new traces at the joining endpoint \(share) (ideal 1/3)")
        #expect(share > 0.22 && share < 0.45, "share moved to the new endpoint \(share)")
        #expect(toD.allSatisfy { $0 >= 900 })
    }

    /// A restart replays each endpoint's spill; the queue of an endpoint no longer resolved at
    /// start (found on disk) is rerouted to those that are.
    @Test func aRestartReroutesTheSpillOfAnEndpointThatIsGone() throws {
        let a = try SinkServer(), b = try SinkServer()
        defer { a.stop(); b.stop() }
        b.state.answer.withLock { $0 = (503, "{\"error\":\"busy\"}", []) }
        let (dir, file, yaml) = try Self.setUp()
        try Self.writeEndpoints(file, [a, b])
        let bQueue = ShardedBackend.queueName("central", "http://127.0.0.1:\(b.port)")
        do {
            let relay = try TestRelay(yaml, spillDir: dir + "/spill")
            for start in stride(from: 0, to: 200, by: 50) {
                #expect(try relay.post("/api/v2/spans", Self.body(start..<(start + 50))).0 == 202)
            }
            let bTraces = Set(Self.received(a).map(\.trace)).count
            #expect(eventually { Set(Self.received(a).map(\.trace)).count > 50 && b.requests.count >= 2 }, "A took its share: \(bTraces)")
            relay.stop()  // B's queue goes to disk
        }
        let atA = Set(Self.received(a).map(\.span))
        #expect(atA.count < 600 && !atA.isEmpty)
        #expect(FileManager.default.fileExists(atPath: dir + "/spill/" + bQueue))
        // B is gone when the relay starts again: its spill is rerouted to A.
        try Self.writeEndpoints(file, [a])
        let relay = try TestRelay(yaml, spillDir: dir + "/spill")
        defer { relay.stop() }
        let all = Set((0..<600).map { UInt64($0 + 1) })
        #expect(eventually { Set(Self.received(a).map(\.span)) == all }, "every span reached A")
        #expect(eventually { !FileManager.default.fileExists(atPath: dir + "/spill/" + bQueue) })
        let spans = Self.received(a).map(\.span)
        #expect(spans.count == Set(spans).count, "nothing twice")
        #expect(b.requests.allSatisfy { $0.status == 503 }, "B never took a span")
    }
}
