import TestSupport
import Dispatch
import Glibc
import Testing
@testable import Transport

/// Answers 202 with the FNV-1a checksum and length of the body it got, so the test can verify
/// every byte arrived.
private func checksumHandler(_ seen: H2Recorder<HTTPRequest>? = nil) -> ClosureHandler {
    ClosureHandler { request, respond in
        seen?.add(request)
        respond(HTTPResponse(status: 202, headers: [("X-Checksum", String(h2Checksum(request.body))), ("Connection", "keep-alive")],
                             body: Array("\(request.body.count) \(h2Checksum(request.body))".utf8)))
    }
}

/// Keeps `respond` closures for the test to call later.
private final class HeldAnswers: @unchecked Sendable {
    // Guarded by the H2Recorder's mutex.
    let responders = H2Recorder<@Sendable (HTTPResponse) -> Void>()
    var handler: ClosureHandler { ClosureHandler { _, respond in self.responders.add(respond) } }
}

private func expectChecksumAnswer(_ response: HTTP2TestClient.Response?, body: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(response?.status == 202, sourceLocation: sourceLocation)
    #expect(response.map { String(decoding: $0.body, as: UTF8.self) } == "\(body.count) \(h2Checksum(body))", sourceLocation: sourceLocation)
    #expect(response?.headers.first { $0.name == "content-length" }?.value == String("\(body.count) \(h2Checksum(body))".utf8.count),
            sourceLocation: sourceLocation)
}

@Suite struct HTTP2ServerEngineTests {
    @Test(arguments: [H2Split.whole, .byteByByte, .random(seed: 7), .random(seed: 12345)])
    func post50KBodyArrivesIntact(split: H2Split) {
        let seen = H2Recorder<HTTPRequest>()
        let h = H2Harness(handler: checksumHandler(seen), split: split)
        let body = h2RandomBytes(50_000, seed: 42)
        let id = h.onQueue { c, _ in c.request(method: "POST", path: "/api/v2/spans?x=1&y=2", headers: [("content-type", "application/json")], body: body) }
        #expect(h.run { c, _ in c.response(id)?.closed == true })
        expectChecksumAnswer(h.onQueue { c, _ in c.response(id) }, body: body)
        let r = seen.all.first
        #expect(seen.count == 1)
        #expect(r?.method == "POST")
        #expect(r?.path == "/api/v2/spans")
        #expect(r?.query == "x=1&y=2")
        #expect(r?.version == .http2)
        #expect(r?.headers["content-type"] == "application/json")
        #expect(r?.headers["host"] == "test.local")
        #expect(r?.remoteAddress == "127.0.0.1:40000")
        #expect(r?.listener == "test-h2")
        #expect(r?.headers.contains { $0.name.hasPrefix(":") } == false)
        // The connection-specific header the handler set must not reach the wire.
        #expect(h.onQueue { c, _ in c.response(id)?.headers.contains { $0.name == "connection" } } == false)
        #expect(h.onQueue { _, e in e.inFlightRequests } == 0)
        #expect(h.disposition == .open)
    }

    @Test(arguments: [H2Split.whole, .random(seed: 99)])
    func tenConcurrentStreams(split: H2Split) {
        let seen = H2Recorder<HTTPRequest>()
        let h = H2Harness(handler: checksumHandler(seen), split: split)
        let bodies = (0..<10).map { h2RandomBytes(1_000 + $0 * 7_919, seed: UInt64($0)) }
        let ids = h.onQueue { c, _ in bodies.map { c.request(path: "/s", body: $0) } }
        #expect(h.run { c, _ in ids.allSatisfy { c.response($0)?.closed == true } })
        for (id, body) in zip(ids, bodies) { expectChecksumAnswer(h.onQueue { c, _ in c.response(id) }, body: body) }
        #expect(seen.count == 10)
    }

    @Test func bodyWithoutContentLengthAndEmptyBody() {
        let h = H2Harness(handler: checksumHandler())
        let body = h2RandomBytes(70_000, seed: 3)
        let a = h.onQueue { c, _ in c.request(body: body, contentLength: false) }
        let b = h.onQueue { c, _ in c.request(method: "GET", path: "/empty") }
        #expect(h.run { c, _ in c.response(a)?.closed == true && c.response(b)?.closed == true })
        expectChecksumAnswer(h.onQueue { c, _ in c.response(a) }, body: body)
        expectChecksumAnswer(h.onQueue { c, _ in c.response(b) }, body: [])
    }

