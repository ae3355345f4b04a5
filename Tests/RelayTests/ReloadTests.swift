import TestSupport
import Dispatch
import Foundation
import Logging
import Routing
import Synchronization
import Testing
import Transport
@testable import Relay

/// A relay started from a config *file* (so it can reload), admin endpoints on the ingest
/// listener, over real sockets. One keep-alive client sends everything, so a dropped
/// connection would show as an error.
final class ReloadingRelay: Sendable {
    let service: RelayService
    let path: String
    let spillDir: String
    let port: Int
    private let client: HTTPClient

    init(_ yaml: String, drainLimit: Duration = .seconds(30), spillDir: String? = nil) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tr-reload-\(UInt64.random(in: 0..<UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        path = dir + "/relay.yaml"
        self.spillDir = spillDir ?? dir + "/spill"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        var o = RelayOverrides()
        o.listen = ["127.0.0.1:0"]
        o.spillDirectory = self.spillDir
        let source = ConfigSource(path: path, overrides: o)
        let (file, table) = try source.load()
        var s = try RelayService.Settings(file: file, table: table, overrides: o)
        s.admin = nil
        s.shutdownGrace = .seconds(2)
        s.reload.source = source
        s.reload.drainLimit = drainLimit
        service = try RelayService(settings: s, logger: Logger(label: "relay"))
        try service.start()
        port = service.boundListeners[0].port
        client = HTTPClient(endpoint: ClientEndpoint(host: "127.0.0.1", port: port), group: TestRelay.clientGroup, logger: Logger(label: "client"))
    }

    func rewrite(_ yaml: String) throws { try yaml.write(toFile: path, atomically: true, encoding: .utf8) }

    /// One request on the shared client: status and body (-1 and the error on failure).
    func send(_ method: String, _ target: String, _ body: [UInt8] = []) -> (status: Int, body: String) {
        let out = Mutex<(Int, String)>((-1, "timeout"))
        let done = DispatchSemaphore(value: 0)
        client.send(ClientRequest(method: method, path: target, headers: [("Content-Type", "application/json")], body: body)) { r in
            switch r {
            case .success(let resp): out.withLock { $0 = (resp.status, String(decoding: resp.body, as: UTF8.self)) }
            case .failure(let e): out.withLock { $0 = (-1, e.description) }
            }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 15)
        return out.withLock { $0 }
    }

    func spans(_ ids: Range<Int>) -> Int { send("POST", "/api/v2/spans", zipkinBody(ids)).status }

    /// `POST /api/reload`: status and the JSON answer.
    func reload() throws -> (Int, [String: Any]) {
        let (status, body) = send("POST", "/api/reload")
        let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] ?? [:]
        return (status, doc)
    }

    /// Rewrites the file and reloads, expecting 200; the answer.
    func reload(to yaml: String) throws -> [String: Any] {
        try rewrite(yaml)
        let (status, doc) = try reload()
        #expect(status == 200, "\(doc)")
        return doc
    }

    func stop() {
        client.shutdown()
        let done = DispatchSemaphore(value: 0)
        service.shutdown { done.signal() }
        done.wait()
    }
}

/// A config with the given Zipkin backends (name → sink port); spans of service `web` go to
/// `web`'s backend (a TrafficTrace), everything else to the Mesh's default (the first).
func reloadConfig(_ backends: [(String, Int)], web: String? = nil, kinds: [String: String] = [:]) -> String {
    var y = "type: Relay\nbackends:\n"
    for (name, port) in backends {
        if kinds[name] == "datadog" {
            y += "  - {name: \(name), type: datadog, export: {batchDelay: 20ms, maxBackoff: 200ms, downAfter: 2}, conf: {address: 127.0.0.1, port: \(port)}}\n"
        } else {
            y += "  - {name: \(name), type: zipkin, export: {batchDelay: 20ms, maxBackoff: 200ms, downAfter: 2}, conf: {url: 'http://127.0.0.1:\(port)/api/v2/spans'}}\n"
        }
    }
    y += "---\ntype: Mesh\nname: default\ntracing:\n  defaultBackend: \(backends[0].0)\n"
    if let web {
        y += "---\ntype: TrafficTrace\nname: web\nmesh: default\nselectors:\n  - match:\n      kuma.io/service: web\nconf:\n  backend: \(web)\n"
    }
    return y
}

extension SinkServer {
    /// Answers 503 from now on: the relay keeps what it sends queued and retries.
    func busy() { state.answer.withLock { $0 = (503, "{\"error\":\"busy\"}", []) } }
    func accept() { state.answer.withLock { $0 = (200, "", []) } }
}

