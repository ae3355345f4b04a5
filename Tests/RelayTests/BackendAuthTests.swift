import Foundation
import TestSupport
import Testing
@testable import Relay

/// Backend tokens in the pipeline (`conf.auth`; Auth/BackendCredentials.swift) over real
/// sockets: every request carries the header, on each endpoint of a sharded backend too; a 401
/// is retried and counted, never dropped; a reload that reads a new token sends it from then on
/// without building new senders (a sharded backend's senders cannot be rebuilt by a reload).
@Suite(.serialized) struct BackendAuthTests {
    /// A token file in a fresh directory and `count` sinks; `close()` stops and removes them.
    struct Backends {
        let dir: String
        let sinks: [SinkServer]
        var tokenFile: String { dir + "/token" }
        var ports: [Int] { sinks.map(\.port) }

        init(count: Int, token: String) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("tr-backend-auth-\(UInt64.random(in: 0..<UInt64.max))").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            sinks = try (0..<count).map { _ in try SinkServer() }
            try write(token)
        }

        func write(_ token: String) throws { try (token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8) }

        func close() {
            for s in sinks { s.stop() }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// A Zipkin backend `sink` on the given sink ports (several: one queue per endpoint) with a token.
    func config(_ ports: [Int], tokenFile: String) -> String {
        let urls = ports.map { "'http://127.0.0.1:\($0)/api/v2/spans'" }.joined(separator: ", ")
        return """
        type: Relay
        backends:
          - name: sink
            type: zipkin
            export: {batchDelay: 20ms, maxBackoff: 200ms, downAfter: 2}
            conf: {urls: [\(urls)], traceId128bit: true, auth: {tokenFile: '\(tokenFile)'}}
        ---
        {type: Mesh, name: default, tracing: {defaultBackend: sink}}
        """
    }

    /// The Authorization header of every request `sink` received from index `from` on.
    func authorizations(_ sink: SinkServer, from: Int = 0) -> [String?] { sink.requests.dropFirst(from).map { $0.headers["authorization"] } }

    /// Posts one trace at a time until each sink has a request beyond the `seen` it had
    /// (traces spread over the endpoints by the ring).
    func spreadTraces(_ send: (Range<Int>, Int) -> Int, over sinks: [SinkServer], seen: [Int]? = nil) -> Bool {
        var trace = 1
        let seen = seen ?? sinks.map { _ in 0 }
        return eventually(15) {
            #expect(send(trace * 10..<trace * 10 + 2, trace) == 202)
            trace += 1
            return zip(sinks, seen).allSatisfy { $0.requests.count > $1 }
        }
    }

    @Test func everyRequestToEveryEndpointCarriesTheToken() throws {
        let b = try Backends(count: 2, token: "tok-first")
        defer { b.close() }
        let relay = try TestRelay(config(b.ports, tokenFile: b.tokenFile))
        defer { relay.stop() }
        #expect(spreadTraces({ (try? relay.post("/api/v2/spans", zipkinBody($0, trace: $1)).0) ?? -1 }, over: b.sinks))
        for s in b.sinks {
            #expect(!authorizations(s).isEmpty && authorizations(s).allSatisfy { $0 == "Bearer tok-first" }, "\(authorizations(s))")
        }
    }

    @Test func unauthorizedIsRetriedAndCountedNotDropped() throws {
        let b = try Backends(count: 1, token: "tok-first")
        defer { b.close() }
        let sink = b.sinks[0]
        sink.state.answer.withLock { $0 = (401, "{\"error\":\"unauthorized\"}", []) }
        let relay = try TestRelay(config(b.ports, tokenFile: b.tokenFile))
        defer { relay.stop() }
        #expect(try relay.post("/api/v2/spans", zipkinBody(0..<5)).0 == 202)
        #expect(eventually { relay.stats("sink").failedRequests >= 2 && relay.stats("sink").retriedSpans >= 10 })
        let refused = relay.stats("sink")
        #expect(refused.droppedSpans == 0 && refused.sentSpans == 0, "a 401 keeps the spans: \(refused)")
        #expect(refused.lastError?.hasPrefix("HTTP 401") == true, "\(refused.lastError ?? "-")")
        sink.state.answer.withLock { $0 = (200, "", []) }
        #expect(try eventually { Set(try sink.zipkinIDs()).count == 5 })
        #expect(eventually { relay.stats("sink").sentSpans == 5 })
        #expect(relay.stats("sink").droppedSpans == 0)
    }

    @Test func aReloadSendsTheNewTokenWithoutNewSenders() throws {
        let b = try Backends(count: 2, token: "tok-first")
        defer { b.close() }
        let sinks = b.sinks
        let relay = try ReloadingRelay(config(b.ports, tokenFile: b.tokenFile))
        defer { relay.stop() }
        let post = { (ids: Range<Int>, trace: Int) in relay.send("POST", "/api/v2/spans", zipkinBody(ids, trace: trace)).status }
        #expect(spreadTraces(post, over: sinks))
        // Only the file changes: the configuration text is the same.
        try b.write("tok-second")
        let (status, answer) = try relay.reload()
        #expect(status == 200, "\(answer)")
        let before = sinks.map(\.requests.count)
        #expect(spreadTraces(post, over: sinks, seen: before))
        for (s, n) in zip(sinks, before) {
            let after = authorizations(s, from: n)
            #expect(after.allSatisfy { $0 == "Bearer tok-second" }, "\(after)")
        }
    }
}