    @Test(arguments: [true, false])
    func bodyOverTheLimitGets413(declared: Bool) {
        let seen = H2Recorder<HTTPRequest>()
        var config = HTTP2Configuration()
        config.maxBodyBytes = 20_000
        let h = H2Harness(handler: checksumHandler(seen), configuration: config)
        let big = h.onQueue { c, _ in c.request(body: h2RandomBytes(50_000, seed: 5), contentLength: declared) }
        #expect(h.run { c, _ in c.response(big)?.closed == true })
        let r = h.onQueue { c, _ in c.response(big) }
        #expect(r?.status == 413)
        let text = String(decoding: r?.body ?? [], as: UTF8.self)
        #expect(text.contains("body_too_large"))
        #expect(seen.count == 0)
        // The connection stays usable, and a body at the limit passes.
        let body = h2RandomBytes(20_000, seed: 6)
        let ok = h.onQueue { c, _ in c.request(body: body) }
        #expect(h.run { c, _ in c.response(ok)?.closed == true })
        expectChecksumAnswer(h.onQueue { c, _ in c.response(ok) }, body: body)
        #expect(h.disposition == .open)
        #expect(h.onQueue { _, e in e.inFlightRequests } == 0)
    }

    /// Partly sent bodies across streams are bounded per connection: the stream that would
    /// pass the bound gets 503, the others finish, and the bytes are released afterwards.
    @Test func bufferedBodiesAreBoundedPerConnection() {
        var config = HTTP2Configuration()
        config.maxBufferedBodyBytes = 30_000
        let h = H2Harness(handler: checksumHandler(), configuration: config)
        let bodies = [h2RandomBytes(20_000, seed: 1), h2RandomBytes(20_000, seed: 2)]
        let ids = h.onQueue { c, _ in bodies.map { c.request(body: $0) } }
        #expect(h.run { c, _ in ids.allSatisfy { c.response($0)?.closed == true } })
        let statuses = h.onQueue { c, _ in ids.map { c.response($0)?.status ?? 0 } }
        #expect(statuses.sorted() == [202, 503])
        let later = h2RandomBytes(25_000, seed: 3)
        let id = h.onQueue { c, _ in c.request(body: later) }
        #expect(h.run { c, _ in c.response(id)?.closed == true })
        expectChecksumAnswer(h.onQueue { c, _ in c.response(id) }, body: later)
    }

    @Test func headerListOverTheLimitGets431() {
        var config = HTTP2Configuration()
        config.maxHeaderListBytes = 2_000
        let seen = H2Recorder<HTTPRequest>()
        let h = H2Harness(handler: checksumHandler(seen), configuration: config)
        let id = h.onQueue { c, _ in c.request(headers: [("x-big", String(repeating: "a", count: 3_000))], body: [1, 2, 3]) }
        #expect(h.run { c, _ in c.response(id)?.closed == true })
        #expect(h.onQueue { c, _ in c.response(id)?.status } == 431)
        #expect(seen.count == 0)
    }

    @Test func expectContinueGetsAnInterim100() {
        let h = H2Harness(handler: checksumHandler())
        let body = h2RandomBytes(2_000, seed: 21)
        let id = h.onQueue { c, _ in c.request(headers: [("expect", "100-continue")], body: body) }
        #expect(h.run { c, _ in c.response(id)?.closed == true })
        #expect(h.onQueue { c, _ in c.response(id)?.statuses } == [100, 202])
        expectChecksumAnswer(h.onQueue { c, _ in c.response(id) }, body: body)
        // Without the header there is no interim answer.
        let plain = h.onQueue { c, _ in c.request(body: body) }
        #expect(h.run { c, _ in c.response(plain)?.closed == true })
        #expect(h.onQueue { c, _ in c.response(plain)?.statuses } == [202])
    }