/// A relay from `yaml` whose backend at `sink` (busy) holds spans 1...n, retrying.
private func relayHolding(_ n: Int, at sink: SinkServer, _ yaml: String, drainLimit: Duration = .seconds(30)) throws -> ReloadingRelay {
    sink.busy()
    let relay = try ReloadingRelay(yaml, drainLimit: drainLimit)
    #expect(relay.spans(0..<n) == 202)
    #expect(eventually { !sink.requests.isEmpty }, "the backend was tried")
    return relay
}

private func names(_ doc: [String: Any], _ key: String) -> [String] {
    ((doc["backends"] as? [String: Any])?[key] as? [String]) ?? []
}

@Suite(.serialized) struct ReloadTests {
    @Test func aNewBackendGetsTheSpansRoutedToItAfterTheSwap() throws {
        let a = try SinkServer(), b = try SinkServer()
        defer { a.stop(); b.stop() }
        let relay = try ReloadingRelay(reloadConfig([("a", a.port)]))
        defer { relay.stop() }
        #expect(relay.spans(0..<50) == 202)
        #expect(try eventually { try a.zipkinIDs().count == 50 })

        let doc = try relay.reload(to: reloadConfig([("a", a.port), ("b", b.port)], web: "b"))
        #expect(names(doc, "added") == ["b"])
        #expect(names(doc, "unchanged") == ["a"])
        #expect(doc["generation"] as? Int == 2)
        #expect(relay.service.routingGeneration == 2)
        #expect(relay.service.lastReload?.ok == true)

        #expect(relay.spans(50..<100) == 202)
        #expect(try eventually { try b.zipkinIDs().count == 50 })
        #expect(Set(try b.zipkinIDs()) == Set((51...100).map(UInt64.init)))
        #expect(Set(try a.zipkinIDs()) == Set((1...50).map(UInt64.init)), "a keeps exactly what it had")
        #expect(eventually { relay.service.backendStats["b"]?.snapshot.sentSpans == 50 })
    }

    @Test func aRemovedBackendDrainsWhatItHoldsToItsOldTargetThenStops() throws {
        let a = try SinkServer(), b = try SinkServer()
        defer { a.stop(); b.stop() }
        let relay = try relayHolding(30, at: a, reloadConfig([("a", a.port)]))
        defer { relay.stop() }

        let doc = try relay.reload(to: reloadConfig([("b", b.port)]))
        #expect(names(doc, "removed") == ["a"])
        #expect(names(doc, "added") == ["b"])
        #expect(relay.service.backendStats["a"] == nil, "a gets no new spans")
        #expect(relay.spans(30..<40) == 202)
        #expect(try eventually { try b.zipkinIDs().count == 10 })

        // a's target recovers: what a held goes there, and a stops once empty.
        a.accept()
        #expect(try eventually(15) { Set(try a.zipkinIDs()) == Set((1...30).map(UInt64.init)) })
        #expect(eventually { relay.service.registry.draining.isEmpty }, "a stopped once drained")
        #expect(Set(try b.zipkinIDs()) == Set((31...40).map(UInt64.init)))
    }

    @Test func aRemovedBackendThatCannotDrainKeepsItsSpillForTheNextStart() throws {
        let a = try SinkServer(), b = try SinkServer()
        defer { a.stop(); b.stop() }
        let relay = try relayHolding(20, at: a, reloadConfig([("a", a.port)]), drainLimit: .milliseconds(300))
        _ = try relay.reload(to: reloadConfig([("b", b.port)]))
        #expect(eventually { relay.service.registry.draining.isEmpty }, "a gave up after the drain limit")
        relay.stop()
        #expect(try a.zipkinIDs().isEmpty)

        // Configured again at the next start, a replays what its spill kept.
        a.accept()
        let again = try ReloadingRelay(reloadConfig([("a", a.port)]), spillDir: relay.spillDir)
        defer { again.stop() }
        #expect(try eventually(15) { Set(try a.zipkinIDs()) == Set((1...20).map(UInt64.init)) })
    }

    @Test func aChangedURLSendsQueuedAndNewSpansToTheNewTarget() throws {
        let old = try SinkServer(), new = try SinkServer()
        defer { old.stop(); new.stop() }
        let relay = try relayHolding(20, at: old, reloadConfig([("a", old.port)]))
        defer { relay.stop() }

        let doc = try relay.reload(to: reloadConfig([("a", new.port)]))
        #expect(names(doc, "changed") == ["a"])
        #expect(names(doc, "sender_replaced") == ["a"])
        #expect(relay.spans(20..<40) == 202)
        #expect(try eventually(15) { Set(try new.zipkinIDs()) == Set((1...40).map(UInt64.init)) }, "queued spans follow the new URL")
        #expect(try old.zipkinIDs().isEmpty)
        #expect(eventually { relay.service.backendStats["a"]?.snapshot.sentSpans == 40 })
    }

