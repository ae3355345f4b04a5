import TestSupport
import Dispatch
import Testing
@testable import Transport

@Suite struct HTTP1EngineTests {
    static let post = "POST /api/v2/spans HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"

    @Test func simpleRequestGetsResponseWithLengthAndDate() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        #expect(e.feed(Self.post) == .open)
        let out = e.output()
        #expect(out.hasPrefix("HTTP/1.1 202 Accepted\r\n"))
        #expect(out.contains("Content-Length: 11\r\n"))
        #expect(out.contains("Date: "))
        #expect(!out.contains("Connection: close"))
        #expect(out.hasSuffix("\r\n\r\n{\"bytes\":5}"))
        let r = h.all
        #expect(r.count == 1)
        #expect(r.first?.method == "POST")
        #expect(r.first?.path == "/api/v2/spans")
        #expect(r.first.map { String(decoding: $0.body, as: UTF8.self) } == "hello")
        #expect(r.first?.headers["content-type"] == "application/json")
        #expect(r.first?.remoteAddress == "127.0.0.1:4242")
    }

    @Test func byteByByteEqualsWhole() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        let text = "\r\nGET /a?x=1&y=2 HTTP/1.1\r\nHost: x\r\n\r\n" + Self.post
        for b in text.utf8 { e.feed([b]) }
        let out = e.output()
        #expect(statuses(out) == [202, 202])
        #expect(h.all.map(\.path) == ["/a", "/api/v2/spans"])
        #expect(h.all.first?.query == "x=1&y=2")
        #expect(h.all.last.map { String(decoding: $0.body, as: UTF8.self) } == "hello")
    }

    @Test func pipelinedRequestsAnsweredInOrderEvenWhenHandlersFinishOutOfOrder() {
        let h = DeferredHandler()
        let e = EngineHarness(handler: h)
        e.feed((1...3).map { "GET /\($0) HTTP/1.1\r\nHost: x\r\n\r\n" }.joined())
        #expect(h.count == 3)
        #expect(e.context.run { e.engine.inFlightRequests } == 3)
        // Answer 3 and 2 from another thread first: nothing may be sent before 1.
        h.answer(2, HTTPResponse(status: 200, body: Array("three".utf8)))
        h.answer(1, HTTPResponse(status: 200, body: Array("two".utf8)))
        #expect(e.output() == "")
        h.answer(0, HTTPResponse(status: 200, body: Array("one".utf8)))
        let out = e.output()
        let one1 = out.firstRange("one"), two = out.firstRange("two"), three = out.firstRange("three")
        #expect(one1 != nil && two != nil && three != nil)
        if let a = one1, let b = two, let c = three { #expect(a < b && b < c) }
        #expect(e.context.run { e.engine.inFlightRequests } == 0)
        // A second answer for the same request is ignored.
        h.answer(0, HTTPResponse(status: 500))
        #expect(e.output() == "")
    }

    @Test func chunkedBodyWithOddSizesExtensionsAndTrailers() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var req = Array("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        var off = 0
        var size = 1
        while off < payload.count {
            let n = min(size, payload.count - off)
            req += Array(String(n, radix: 16).utf8) + (size % 3 == 0 ? Array(";ext=\"v\"".utf8) : []) + [13, 10]
            req += payload[off..<(off + n)] + [13, 10]
            off += n
            size = size * 3 + 1
        }
        req += Array("0\r\nX-Trailer: yes\r\n\r\n".utf8)
        // Feed in uneven pieces.
        var i = 0
        var step = 1
        while i < req.count {
            let n = min(step, req.count - i)
            e.feed(Array(req[i..<(i + n)]))
            i += n
            step = step % 13 + 2
        }
        #expect(statuses(e.output()) == [202])
        #expect(h.all.first?.body == payload)
    }

    @Test(arguments: [
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        ("GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
        ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET / FTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 1\r\n\r\n", 417),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
    ])
    func malformedRequestsGetErrorAndClose(_ request: String, _ status: Int) {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        let d = e.feed(request)
        let out = e.output()
        #expect(statuses(out) == [status], "for \(request.debugDescription)")
        #expect(out.contains("Connection: close"))
        #expect(out.contains("\"error\":"))
        #expect(d == .closeAfterFlush)
        #expect(h.all.isEmpty)
        // Further input is ignored.
        e.feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(e.output() == "")
    }

    @Test func sameContentLengthTwiceIsAccepted() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        e.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
        #expect(statuses(e.output()) == [202])
    }

    @Test func smugglingAttemptDoesNotReachTheHandler() {
        // CL.TE: a front end using Content-Length would forward the "GET /admin" as body.
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        e.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(statuses(e.output()) == [400])
        #expect(h.all.isEmpty)
    }

    @Test func limits() {
        let h = RecordingHandler()
        let big = EngineHarness(handler: h) { $0.maxBodyBytes = 100 }
        // 413 as soon as the head arrives; the body is never read.
        #expect(big.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n") == .closeAfterFlush)
        #expect(statuses(big.output()) == [413])

        let chunked = EngineHarness(handler: h) { $0.maxBodyBytes = 100 }
        chunked.feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n" + String(repeating: "a", count: 80) + "\r\n")
        #expect(chunked.output() == "")
        chunked.feed("15\r\n")
        #expect(statuses(chunked.output()) == [413])

        let uri = EngineHarness(handler: h) { $0.maxRequestLineBytes = 50 }
        uri.feed("GET /" + String(repeating: "u", count: 60))
        #expect(statuses(uri.output()) == [414])
        let uri2 = EngineHarness(handler: h) { $0.maxRequestLineBytes = 50 }
        uri2.feed("GET /" + String(repeating: "u", count: 45) + " HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(statuses(uri2.output()) == [414])

        let head = EngineHarness(handler: h) { $0.maxHeaderBytes = 200 }
        head.feed("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 250))
        #expect(statuses(head.output()) == [431])
        let head2 = EngineHarness(handler: h) { $0.maxHeaderBytes = 200 }
        head2.feed("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 250) + "\r\n\r\n")
        #expect(statuses(head2.output()) == [431])

        let many = EngineHarness(handler: h) { $0.maxHeaderCount = 5 }
        many.feed("GET / HTTP/1.1\r\nHost: x\r\n" + (1...5).map { "X-\($0): v\r\n" }.joined() + "\r\n")
        #expect(statuses(many.output()) == [431])
        #expect(h.all.isEmpty)
    }

    @Test func expectContinueSendsContinueBeforeTheBody() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        e.feed("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        #expect(e.output() == "HTTP/1.1 100 Continue\r\n\r\n")
        e.feed("abc")
        #expect(statuses(e.output()) == [202])
        // Too large: 413 instead of 100.
        let small = EngineHarness(handler: h) { $0.maxBodyBytes = 2 }
        small.feed("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        #expect(statuses(small.output()) == [413])
    }

    @Test func continueWaitsForEarlierResponses() {
        let h = DeferredHandler()
        let e = EngineHarness(handler: h)
        e.feed("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        #expect(e.output() == "")
        h.answer(0, HTTPResponse(status: 200))
        let out = e.output()
        #expect(statuses(out) == [200, 100])
        e.feed("abc")
        h.answer(1, HTTPResponse(status: 201))
        #expect(statuses(e.output()) == [201])
    }

    @Test func http10ClosesUnlessKeepAlive() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        #expect(e.feed("GET / HTTP/1.0\r\n\r\n") == .closeAfterFlush)
        #expect(e.output().contains("Connection: close"))
        let k = EngineHarness(handler: h)
        #expect(k.feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == .open)
        #expect(k.output().contains("Connection: keep-alive"))
        #expect(h.all.first?.version == .http1_0)
    }

    @Test func connectionCloseIsHonoured() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        let d = e.feed("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(d == .closeAfterFlush)
        let out = e.output()
        #expect(statuses(out) == [202])
        #expect(out.contains("Connection: close"))
        #expect(h.all.map(\.path) == ["/a"])
    }

    @Test func headResponseHasNoBody() {
        let e = EngineHarness(handler: ClosureHandler { _, respond in respond(HTTPResponse(status: 200, body: Array("abcdef".utf8))) })
        e.feed("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        let out = e.output()
        #expect(out.contains("Content-Length: 6\r\n"))
        #expect(out.hasSuffix("\r\n\r\n"))
    }

    @Test func h2cUpgradeHandsOverRequestSettingsAndRemainingBytes() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        let d = e.feed("POST /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\nhiPRI * HTTP/2.0")
        #expect(d == .upgradeToHTTP2)
        #expect(e.output() == "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        e.feed("\r\n\r\nSM\r\n\r\n")
        let up = e.context.run { e.engine.takeUpgrade() }
        #expect(up?.request.path == "/u")
        #expect(up?.request.body == Array("hi".utf8))
        #expect(up?.settingsPayload == [0, 3, 0, 0, 0, 100, 0, 4, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0])
        #expect(up.map { String(decoding: $0.remainingBytes, as: UTF8.self) } == "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        #expect(h.all.isEmpty, "the upgraded request is served by HTTP/2 as stream 1")
    }

    @Test func upgradeWithoutSettingsIsPlainHTTP1() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        #expect(e.feed("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n") == .open)
        #expect(statuses(e.output()) == [202])
    }

    @Test func timeouts() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h)
        e.feed("GET / HTTP/1.1\r\nHo")
        #expect(e.context.run { e.engine.readPhase } == .head)
        #expect(e.context.run { e.engine.timeout(.headerRead) } == .closeAfterFlush)
        #expect(statuses(e.output()) == [408])

        let b = EngineHarness(handler: h)
        b.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        #expect(b.context.run { b.engine.readPhase } == .body)
        #expect(b.context.run { b.engine.timeout(.bodyRead) } == .closeAfterFlush)
        #expect(statuses(b.output()) == [408])

        let i = EngineHarness(handler: h)
        #expect(i.context.run { i.engine.readPhase } == .idle)
        #expect(i.context.run { i.engine.timeout(.idle) } == .closeAfterFlush)
        #expect(i.output() == "")
    }

    @Test func pipelineLimitPausesReadingAndResumes() {
        let h = DeferredHandler()
        let e = EngineHarness(handler: h) { $0.maxPipelinedRequests = 2 }
        let req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(e.feed(req + req + req + req) == .pauseReading)
        #expect(h.count == 2)
        h.answer(0, HTTPResponse(status: 200))
        #expect(e.output().isEmpty == false)
        #expect(h.count == 3)
        h.answer(1, HTTPResponse(status: 200))
        e.sync()
        h.answer(2, HTTPResponse(status: 200))
        e.sync()
        #expect(h.count == 4)
        h.answer(3, HTTPResponse(status: 200))
        _ = e.output()
        #expect(e.disposition == .open)
    }

    @Test func shutdownClosesIdleAndMarksTheLastResponse() {
        let h = DeferredHandler()
        let idle = EngineHarness(handler: h)
        #expect(idle.context.run { idle.engine.beginShutdown() } == .closeAfterFlush)

        let busy = EngineHarness(handler: h)
        busy.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        #expect(busy.context.run { busy.engine.beginShutdown() } != .closeAfterFlush)
        busy.feed("cd")
        #expect(h.count == 1)
        h.answer(0, HTTPResponse(status: 202))
        let out = busy.output()
        #expect(statuses(out) == [202])
        #expect(out.contains("Connection: close"))
        #expect(busy.disposition == .closeAfterFlush)
    }

    @Test func peerCloseAnswersInFlightThenCloses() {
        let h = DeferredHandler()
        let e = EngineHarness(handler: h)
        e.feed("GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab")
        #expect(e.context.run { e.engine.peerClosed() } == .pauseReading)
        h.answer(0, HTTPResponse(status: 200))
        #expect(statuses(e.output()) == [200])
        #expect(e.disposition == .closeAfterFlush)
    }

    /// Mutated and truncated valid requests, fed in random splits, must never trap; every
    /// output must be well-formed responses.
    @Test func randomizedRobustness() {
        var rng = SplitMix64(seed: 0x5EED)
        let seeds: [[UInt8]] = [
            Array(Self.post.utf8),
            Array("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: v\r\n\r\n".utf8),
            Array("GET /a?b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.1\r\nHost: y\r\n\r\n".utf8),
            Array("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok".utf8),
        ]
        for round in 0..<3000 {
            var input = seeds[round % seeds.count]
            let mutations = Int(rng.next() % 4)
            for _ in 0..<mutations where !input.isEmpty {
                let at = Int(rng.next() % UInt64(input.count))
                switch rng.next() % 4 {
                case 0: input[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: input.remove(at: at)
                case 2: input.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                default: input = Array(input[0..<at])
                }
            }
            let e = EngineHarness(handler: RecordingHandler()) { $0.maxBodyBytes = 64; $0.maxHeaderBytes = 256 }
            var i = 0
            while i < input.count {
                let n = min(input.count - i, 1 + Int(rng.next() % 9))
                e.feed(Array(input[i..<(i + n)]))
                i += n
            }
            _ = e.context.run { e.engine.peerClosed() }
            let out = e.output()
            if !out.isEmpty { #expect(out.hasPrefix("HTTP/1.1 "), "round \(round)") }
        }
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            result += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return result + rest
    }

    func firstRange(_ s: String) -> String.Index? { Substring(self).range(of: s)?.lowerBound }
}

@Suite struct HTTP1EngineFairnessTests {
    /// Fairness (issue 10, probe "connections that never read"): one receive of many pipelined
    /// requests starts at most `maxRequestsPerTurn` of them; the rest waits for the next turn of
    /// the loop, not for output to drain.
    @Test func pipelinedRequestsYieldAfterMaxRequestsPerTurn() {
        let h = RecordingHandler()
        let e = EngineHarness(handler: h) { $0.maxRequestsPerTurn = 10; $0.maxPipelinedRequests = 1000 }
        let many = String(repeating: HTTP1EngineTests.post, count: 25)
        #expect(e.feed(many) == .pauseReading)
        #expect(h.all.count == 10)
        // Draining output is not a new turn.
        _ = e.output()
        #expect(h.all.count == 10)
        #expect(e.context.run { e.engine.wantsNewTurn })
        #expect(e.context.run { e.engine.beginTurn() } == .pauseReading)
        #expect(h.all.count == 20)
        #expect(e.context.run { e.engine.beginTurn() } == .open)
        #expect(h.all.count == 25)
        #expect(!e.context.run { e.engine.wantsNewTurn })
        #expect(statuses(e.output()).count == 15, "the 10 of the first turn were drained above")
    }
}
