import TestSupport
import Synchronization
import Testing
@testable import Transport

/// Drives an `HTTP1ClientEngine` with strings: requests in, their bytes out; response bytes
/// in (whole, byte by byte, random splits), completions collected.
final class ClientEngineHarness {
    let engine: HTTP1ClientEngine
    private final class Box: Sendable { let results = Mutex<[Result<ClientResponse, ClientError>]>([]) }
    private let box = Box()

    init(_ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) {
        var c = HTTPClientConfiguration()
        configure(&c)
        engine = HTTP1ClientEngine(configuration: c)
    }

    var results: [Result<ClientResponse, ClientError>] { box.results.withLock { $0 } }
    var responses: [ClientResponse] { results.compactMap { if case .success(let r) = $0 { r } else { nil } } }
    var errors: [ClientError] { results.compactMap { if case .failure(let e) = $0 { e } else { nil } } }

    func enqueue(_ request: ClientRequest, authority: String = "backend:9411") {
        engine.enqueue(request, authority: authority) { [box] r in box.results.withLock { $0.append(r) } }
    }

    /// Enqueues and returns everything the engine wants to send.
    @discardableResult
    func send(_ request: ClientRequest = ClientRequest(method: "POST", path: "/api/v2/spans", body: Array("hello".utf8)),
              authority: String = "backend:9411") -> String {
        enqueue(request, authority: authority)
        return output()
    }

    func output(limit: Int = 1 << 30) -> String {
        var out: [UInt8] = []
        while engine.hasPendingOutput && out.count < limit { engine.drainOutput(into: &out, limit: min(limit - out.count, 1 << 20)) }
        return String(decoding: out, as: UTF8.self)
    }

    @discardableResult
    func feed(_ s: String) -> ClientEngineState { feed(Array(s.utf8)) }

    @discardableResult
    func feed(_ bytes: [UInt8]) -> ClientEngineState { bytes.withUnsafeBytes { engine.receive($0) } }

    enum Split: CaseIterable { case whole, byteByByte, random }

    func feed(_ s: String, _ split: Split, seed: UInt64 = 7) {
        let bytes = Array(s.utf8)
        switch split {
        case .whole:
            feed(bytes)
        case .byteByByte:
            for b in bytes { feed([b]) }
        case .random:
            var rng = SplitMix64(seed: seed)
            var i = 0
            while i < bytes.count {
                let n = min(bytes.count - i, 1 + Int(rng.next() % 13))
                feed(Array(bytes[i..<(i + n)]))
                i += n
            }
        }
    }
}

@Suite struct HTTP1ClientEngineTests {
    static let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"

    @Test func serializesRequestWithHostLengthAndUserHeaders() {
        let h = ClientEngineHarness()
        let out = h.send(ClientRequest(method: "POST", path: "/api/v2/spans?x=1",
                                       headers: [("Content-Type", "application/json"), ("Host", "evil"),
                                                 ("content-length", "99"), ("Connection", "close"), ("X-B3-Sampled", "0")],
                                       body: Array("hello".utf8)))
        #expect(out == "POST /api/v2/spans?x=1 HTTP/1.1\r\nHost: backend:9411\r\nContent-Type: application/json\r\n"
            + "X-B3-Sampled: 0\r\nContent-Length: 5\r\n\r\nhello")
        #expect(h.engine.capacity == 0)
        #expect(h.engine.inFlight == 1)