    @Test func anInvalidConfigIsRefusedAndTheOldTableStays() throws {
        let a = try SinkServer()
        defer { a.stop() }
        let relay = try ReloadingRelay(reloadConfig([("a", a.port)]))
        defer { relay.stop() }
        try relay.rewrite(reloadConfig([("a", a.port)]).replacingOccurrences(of: "type: zipkin", with: "type: jaeger"))
        let (status, doc) = try relay.reload()
        #expect(status == 400)
        #expect(doc["error"] as? String == "invalid_config")
        #expect((doc["message"] as? String ?? "").contains("jaeger"), "\(doc)")
        #expect(relay.service.lastReload?.ok == false)
        #expect(relay.service.lastReload?.generation == 1)
        #expect(relay.service.routingGeneration == 1)

        #expect(relay.spans(0..<10) == 202)
        #expect(try eventually { Set(try a.zipkinIDs()) == Set((1...10).map(UInt64.init)) }, "the old table still routes")

        // A broken file (not YAML at all) is refused the same way.
        try relay.rewrite("backends: [\n")
        #expect(try relay.reload().0 == 400)
        #expect(relay.service.routingGeneration == 1)
    }

    @Test func settingsThatAreNotReloadedAreNamedInTheAnswer() throws {
        let a = try SinkServer()
        defer { a.stop() }
        let relay = try ReloadingRelay(reloadConfig([("a", a.port)]))
        defer { relay.stop() }
        let same = try relay.reload(to: reloadConfig([("a", a.port)]))
        #expect(same["message"] as? String == "no backend changed")
        #expect(same["restart_needed"] as? [String] == [])
        let spill = reloadConfig([("a", a.port)]).replacingOccurrences(of: "type: Relay\n", with: "type: Relay\nspill: {memoryBytes: 8MiB}\n")
        let doc = try relay.reload(to: spill)
        #expect(doc["restart_needed"] as? [String] == ["spill settings changes need a restart"], "\(doc)")
        #expect(relay.service.lastReload?.generation == 3)
        #expect(relay.service.lastReload?.summary?.unchanged == ["a"])
    }

    @Test func aBackendConfiguredAgainWhileDrainingKeepsItsQueue() throws {
        let a = try SinkServer(), b = try SinkServer()
        defer { a.stop(); b.stop() }
        let relay = try relayHolding(25, at: b, reloadConfig([("a", a.port), ("b", b.port)], web: "b"))
        defer { relay.stop() }
        _ = try relay.reload(to: reloadConfig([("a", a.port)]))
        #expect(eventually { relay.service.registry.draining.count == 1 })
        let doc = try relay.reload(to: reloadConfig([("a", a.port), ("b", b.port)], web: "b"))
        #expect(names(doc, "added") == ["b"])
        #expect(relay.service.registry.draining.isEmpty, "b is live again, with the queue it had")
        #expect(relay.spans(25..<35) == 202)
        b.accept()
        #expect(try eventually(15) { Set(try b.zipkinIDs()) == Set((1...35).map(UInt64.init)) })
        #expect(try b.zipkinIDs().count == 35, "each span once")
        #expect(try a.zipkinIDs().isEmpty)
    }

    @Test func aKindChangeIsRemovePlusAdd() throws {
        let zipkin = try SinkServer(), datadog = try SinkServer()
        defer { zipkin.stop(); datadog.stop() }
        let relay = try relayHolding(15, at: zipkin, reloadConfig([("a", zipkin.port)]))
        defer { relay.stop() }

        let doc = try relay.reload(to: reloadConfig([("a", datadog.port)], kinds: ["a": "datadog"]))
        #expect(names(doc, "kind_changed") == ["a"])
        #expect(relay.spans(15..<25) == 202)
        #expect(eventually { datadog.requests.contains { $0.path == "/v0.4/traces" } }, "new spans go to the new kind")
        zipkin.accept()
        #expect(try eventually(15) { Set(try zipkin.zipkinIDs()) == Set((1...15).map(UInt64.init)) }, "the old kind's queue drains to its old target")
        #expect(eventually { relay.service.registry.draining.isEmpty })
    }
}