    /// Many streams with random sizes, random answer delays and some reset by the peer at
    /// random moments: every stream not reset gets its own checksum back, and the engine's
    /// bookkeeping returns to zero.
    @Test(arguments: [UInt64(1), 2, 3])
    func randomResetsAndDelays(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let handler = ClosureHandler { request, respond in
            let delay = Int(request.headers["x-delay"] ?? "0") ?? 0
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delay)) {
                respond(HTTPResponse(status: 202, body: Array("\(request.body.count) \(h2Checksum(request.body))".utf8)))
            }
        }
        let h = H2Harness(handler: handler, split: .random(seed: seed))
        var bodies: [Int32: [UInt8]] = [:]
        var resetIDs: Set<Int32> = []
        for round in 0..<5 {
            var ids: [Int32] = []
            for _ in 0..<10 {
                let body = h2RandomBytes(Int.random(in: 0...40_000, using: &rng), seed: rng.next())
                let delay = Int.random(in: 0...20, using: &rng)
                let id = h.onQueue { c, _ in c.request(headers: [("x-delay", String(delay))], body: body) }
                bodies[id] = body
                ids.append(id)
            }
            for _ in 0..<Int.random(in: 0...3, using: &rng) { h.step() }
            for id in ids where Int.random(in: 0..<4, using: &rng) == 0 {
                resetIDs.insert(id)
                h.onQueue { c, _ in c.reset(id) }
            }
            _ = round
        }
        #expect(h.run { c, e in bodies.keys.allSatisfy { c.response($0)?.closed == true } && e.inFlightRequests == 0 })
        // Let late answers for reset streams arrive and be dropped.
        h.run(seconds: 0.1) { _, _ in false }
        for (id, body) in bodies {
            let r = h.onQueue { c, _ in c.response(id) }
            if resetIDs.contains(id) {
                // A reset may cross the answer on the wire; if an answer came, it is the right one.
                if r?.status == 202 { #expect(r.map { String(decoding: $0.body, as: UTF8.self) } == "\(body.count) \(h2Checksum(body))") }
            } else {
                #expect(r?.status == 202, "stream \(id)")
                #expect(r.map { String(decoding: $0.body, as: UTF8.self) } == "\(body.count) \(h2Checksum(body))")
            }
        }
        #expect(h.disposition == .open)
        #expect(h.onQueue { _, e in e.inFlightRequests } == 0)
    }

    @Test func headResponseHasLengthButNoBody() {
        let h = H2Harness(handler: ClosureHandler { _, respond in respond(HTTPResponse(status: 200, body: Array("hello".utf8))) })
        let id = h.onQueue { c, _ in c.request(method: "HEAD", path: "/x") }
        #expect(h.run { c, _ in c.response(id)?.closed == true })
        let r = h.onQueue { c, _ in c.response(id) }
        #expect(r?.status == 200)
        #expect(r?.headers.first { $0.name == "content-length" }?.value == "5")
        #expect(r?.body.isEmpty == true)
        #expect(r?.closeCode == 0)
        #expect(r?.headers.first { $0.name == "date" }?.value.hasSuffix(" GMT") == true)
    }

    @Test func answersFromOtherThreadsAfterADelay() {
        let handler = ClosureHandler { request, respond in
            let delay = Int(request.path.dropFirst()) ?? 0
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delay)) {
                respond(HTTPResponse(status: 202, body: Array("\(request.body.count) \(h2Checksum(request.body))".utf8)))
            }
        }
        let h = H2Harness(handler: handler)
        let bodies = (0..<8).map { h2RandomBytes(3_000 * ($0 + 1), seed: UInt64(100 + $0)) }
        let ids = h.onQueue { c, _ in bodies.enumerated().map { c.request(path: "/\((8 - $0.offset) * 5)", body: $0.element) } }
        #expect(h.run { c, _ in ids.allSatisfy { c.response($0)?.closed == true } })
        for (id, body) in zip(ids, bodies) {
            let r = h.onQueue { c, _ in c.response(id) }
            #expect(r?.status == 202)
            #expect(r.map { String(decoding: $0.body, as: UTF8.self) } == "\(body.count) \(h2Checksum(body))")
        }
        #expect(h.context.queue.sync { h.context.outputAvailableCalls } >= 8)
    }

    @Test func peerResetBeforeTheAnswerDropsIt() {
        let held = HeldAnswers()
        let h = H2Harness(handler: held.handler)
        let id = h.onQueue { c, _ in c.request(body: [1, 2, 3]) }
        #expect(h.run { _, _ in held.responders.count == 1 })
        #expect(h.onQueue { _, e in e.inFlightRequests } == 1)
        h.onQueue { c, _ in c.reset(id) }
        #expect(h.run { _, e in e.inFlightRequests == 0 })
        // The late answer, from another thread, must be dropped without harm.
        DispatchQueue.global().sync { held.responders.all[0](HTTPResponse(status: 202, body: [9, 9])) }
        h.run(seconds: 0.2) { _, _ in false }
        #expect(h.onQueue { c, _ in c.response(id)?.status } == nil)
        // A second answer to the same request is ignored as well; the connection keeps working.
        held.responders.all[0](HTTPResponse(status: 500))
        let next = h.onQueue { c, _ in c.request(body: [4]) }
        #expect(h.run { _, _ in held.responders.count == 2 })
        held.responders.all[1](HTTPResponse(status: 204))
        #expect(h.run { c, _ in c.response(next)?.closed == true })
        #expect(h.onQueue { c, _ in c.response(next)?.status } == 204)
        #expect(h.disposition == .open)
    }

    @Test func shutdownFinishesTheStreamInFlight() {
        let held = HeldAnswers()
        let h = H2Harness(handler: held.handler)
        let id = h.onQueue { c, _ in c.request(body: h2RandomBytes(10_000, seed: 8)) }
        #expect(h.run { _, _ in held.responders.count == 1 })
        let d = h.onQueue { _, e in e.beginShutdown() }
        #expect(d != .closeAfterFlush && d != .closeNow)
        #expect(h.run { c, _ in c.goawayReceived })
        #expect(h.onQueue { c, _ in (c.goawayErrorCode, c.goawayLastStreamID) } == (0, id))
        #expect(h.disposition != .closeAfterFlush)
        held.responders.all[0](HTTPResponse(status: 202, body: Array("done".utf8)))
        #expect(h.run { c, e in c.response(id)?.closed == true && e.disposition == .closeAfterFlush })
        #expect(h.onQueue { c, _ in c.response(id)?.status } == 202)
        #expect(h.onQueue { c, _ in c.response(id)?.body } == Array("done".utf8))
    }

    @Test func shutdownWhenIdleClosesAfterFlush() {
        let h = H2Harness(handler: checksumHandler())
        h.step()
        _ = h.onQueue { _, e in e.beginShutdown() }
        #expect(h.run { c, e in c.goawayReceived && !e.hasPendingOutput && e.disposition == .closeAfterFlush })
    }

    /// A peer that opens a stream and stalls: not in flight, and the idle timeout ends the
    /// connection with GOAWAY. A request waiting for its handler keeps the connection.
    @Test func timeoutEndsStalledStreamsButWaitsForHandlers() {
        let held = HeldAnswers()
        let h = H2Harness(handler: held.handler)
        h.step()
        // Headers and part of a body: the client declares more than it sends.
        let id = h.onQueue { c, _ in c.request(headers: [("content-length", "1000")], body: [1, 2, 3], contentLength: false) }
        var bytes = h.onQueue { c, _ in c.output() }
        bytes.removeLast(3 + 9)  // drop the DATA frame (END_STREAM) so the stream stays open
        h.onQueue { _, _ in h.feed(bytes) }
        #expect(h.onQueue { _, e in e.inFlightRequests } == 0)
        let waiting = h.onQueue { c, _ in c.request(body: [7]) }
        #expect(h.run { _, _ in held.responders.count == 1 })
        #expect(h.onQueue { _, e in e.inFlightRequests } == 1)
        #expect(h.onQueue { _, e in e.timeout(.idle) } == .open)
        held.responders.all[0](HTTPResponse(status: 202))
        #expect(h.run { c, e in c.response(waiting)?.closed == true && e.inFlightRequests == 0 })
        #expect(h.onQueue { _, e in e.timeout(.idle) } == .closeAfterFlush)
        #expect(h.run { c, _ in c.goawayReceived })
        #expect(h.onQueue { c, _ in c.response(id)?.status } == nil)
    }

    @Test func peerCloseAnswersInFlightThenCloses() {
        let held = HeldAnswers()
        let h = H2Harness(handler: held.handler)
        let id = h.onQueue { c, _ in c.request(body: [1]) }
        #expect(h.run { _, _ in held.responders.count == 1 })
        #expect(h.onQueue { _, e in e.peerClosed() } == .pauseReading)
        held.responders.all[0](HTTPResponse(status: 202))
        #expect(h.run { c, e in c.response(id)?.status == 202 && e.disposition == .closeAfterFlush })
    }

    @Test func pausesReadingWhenTooManyAnswersAreOutstanding() {
        var config = HTTP2Configuration()
        config.maxConcurrentStreams = 3
        let held = HeldAnswers()
        let h = H2Harness(handler: held.handler, configuration: config)
        h.step()  // exchange SETTINGS first
        let ids = h.onQueue { c, _ in (0..<3).map { _ in c.request(body: [1]) } }
        #expect(h.run { _, _ in held.responders.count == 3 })
        #expect(h.disposition == .pauseReading)
        held.responders.all[0](HTTPResponse(status: 202))
        #expect(h.run { c, e in c.response(ids[0])?.closed == true && e.disposition == .open })
        for r in held.responders.all.dropFirst() { r(HTTPResponse(status: 202)) }
        #expect(h.run { c, _ in ids.allSatisfy { c.response($0)?.status == 202 } })
    }

    /// A large answer the peer has not taken yet pauses reading; draining it resumes.
    @Test func pausesReadingWhileOutputIsPiledUp() {
        var config = HTTP2Configuration()
        config.maxPendingOutputBytes = 16_384
        let big = h2RandomBytes(300_000, seed: 9)
        let h = H2Harness(handler: ClosureHandler { _, respond in respond(HTTPResponse(status: 200, body: big)) }, configuration: config)
        h.step()  // exchange SETTINGS
        let id = h.onQueue { c, _ in c.request(method: "GET", path: "/big") }
        h.onQueue { c, _ in h.feed(c.output()) }
        // Wait for the answer to hop back onto the queue; do not drain.
        var sawPause = false
        for _ in 0..<2_000 where !sawPause {
            sawPause = h.onQueue { _, e in e.hasPendingOutput && e.disposition == .pauseReading }
            if !sawPause { usleep(1_000) }
        }
        #expect(sawPause)
        #expect(h.run { c, _ in c.response(id)?.closed == true })
        #expect(h.onQueue { c, _ in c.response(id)?.body } == big)
        #expect(h.disposition == .open)
    }

    @Test func garbageAfterThePrefaceEndsInGoaway() {
        let h = H2Harness(handler: checksumHandler())
        let preface = h.onQueue { c, _ in c.output() }
        var garbage = preface
        garbage += h2RandomBytes(200, seed: 77)
        h.onQueue { _, _ in h.feed(garbage) }
        var out: [UInt8] = []
        h.onQueue { _, e in while e.hasPendingOutput { e.drainOutput(into: &out, limit: 1_000) } }
        #expect(h.disposition == .closeAfterFlush)
        h.onQueue { c, _ in _ = c.receive(out) }
        #expect(h.onQueue { c, _ in c.goawayReceived })
        #expect(h.onQueue { c, _ in c.goawayErrorCode } != 0)
        // More bytes after the failure are ignored.
        #expect(h.onQueue { _, _ in [UInt8](repeating: 0xff, count: 100).withUnsafeBytes { h.engine.receive($0) } } == .closeAfterFlush)
    }

    @Test func aPingFloodEndsInGoawayEnhanceYourCalm() {
        // 2,000 PINGs in one read: nghttp2 refuses to queue more than 1,000 unsent ACKs
        // (NGHTTP2_ERR_FLOODED); the peer is told to calm down, not that it broke the protocol.
        let h = H2Harness(handler: checksumHandler())
        var bytes = h.onQueue { c, _ in c.output() }
        let ping: [UInt8] = [0, 0, 8, 6, 0, 0, 0, 0, 0] + Array("hostile!".utf8)
        for _ in 0..<2_000 { bytes += ping }
        h.onQueue { _, _ in h.feed(bytes) }
        var out: [UInt8] = []
        h.onQueue { _, e in while e.hasPendingOutput { e.drainOutput(into: &out, limit: 1 << 20) } }
        #expect(h.disposition == .closeAfterFlush)
        h.onQueue { c, _ in _ = c.receive(out) }
        #expect(h.onQueue { c, _ in c.goawayReceived })
        #expect(h.onQueue { c, _ in c.goawayErrorCode } == 0xB) // ENHANCE_YOUR_CALM
    }

    @Test func garbageInsteadOfThePrefaceEndsTheConnection() {
        let h = H2Harness(handler: checksumHandler())
        let d = h.onQueue { _, e in Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8).withUnsafeBytes { e.receive($0) } }
        #expect(d == .closeAfterFlush || d == .closeNow)
    }

    /// Valid client traffic with random bytes flipped, cut short or duplicated: the engine
    /// must never trap, and must end up in a sane disposition.
    @Test func mutatedTrafficNeverCrashes() {
        let client = HTTP2TestClient()
        _ = client.request(method: "POST", path: "/a?b", headers: [("x-k", "v")], body: h2RandomBytes(3_000, seed: 1))
        _ = client.request(method: "GET", path: "/c")
        let valid = client.output()
        var rng = SplitMix64(seed: 2024)
        for round in 0..<300 {
            var bytes = valid
            switch round % 3 {
            case 0:
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    let i = Int.random(in: 24..<bytes.count, using: &rng)
                    bytes[i] = UInt8.random(in: 0...255, using: &rng)
                }
            case 1:
                bytes = Array(bytes[0..<Int.random(in: 0..<bytes.count, using: &rng)])
            default:
                let i = Int.random(in: 24..<bytes.count, using: &rng)
                bytes.insert(contentsOf: bytes[i..<min(bytes.count, i + 50)], at: i)
            }
            let h = H2Harness(handler: checksumHandler(), split: .random(seed: UInt64(round)))
            h.onQueue { _, _ in h.feed(bytes) }
            for _ in 0..<3 { h.step() }
            let d = h.disposition
            #expect([EngineDisposition.open, .closeAfterFlush, .pauseReading].contains(d))
        }
    }

    @Test(arguments: [false, true])
    func upgradeAnswersStreamOne(head: Bool) throws {
        let client = HTTP2TestClient()
        client.upgrade(head: head)
        let body = h2RandomBytes(5_000, seed: 11)
        let seen = H2Recorder<HTTPRequest>()
        let request = HTTPRequest(method: head ? "HEAD" : "POST", path: "/api/v2/spans", query: "", version: .http1_1,
                                  headers: HTTPHeaders([("content-type", "application/json")]), body: head ? [] : body)
        let upgrade = H2CUpgrade(request: request, settingsPayload: client.settingsPayload(), remainingBytes: client.output())
        let h = try H2Harness(client: client) { ctx in
            try HTTP2ServerEngine(context: ctx, handler: checksumHandler(seen), configuration: HTTP2Configuration(), upgrade: upgrade)
        }
        // A second request on the upgraded connection works too.
        let two = h.onQueue { c, _ in c.request(body: body) }
        #expect(h.run { c, _ in c.response(1)?.closed == true && c.response(two)?.closed == true })
        let r1 = h.onQueue { c, _ in c.response(1) }
        #expect(r1?.status == 202)
        #expect(r1?.closeCode == 0)
        if head {
            #expect(r1?.body.isEmpty == true)
        } else {
            expectChecksumAnswer(r1, body: body)
        }
        expectChecksumAnswer(h.onQueue { c, _ in c.response(two) }, body: body)
        #expect(seen.all.first?.path == "/api/v2/spans")
        #expect(h.disposition == .open)
    }

    @Test func upgradeWithBadSettingsThrows() {
        let ctx = H2TestContext()
        let upgrade = H2CUpgrade(request: HTTPRequest(method: "GET", path: "/"), settingsPayload: [0, 4, 0], remainingBytes: [])
        #expect(throws: HTTP2Error.self) {
            // On the context's queue, as a connection does (the upgrade initializer asserts it).
            _ = try ctx.queue.sync {
                try HTTP2ServerEngine(context: ctx, handler: checksumHandler(), configuration: HTTP2Configuration(), upgrade: upgrade)
            }
        }
    }

    /// Random `HTTP2-Settings` payloads either start a session or throw; never trap.
    @Test func randomUpgradeSettingsNeverCrash() {
        var rng = SplitMix64(seed: 31)
        var started = 0, refused = 0
        for _ in 0..<300 {
            let count = Int.random(in: 0...4, using: &rng) * 6 + (Bool.random(using: &rng) ? 0 : Int.random(in: 1...5, using: &rng))
            let payload = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let ctx = H2TestContext()
            let upgrade = H2CUpgrade(request: HTTPRequest(method: "GET", path: "/"), settingsPayload: payload,
                                     remainingBytes: h2RandomBytes(Int.random(in: 0...64, using: &rng), seed: rng.next()))
            do {
                // Built on the context's queue, as a connection does (answers hop to that queue).
                let e = try ctx.queue.sync {
                    try HTTP2ServerEngine(context: ctx, handler: checksumHandler(), configuration: HTTP2Configuration(), upgrade: upgrade)
                }
                started += 1
                _ = ctx.queue.sync { e.disposition }
            } catch {
                refused += 1
                #expect(String(describing: error).contains("HTTP2-Settings"))
            }
        }
        #expect(started > 0 && refused > 0)
    }

    @Test func configurationDefaults() {
        let c = HTTP2Configuration()
        #expect(c.maxConcurrentStreams == 256)
        #expect(c.initialStreamWindow == 1 << 20)
        #expect(c.connectionWindow == 16 << 20)
        #expect(c.maxBodyBytes == 25 << 20)
        #expect(c.maxHeaderListBytes == 64 << 10)
        #expect(c.maxFrameSize == 16_384)
    }

    /// The server preface: SETTINGS with our limits, then WINDOW_UPDATE raising the connection
    /// window from the protocol's 64 KiB to the configured size.
    @Test func serverPrefaceAnnouncesLimits() {
        var config = HTTP2Configuration()
        config.maxConcurrentStreams = 100
        config.connectionWindow = 8 << 20
        let h = H2Harness(handler: checksumHandler(), configuration: config)
        #expect(h.onQueue { _, e in e.hasPendingOutput })
        h.step()
        var frames: [(type: UInt8, stream: UInt32, payload: [UInt8])] = []
        var i = 0
        let b = h.serverBytes
        while i + 9 <= b.count {
            let len = Int(b[i]) << 16 | Int(b[i + 1]) << 8 | Int(b[i + 2])
            let stream = (UInt32(b[i + 5]) << 24 | UInt32(b[i + 6]) << 16 | UInt32(b[i + 7]) << 8 | UInt32(b[i + 8])) & 0x7fff_ffff
            frames.append((b[i + 3], stream, Array(b[(i + 9)..<min(b.count, i + 9 + len)])))
            i += 9 + len
        }
        #expect(frames.first?.type == 0x4)
        var settings: [UInt16: UInt32] = [:]
        if let p = frames.first?.payload {
            for j in stride(from: 0, to: p.count - 5, by: 6) {
                settings[UInt16(p[j]) << 8 | UInt16(p[j + 1])] = UInt32(p[j + 2]) << 24 | UInt32(p[j + 3]) << 16 | UInt32(p[j + 4]) << 8 | UInt32(p[j + 5])
            }
        }
        #expect(settings[0x3] == 100)
        #expect(settings[0x4] == 1 << 20)
        #expect(settings[0x5] == 16_384)
        #expect(settings[0x6] == 64 << 10)
        let update = frames.first { $0.type == 0x8 && $0.stream == 0 }
        let increment = update.map { p in (UInt32(p.payload[0]) << 24 | UInt32(p.payload[1]) << 16 | UInt32(p.payload[2]) << 8 | UInt32(p.payload[3])) & 0x7fff_ffff }
        #expect(increment == UInt32(8 << 20) - 65_535)
    }

    /// The connection window is raised at start, so a client can send far more than 64 KiB
    /// across streams before any stream's data is acknowledged.
    @Test func largeBodiesUseTheRaisedWindows() {
        let h = H2Harness(handler: checksumHandler())
        let bodies = (0..<4).map { h2RandomBytes(600_000, seed: UInt64(500 + $0)) }
        let ids = h.onQueue { c, _ in bodies.map { c.request(body: $0) } }
        #expect(h.run { c, _ in ids.allSatisfy { c.response($0)?.closed == true } })
        for (id, body) in zip(ids, bodies) { expectChecksumAnswer(h.onQueue { c, _ in c.response(id) }, body: body) }
    }
}