        let g = ClientEngineHarness()
        #expect(g.send(ClientRequest(method: "GET", path: "/health"), authority: "[::1]:8080")
            == "GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
        let p = ClientEngineHarness()
        #expect(p.send(ClientRequest(method: "POST", path: "/x")).contains("Content-Length: 0\r\n"))
    }

    @Test func invalidRequestHeadersFailWithoutSending() {
        let h = ClientEngineHarness()
        h.enqueue(ClientRequest(path: "/x", headers: [("X-A", "1\r\nInjected: yes")]))
        h.enqueue(ClientRequest(path: "/x y"))
        h.enqueue(ClientRequest(path: "/x", headers: [("Bad Name", "v")]))
        #expect(h.errors.map(\.code) == [.protocolError, .protocolError, .protocolError])
        #expect(!h.engine.hasPendingOutput)
        #expect(h.engine.capacity == 1)
        #expect(h.engine.state == .open)
    }

    @Test(arguments: ClientEngineHarness.Split.allCases)
    func contentLengthResponsesKeepTheConnection(split: ClientEngineHarness.Split) {
        let h = ClientEngineHarness()
        for i in 0..<3 {
            h.send()
            #expect(h.engine.capacity == 0)
            h.feed(Self.ok, split, seed: UInt64(i))
            #expect(h.responses.count == i + 1)
            #expect(h.engine.capacity == 1)
            #expect(h.engine.inFlight == 0)
            #expect(h.engine.state == .open)
        }
        let r = h.responses.last
        #expect(r?.status == 200)
        #expect(r?.headers["content-type"] == "text/plain")
        #expect(r.map { String(decoding: $0.body, as: UTF8.self) } == "hello")
        #expect(h.errors.isEmpty)
    }

    @Test(arguments: ClientEngineHarness.Split.allCases)
    func chunkedWithExtensionsAndTrailers(split: ClientEngineHarness.Split) {
        let h = ClientEngineHarness()
        h.send()
        h.feed("HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value;x\r\nhello\r\n6 ; ext=\"q\"\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n", split)
        #expect(h.responses.count == 1)
        let r = h.responses.first
        #expect(r?.status == 202)
        #expect(r.map { String(decoding: $0.body, as: UTF8.self) } == "hello world0123456789")
        #expect(r?.headers["x-checksum"] == "abc")
        #expect(r?.headers["X-Other"] == "1")
        #expect(h.engine.state == .open)
        #expect(h.engine.capacity == 1)
        // The connection is reusable: a second exchange works.
        h.send()
        h.feed(Self.ok, split)
        #expect(h.responses.count == 2)
    }

    @Test(arguments: ClientEngineHarness.Split.allCases)
    func bodyWithoutLengthEndsAtEOF(split: ClientEngineHarness.Split) {
        let h = ClientEngineHarness()
        h.send()
        h.feed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc", split)
        h.feed("def", split)
        #expect(h.results.isEmpty)
        #expect(h.engine.state == .open) // still reading
        h.engine.connectionEnded(ClientError(.connectionClosed, "eof"))
        #expect(h.responses.first.map { String(decoding: $0.body, as: UTF8.self) } == "abcdef")
        #expect(h.errors.isEmpty)
        #expect(h.engine.capacity == 0)
        #expect(h.engine.state == .closeNow)
    }

    @Test(arguments: ClientEngineHarness.Split.allCases)
    func closeInTheMiddleOfTheBodyFails(split: ClientEngineHarness.Split) {
        for response in ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                         "HTTP/1.1 200 OK\r\nContent-Len"] {
            let h = ClientEngineHarness()
            h.send()
            h.feed(response, split)
            #expect(h.results.isEmpty)
            h.engine.connectionEnded(ClientError(.connectionClosed, "peer closed", requestMaybeSent: true))
            #expect(h.errors.map(\.code) == [.connectionClosed], "\(response)")
            #expect(h.errors.first?.requestMaybeSent == true)
        }
    }

    @Test func endBeforeAnyByteWasHandedOutMeansNotSent() {
        let h = ClientEngineHarness()
        h.enqueue(ClientRequest(path: "/x", body: [1, 2, 3]))
        h.engine.connectionEnded(ClientError(.connectionClosed, "gone", requestMaybeSent: true))
        #expect(h.errors.first?.requestMaybeSent == false)
    }

    @Test(arguments: ClientEngineHarness.Split.allCases)
    func interimResponsesAreSkipped(split: ClientEngineHarness.Split) {
        let h = ClientEngineHarness()
        h.send()
        h.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + Self.ok, split)
        #expect(h.responses.count == 1)
        #expect(h.responses.first?.status == 200)
        #expect(h.responses.first?.headers["link"] == nil)
        #expect(h.engine.state == .open)
        let u = ClientEngineHarness()
        u.send()
        u.feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", split)
        #expect(u.errors.map(\.code) == [.protocolError])
    }

    @Test func earlyResponseBeforeTheBodyWasSentCompletesAndCloses() {
        let h = ClientEngineHarness()
        h.enqueue(ClientRequest(path: "/api/v2/spans", body: [UInt8](repeating: 0x61, count: 1 << 20)))
        let first = h.output(limit: 4096)
        #expect(first.hasPrefix("POST /api/v2/spans HTTP/1.1\r\n"))
        #expect(h.engine.hasPendingOutput)
        h.feed("HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: keep-alive\r\n\r\ntoo big!")
        #expect(h.responses.first?.status == 413)
        #expect(h.responses.first.map { String(decoding: $0.body, as: UTF8.self) } == "too big!")
        #expect(!h.engine.hasPendingOutput) // the rest of the body is dropped
        #expect(h.engine.capacity == 0)
        #expect(h.engine.state == .closeAfterFlush)
    }

    @Test func connectionCloseAndHTTP10EndTheConnection() {
        let c = ClientEngineHarness()
        c.send()
        #expect(c.feed("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok") == .closeAfterFlush)
        #expect(c.responses.count == 1)
        #expect(c.engine.capacity == 0)

        let old = ClientEngineHarness()
        old.send()
        #expect(old.feed("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") == .closeAfterFlush)
        let kept = ClientEngineHarness()
        kept.send()
        #expect(kept.feed("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok") == .open)
        #expect(kept.engine.capacity == 1)
    }

    @Test func headAnd204And304HaveNoBody() {
        let h = ClientEngineHarness()
        h.send(ClientRequest(method: "HEAD", path: "/"))
        h.feed("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        #expect(h.responses.count == 1)
        #expect(h.responses.first?.body.isEmpty == true)
        h.send()
        h.feed("HTTP/1.1 204 No Content\r\n\r\n")
        h.send()
        h.feed("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n")
        h.send()
        h.feed(Self.ok)
        #expect(h.responses.map(\.status) == [200, 204, 304, 200])
        #expect(h.engine.state == .open)
    }

    @Test func oversizeResponsesAreProtocolErrors() {
        let limit: (inout HTTPClientConfiguration) -> Void = { $0.maxResponseBytes = 100 }
        let cl = ClientEngineHarness(limit)
        cl.send()
        #expect(cl.feed("HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n") == .closeNow)
        #expect(cl.errors.map(\.code) == [.protocolError])

        let chunked = ClientEngineHarness(limit)
        chunked.send()
        chunked.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in 0..<10 { chunked.feed("10\r\n0123456789abcdef\r\n") }
        #expect(chunked.errors.map(\.code) == [.protocolError])
        #expect(chunked.engine.state == .closeNow)

        let eof = ClientEngineHarness(limit)
        eof.send()
        eof.feed("HTTP/1.1 200 OK\r\n\r\n")
        for _ in 0..<11 { eof.feed(String(repeating: "x", count: 10)) }
        #expect(eof.errors.map(\.code) == [.protocolError])

        let head = ClientEngineHarness { $0.maxResponseHeaderBytes = 200 }
        head.send()
        head.feed("HTTP/1.1 200 OK\r\n")
        for i in 0..<20 { head.feed("X-Filler-\(i): 0123456789\r\n") }
        #expect(head.errors.map(\.code) == [.protocolError])

        let many = ClientEngineHarness { $0.maxResponseHeaderCount = 3 }
        many.send()
        many.feed("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n")
        #expect(many.errors.map(\.code) == [.protocolError])
    }

    @Test(arguments: ["HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "ICY 200 OK\r\n\r\n", "<html>\r\n\r\n",
                      "HTTP/2 200\r\n\r\n", "HTTP/1.1 200 OK\r\n bad folding\r\n\r\n", "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
                      "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
    func malformedResponsesAreProtocolErrors(response: String) {
        let h = ClientEngineHarness()
        h.send()
        let state = h.feed(response)
        #expect(h.errors.map(\.code) == [.protocolError])
        #expect(state == .closeNow)
        #expect(h.engine.capacity == 0)
        h.engine.connectionEnded(ClientError(.connectionClosed, "x")) // nothing left to fail
        #expect(h.results.count == 1)
    }

    @Test func garbageIsDetectedBeforeTheHeadEnds() {
        let h = ClientEngineHarness()
        h.send()
        h.feed("SSH-2.0-OpenSSH")
        #expect(h.errors.map(\.code) == [.protocolError])
    }

    @Test func bareLFLineEndsAreAccepted() {
        let h = ClientEngineHarness()
        h.send()
        h.feed("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", .byteByByte)
        #expect(h.responses.first.map { String(decoding: $0.body, as: UTF8.self) } == "ok")
    }

    @Test func unsolicitedBytesMakeTheConnectionUnusable() {
        let h = ClientEngineHarness()
        #expect(h.feed("HTTP/1.1 408 Request Timeout\r\n\r\n") == .closeNow)
        #expect(h.engine.capacity == 0)
        let extra = ClientEngineHarness()
        extra.send()
        #expect(extra.feed(Self.ok + "\r\n") == .open) // stray CRLF is tolerated
        #expect(extra.feed(Self.ok) == .closeNow) // a response nobody asked for is not
        #expect(extra.responses.count == 1)
    }

    @Test func randomSplitsOfManyResponsesAgreeWithWholeFeeding() {
        let responses = [Self.ok,
                         "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                         "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad"]
        for seed in UInt64(1)...30 {
            let h = ClientEngineHarness()
            for (i, r) in responses.enumerated() {
                h.send()
                h.feed(r, .random, seed: seed &* 31 &+ UInt64(i))
            }
            #expect(h.responses.map(\.status) == [200, 201, 204, 500], "seed \(seed)")
            #expect(h.responses.map { String(decoding: $0.body, as: UTF8.self) } == ["hello", "abc", "", "bad"], "seed \(seed)")
        }
    }
}
