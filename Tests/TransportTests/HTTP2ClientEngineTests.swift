import TestSupport
import Dispatch
import Glibc
import Synchronization
import Testing
@testable import Transport

// The h2c client engine wired to the project's own HTTP2ServerEngine through in-memory byte
// buffers: no sockets, every engine call on the context's queue as a connection would make it.

typealias ClientResult = Result<ClientResponse, ClientError>

/// Client engine + server engine joined by byte buffers.
final class H2ClientHarness: @unchecked Sendable {
    // Both engines are only touched inside `context.queue.sync`.
    let context = H2TestContext()
    let client: HTTP2ClientEngine
    var server: HTTP2ServerEngine!
    /// How server bytes are cut before they reach the client, and client bytes before the server.
    var down: H2Split
    var up: H2Split
    private var rng: SplitMix64
    /// `drainOutput` limit per call on both sides.
    var drainLimit = 16_384
    /// Completions, tagged by the test's request number.
    let results = H2Recorder<(Int, ClientResult)>()
    private(set) var clientBytesSent = 0
    private(set) var lastState: ClientEngineState = .open
    /// Bytes to hand to the client instead of the server's (frames a test crafts).
    static let authority = "backend.test:9411"

    init(handler: any HTTPHandler, server serverConfiguration: HTTP2Configuration = HTTP2Configuration(),
         client clientConfiguration: HTTPClientConfiguration = HTTPClientConfiguration(),
         down: H2Split = .whole, up: H2Split = .whole) {
        self.down = down
        self.up = up
        if case .random(let seed) = down { rng = SplitMix64(seed: seed) } else { rng = SplitMix64(seed: 1) }
        let context = self.context
        client = context.queue.sync { HTTP2ClientEngine(configuration: clientConfiguration, queue: context.queue) }
        server = context.queue.sync { HTTP2ServerEngine(context: context, handler: handler, configuration: serverConfiguration) }
    }

    func enqueue(_ tag: Int, _ request: ClientRequest) {
        let results = self.results
        context.queue.sync {
            client.enqueue(request, authority: Self.authority) { results.add((tag, $0)) }
        }
    }

    private func pieces(_ bytes: [UInt8], _ split: H2Split) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var i = 0
        while i < bytes.count {
            let n: Int
            switch split {
            case .whole: n = bytes.count - i
            case .byteByByte: n = 1
            case .random: n = min(bytes.count - i, Int.random(in: 1...3000, using: &rng))
            }
            out.append(bytes[i..<(i + n)])
            i += n
        }
        return out
    }

    /// Everything the client has queued (without passing it on).
    func clientOutput() -> [UInt8] {
        context.queue.sync {
            var out: [UInt8] = []
            while client.hasPendingOutput { client.drainOutput(into: &out, limit: drainLimit) }
            clientBytesSent += out.count
            return out
        }
    }

    /// Hands bytes to the client engine (as `down` says); must run on the queue.
    func feedClient(_ bytes: [UInt8]) {
        for piece in pieces(bytes, down) {
            lastState = piece.withUnsafeBytes { client.receive($0) }
        }
    }

    func feedServer(_ bytes: [UInt8]) {
        for piece in pieces(bytes, up) { _ = piece.withUnsafeBytes { server.receive($0) } }
    }

    /// One round: client output to the server, server output to the client.
    @discardableResult
    func step() -> Bool {
        let upBytes = clientOutput()
        return context.queue.sync {
            if !upBytes.isEmpty { feedServer(upBytes) }
            var downBytes: [UInt8] = []
            while server.hasPendingOutput { server.drainOutput(into: &downBytes, limit: drainLimit) }
            if !downBytes.isEmpty { feedClient(downBytes) }
            return !upBytes.isEmpty || !downBytes.isEmpty
        }
    }

    @discardableResult
    func run(seconds: Double = 20, until done: (HTTP2ClientEngine, HTTP2ServerEngine) -> Bool) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            let moved = step()
            if context.queue.sync(execute: { done(client, server) }) { return true }
            if !moved { usleep(200) }
        }
        return false
    }

    /// Steps until `count` completions arrived.
    @discardableResult
    func runUntilResults(_ count: Int) -> Bool { run { _, _ in self.results.count >= count } }

    func onQueue<T>(_ body: (HTTP2ClientEngine, HTTP2ServerEngine) -> T) -> T {
        context.queue.sync { body(client, server) }
    }

    /// Every completion of request `tag` (the engine promises exactly one).
    func results(_ tag: Int) -> [ClientResult] { results.all.filter { $0.0 == tag }.map(\.1) }

    func response(_ tag: Int) -> ClientResponse? {
        guard let r = results(tag).first, case .success(let response) = r else { return nil }
        return response
    }

    func error(_ tag: Int) -> ClientError? {
        guard let r = results(tag).first, case .failure(let e) = r else { return nil }
        return e
    }

    var capacity: Int { onQueue { c, _ in c.capacity } }
    var inFlight: Int { onQueue { c, _ in c.inFlight } }
    var state: ClientEngineState { onQueue { c, _ in c.state } }
}

/// Answers 202 with "<length> <checksum>" of the request body; `x-size: N` answers N bytes of
/// deterministic data instead.
private func echoHandler(_ seen: H2Recorder<HTTPRequest>? = nil) -> ClosureHandler {
    ClosureHandler { request, respond in
        seen?.add(request)
        if let size = request.headers["x-size"].flatMap({ Int($0) }) {
            respond(HTTPResponse(status: 200, headers: [("x-kind", "sized")], body: sizedBody(size)))
            return
        }
        respond(HTTPResponse(status: 202, headers: [("X-Checksum", String(h2Checksum(request.body)))],
                             body: Array("\(request.body.count) \(h2Checksum(request.body))".utf8)))
    }
}

private func sizedBody(_ n: Int) -> [UInt8] { h2RandomBytes(n, seed: UInt64(n)) }

private func echoText(_ body: [UInt8]) -> String { "\(body.count) \(h2Checksum(body))" }

private func post(_ body: [UInt8], path: String = "/api/v2/spans", headers: [(name: String, value: String)] = []) -> ClientRequest {
    ClientRequest(method: "POST", path: path, headers: headers, body: body)
}

/// A frame as bytes: 9-byte header + payload.
private func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
    let n = payload.count
    return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
            UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
}

private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

/// Frames (type, flags, stream, payload) in a byte stream that starts at a frame boundary.
private func frames(_ bytes: ArraySlice<UInt8>) -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
    var out: [(UInt8, UInt8, UInt32, [UInt8])] = []
    var i = bytes.startIndex
    while bytes.endIndex - i >= 9 {
        let len = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
        let stream = (UInt32(bytes[i + 5]) & 0x7f) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])
        guard bytes.endIndex - i >= 9 + len else { break }
        out.append((bytes[i + 3], bytes[i + 4], stream, Array(bytes[(i + 9)..<(i + 9 + len)])))
        i += 9 + len
    }
    return out
}

@Suite struct HTTP2ClientEngineTests {
    @Test func prefaceAnnouncesSettingsAndConnectionWindow() {
        var config = HTTPClientConfiguration()
        config.http2StreamWindow = 300_000
        config.http2ConnectionWindow = 5_000_000
        let h = H2ClientHarness(handler: echoHandler(), client: config)
        let out = h.clientOutput()
        let magic = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        #expect(Array(out.prefix(magic.count)) == magic)
        let fs = frames(out.dropFirst(magic.count))
        #expect(fs.first?.type == 4)  // SETTINGS
        var settings: [UInt16: UInt32] = [:]
        if let payload = fs.first?.payload {
            for i in stride(from: 0, to: payload.count - 5, by: 6) {
                settings[UInt16(payload[i]) << 8 | UInt16(payload[i + 1])] =
                    UInt32(payload[i + 2]) << 24 | UInt32(payload[i + 3]) << 16 | UInt32(payload[i + 4]) << 8 | UInt32(payload[i + 5])
            }
        }
        #expect(settings[2] == 0)  // ENABLE_PUSH
        #expect(settings[4] == 300_000)  // INITIAL_WINDOW_SIZE
        let update = fs.first { $0.type == 8 && $0.stream == 0 }
        #expect(update.map { be32(UInt32(5_000_000 - 65_535)) == $0.payload } == true)
        #expect(h.state == .open)
        #expect(h.inFlight == 0)
    }

    @Test func singleRequest() {
        let seen = H2Recorder<HTTPRequest>()
        let h = H2ClientHarness(handler: echoHandler(seen))
        let body = h2RandomBytes(20_000, seed: 1)
        #expect(h.capacity > 0)
        h.enqueue(0, post(body, path: "/api/v2/spans?x=1",
                          headers: [("Content-Type", "application/json"), ("X-Mesh", "default"),
                                    ("Connection", "keep-alive"), ("Host", "ignored"), ("Transfer-Encoding", "chunked")]))
        #expect(h.inFlight == 1)
        #expect(h.runUntilResults(1))
        let r = h.response(0)
        #expect(r?.status == 202)
        #expect(r.map { String(decoding: $0.body, as: UTF8.self) } == echoText(body))
        #expect(r?.headers["x-checksum"] == String(h2Checksum(body)))
        #expect(r?.headers["content-length"] == String(echoText(body).utf8.count))
        let q = seen.all.first
        #expect(q?.method == "POST")
        #expect(q?.path == "/api/v2/spans")
        #expect(q?.query == "x=1")
        #expect(q?.headers["host"] == H2ClientHarness.authority)
        #expect(q?.headers["content-length"] == "20000")
        #expect(q?.headers.fields.contains { $0.name == "content-type" && $0.value == "application/json" } == true)
        #expect(q?.headers.fields.contains { $0.name == "x-mesh" } == true)
        #expect(q?.headers["connection"] == nil)
        #expect(q?.headers["transfer-encoding"] == nil)
        #expect(q?.body == body)
        #expect(h.results.count == 1)
        #expect(h.inFlight == 0)
        #expect(h.state == .open)
        #expect(h.capacity == 100)
        // A GET without a body goes out as HEADERS with END_STREAM and no content-length.
        h.enqueue(1, ClientRequest(method: "GET", path: "/health"))
        #expect(h.runUntilResults(2))
        #expect(h.response(1)?.status == 202)
        #expect(seen.all.last?.method == "GET")
        #expect(seen.all.last?.headers["content-length"] == nil)
    }

    @Test(arguments: [H2Split.whole, .random(seed: 5)])
    func fiftyConcurrentStreamsMatchTheirRequests(split: H2Split) {
        let h = H2ClientHarness(handler: echoHandler(), down: split, up: split)
        let bodies = (0..<50).map { h2RandomBytes(($0 * 3_331) % 40_000, seed: UInt64(1_000 + $0)) }
        for (i, body) in bodies.enumerated() { h.enqueue(i, post(body, path: "/s/\(i)")) }
        #expect(h.inFlight == 50)
        #expect(h.capacity == 50)
        #expect(h.runUntilResults(50))
        for (i, body) in bodies.enumerated() {
            #expect(h.results(i).count == 1, "request \(i)")
            #expect(h.response(i).map { String(decoding: $0.body, as: UTF8.self) } == echoText(body), "request \(i)")
        }
        #expect(h.inFlight == 0)
        #expect(h.capacity == 100)
        #expect(h.state == .open)
    }

    /// A 5 MiB body against a server announcing a 16 KiB stream window and the minimal
    /// connection window: the client sends no more than the window, then resumes on each
    /// WINDOW_UPDATE until every byte is there.
    @Test func largeBodyHonoursServerWindows() {
        var server = HTTP2Configuration()
        server.initialStreamWindow = 16_384
        server.connectionWindow = 65_535
        let h = H2ClientHarness(handler: echoHandler(), server: server)
        // Exchange SETTINGS first so the client knows the server's window.
        for _ in 0..<3 { h.step() }
        let body = h2RandomBytes(5 << 20, seed: 77)
        h.enqueue(0, post(body))
        // Without WINDOW_UPDATE, only one stream window of DATA may leave.
        let first = h.clientOutput()
        let data = frames(first[...]).filter { $0.type == 0 }.reduce(0) { $0 + $1.payload.count }
        #expect(data == 16_384)
        #expect(h.clientOutput().isEmpty)
        h.onQueue { _, _ in h.feedServer(first) }
        #expect(h.runUntilResults(1))
        #expect(h.response(0).map { String(decoding: $0.body, as: UTF8.self) } == echoText(body))
        #expect(h.clientBytesSent > 5 << 20)
        #expect(h.state == .open)
    }

    @Test(arguments: [H2Split.byteByByte, .random(seed: 3), .random(seed: 4242)])
    func serverBytesInAnySplit(split: H2Split) {
        let h = H2ClientHarness(handler: echoHandler(), down: split)
        let bodies = (0..<4).map { h2RandomBytes(5_000 * ($0 + 1), seed: UInt64($0)) }
        for (i, body) in bodies.enumerated() { h.enqueue(i, post(body)) }
        h.enqueue(4, ClientRequest(method: "GET", path: "/big", headers: [("x-size", "70000")]))
        #expect(h.runUntilResults(5))
        for (i, body) in bodies.enumerated() {
            #expect(h.response(i).map { String(decoding: $0.body, as: UTF8.self) } == echoText(body))
        }
        #expect(h.response(4)?.status == 200)
        #expect(h.response(4)?.headers["x-kind"] == "sized")
        #expect(h.response(4)?.body == sizedBody(70_000))
        #expect(h.results.count == 5)
        #expect(h.state == .open)
    }

    /// The server answers 413 from the declared length and resets the stream: the client takes
    /// the answer, stops sending the body and keeps the connection.
    @Test func serverAnswersBeforeReadingTheWholeBody() {
        var server = HTTP2Configuration()
        server.maxBodyBytes = 100_000
        let seen = H2Recorder<HTTPRequest>()
        let h = H2ClientHarness(handler: echoHandler(seen), server: server)
        for _ in 0..<3 { h.step() }
        h.enqueue(0, post(h2RandomBytes(4 << 20, seed: 9)))
        #expect(h.runUntilResults(1))
        #expect(h.response(0)?.status == 413)
        #expect(h.response(0).map { String(decoding: $0.body, as: UTF8.self).contains("body_too_large") } == true)
        #expect(h.run { c, _ in c.capacity == 100 })
        #expect(h.clientBytesSent < 2 << 20)
        #expect(seen.count == 0)
        let body = h2RandomBytes(1_000, seed: 10)
        h.enqueue(1, post(body))
        #expect(h.runUntilResults(2))
        #expect(h.response(1).map { String(decoding: $0.body, as: UTF8.self) } == echoText(body))
        #expect(h.state == .open)
    }

    /// A complete answer while the body is still held back by the server's window, and no
    /// RST_STREAM from the server: the client resets the stream itself (CANCEL) so the stream
    /// does not stay open, and the slot comes back.
    @Test func earlyAnswerWithoutServerResetStopsTheUpload() {
        var server = HTTP2Configuration()
        server.initialStreamWindow = 16_384
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held, server: server)
        for _ in 0..<3 { h.step() }
        h.enqueue(0, post(h2RandomBytes(200_000, seed: 4)))
        let first = h.clientOutput()
        h.onQueue { _, _ in h.feedServer(first) }
        #expect(h.clientOutput().isEmpty)  // blocked on the stream window
        // HEADERS ":status: 200" with END_HEADERS | END_STREAM, as the server would send it.
        h.onQueue { _, _ in h.feedClient(frame(type: 1, flags: 5, stream: 1, [0x88])) }
        #expect(h.response(0)?.status == 200)
        #expect(h.response(0)?.body == [])
        let out = h.clientOutput()
        #expect(frames(out[...]).contains { $0.type == 3 && $0.stream == 1 && $0.payload == be32(8) })
        #expect(!frames(out[...]).contains { $0.type == 0 })
        #expect(h.inFlight == 0)
        #expect(h.capacity == 100)
        #expect(h.state == .open)
    }

    @Test func serverConcurrencyLimitBoundsCapacity() {
        var server = HTTP2Configuration()
        server.maxConcurrentStreams = 2
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held, server: server)
        #expect(h.run { c, _ in c.capacity == 2 })
        h.enqueue(0, post([1]))
        #expect(h.capacity == 1)
        h.enqueue(1, post([2]))
        #expect(h.capacity == 0)
        #expect(h.run { _, _ in held.count == 2 })
        held.answer(0, HTTPResponse(status: 202, body: [7]))
        #expect(h.runUntilResults(1))
        #expect(h.response(0)?.body == [7])
        #expect(h.run { c, _ in c.capacity == 1 })
        h.enqueue(2, post([3]))
        #expect(h.capacity == 0)
        #expect(h.run { _, _ in held.count == 3 })
        held.answer(1, HTTPResponse(status: 202))
        held.answer(2, HTTPResponse(status: 204))
        #expect(h.runUntilResults(3))
        #expect(h.response(2)?.status == 204)
        #expect(h.capacity == 2)
        #expect(h.inFlight == 0)
    }

    /// Requests sent before the server's SETTINGS arrive may exceed its limit: the extra ones
    /// come back as REFUSED_STREAM, which fails them as never processed (safe to retry).
    @Test func refusedStreamsFailAsNotSent() {
        var server = HTTP2Configuration()
        server.maxConcurrentStreams = 2
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held, server: server)
        for i in 0..<4 { h.enqueue(i, post([UInt8(i)])) }
        #expect(h.runUntilResults(2))
        for i in 2..<4 {
            #expect(h.error(i)?.code == .connectionClosed, "request \(i)")
            #expect(h.error(i)?.requestMaybeSent == false, "request \(i)")
            #expect(h.error(i)?.message.contains("REFUSED_STREAM") == true, "request \(i)")
        }
        #expect(held.count == 2)
        #expect(h.capacity == 0)
        held.answer(0, HTTPResponse(status: 202))
        held.answer(1, HTTPResponse(status: 202))
        #expect(h.runUntilResults(4))
        #expect(h.response(0)?.status == 202)
        #expect(h.response(1)?.status == 202)
        #expect(h.capacity == 2)
    }

    @Test func goawayLetsAcceptedStreamsFinish() {
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held)
        h.enqueue(0, post([1]))
        h.enqueue(1, post([2]))
        #expect(h.run { _, _ in held.count == 2 })
        _ = h.onQueue { _, s in s.beginShutdown() }
        // Sent after the server's GOAWAY left it, before the client read it: never processed.
        h.enqueue(2, post([3]))
        #expect(h.runUntilResults(1))
        #expect(h.error(2)?.code == .connectionClosed)
        #expect(h.error(2)?.requestMaybeSent == false)
        #expect(h.capacity == 0)
        #expect(h.inFlight == 2)
        #expect(h.state == .open)
        // New requests are refused at once, as not sent.
        h.enqueue(3, post([4]))
        #expect(h.error(3)?.requestMaybeSent == false)
        held.answer(0, HTTPResponse(status: 202, body: [10]))
        held.answer(1, HTTPResponse(status: 202, body: [11]))
        #expect(h.runUntilResults(4))
        #expect(h.response(0)?.body == [10])
        #expect(h.response(1)?.body == [11])
        #expect(held.count == 2)
        #expect(h.inFlight == 0)
        #expect(h.capacity == 0)
        #expect(h.state == .closeAfterFlush)
    }

    @Test(arguments: [(UInt32(2), true), (UInt32(7), false), (UInt32(8), true)])
    func resetStreamFailsOnlyThatRequest(code: UInt32, maybeSent: Bool) {
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held)
        h.enqueue(0, post([1]))
        h.enqueue(1, post([2]))
        #expect(h.run { _, _ in held.count == 2 })
        // RST_STREAM on stream 1, as the server would send it.
        h.onQueue { _, _ in h.feedClient(frame(type: 3, stream: 1, be32(code))) }
        #expect(h.results.count == 1)
        #expect(h.error(0)?.code == .connectionClosed)
        #expect(h.error(0)?.requestMaybeSent == maybeSent)
        #expect(h.inFlight == 1)
        #expect(h.state == .open)
        // The server's late answer on the reset stream is dropped; the other stream finishes.
        held.answer(0, HTTPResponse(status: 202, body: [9]))
        held.answer(1, HTTPResponse(status: 202, body: [8]))
        #expect(h.runUntilResults(2))
        #expect(h.response(1)?.body == [8])
        #expect(h.results(0).count == 1)
        h.enqueue(2, post([3]))
        #expect(h.run { _, _ in held.count == 3 })
        held.answer(2, HTTPResponse(status: 201))
        #expect(h.runUntilResults(3))
        #expect(h.response(2)?.status == 201)
        #expect(h.state == .open)
    }

    /// `expect: 100-continue` makes the server send an interim 100 first: only the final
    /// response reaches the completion, with its own headers.
    @Test func interimResponseIsSkipped() {
        let h = H2ClientHarness(handler: echoHandler())
        let body = h2RandomBytes(3_000, seed: 8)
        h.enqueue(0, post(body, headers: [("Expect", "100-continue")]))
        #expect(h.runUntilResults(1))
        #expect(h.response(0)?.status == 202)
        #expect(h.response(0).map { String(decoding: $0.body, as: UTF8.self) } == echoText(body))
        #expect(h.response(0)?.headers["x-checksum"] == String(h2Checksum(body)))
        #expect(h.results.count == 1)
    }

    /// A declared length over `maxResponseBytes` fails that request only (and resets its stream).
    @Test func oversizeDeclaredResponseFailsThatRequestOnly() {
        var config = HTTPClientConfiguration()
        config.maxResponseBytes = 10_000
        let h = H2ClientHarness(handler: echoHandler(), client: config)
        h.enqueue(0, ClientRequest(method: "GET", path: "/big", headers: [("x-size", "50000")]))
        h.enqueue(1, ClientRequest(method: "GET", path: "/small", headers: [("x-size", "10000")]))
        #expect(h.runUntilResults(2))
        #expect(h.error(0)?.code == .protocolError)
        #expect(h.error(0)?.requestMaybeSent == true)
        #expect(h.response(1)?.body == sizedBody(10_000))
        #expect(h.run { c, _ in c.capacity == 100 })
        #expect(h.state == .open)
    }

    /// A response without a length that grows past `maxResponseBytes`: the client resets the
    /// stream (CANCEL) and fails the request; the connection carries on.
    @Test func oversizeUndeclaredResponseIsReset() {
        var config = HTTPClientConfiguration()
        config.maxResponseBytes = 10_000
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held, client: config)
        h.enqueue(0, ClientRequest(method: "GET", path: "/a"))
        #expect(h.run { _, _ in held.count == 1 })
        _ = h.clientOutput()
        // HEADERS (":status: 200" as HPACK static index 8, END_HEADERS) and 2 × 6000 bytes of DATA.
        h.onQueue { _, _ in
            h.feedClient(frame(type: 1, flags: 4, stream: 1, [0x88]))
            h.feedClient(frame(type: 0, stream: 1, [UInt8](repeating: 1, count: 6_000)))
        }
        #expect(h.results.count == 0)
        h.onQueue { _, _ in h.feedClient(frame(type: 0, stream: 1, [UInt8](repeating: 2, count: 6_000))) }
        #expect(h.error(0)?.code == .protocolError)
        #expect(h.error(0)?.message.contains("10000") == true)
        let out = h.clientOutput()
        #expect(frames(out[...]).contains { $0.type == 3 && $0.stream == 1 && $0.payload == be32(8) })
        // Late frames for the stream are dropped; a new request works.
        h.onQueue { _, _ in h.feedClient(frame(type: 0, flags: 1, stream: 1, [3, 3])) }
        #expect(h.results(0).count == 1)
        h.enqueue(1, ClientRequest(method: "GET", path: "/b"))
        #expect(h.run { _, _ in held.count == 2 })
        held.answer(1, HTTPResponse(status: 200, body: [5]))
        #expect(h.runUntilResults(2))
        #expect(h.response(1)?.body == [5])
        #expect(h.state == .open)
    }

    /// The connection ends: everything in flight fails once; a request whose HEADERS never
    /// left is marked as not sent.
    @Test func connectionEndedFailsEverythingInFlight() {
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held)
        h.enqueue(0, post([1]))
        #expect(h.run { _, _ in held.count == 1 })
        h.enqueue(1, post([2]))  // still in the client's output
        h.onQueue { c, _ in c.connectionEnded(ClientError(.connectionClosed, "peer closed", requestMaybeSent: true)) }
        #expect(h.results.count == 2)
        #expect(h.error(0)?.requestMaybeSent == true)
        #expect(h.error(0)?.message == "peer closed")
        #expect(h.error(1)?.requestMaybeSent == false)
        #expect(h.inFlight == 0)
        #expect(h.capacity == 0)
        #expect(h.state == .closeNow)
        held.answer(0, HTTPResponse(status: 202))
        h.run(seconds: 0.2) { _, _ in false }
        h.enqueue(2, post([3]))
        #expect(h.error(2)?.requestMaybeSent == false)
        #expect(h.results.count == 3)
    }

    /// A completion may enqueue the next request (as the pool does) from inside `receive`.
    @Test func completionMayEnqueueTheNextRequest() {
        let h = H2ClientHarness(handler: echoHandler())
        nonisolated(unsafe) let client = h.client
        let results = h.results
        let chain = Mutex(0)
        @Sendable func completion(_ tag: Int) -> @Sendable (ClientResult) -> Void {
            { result in
                results.add((tag, result))
                let n = chain.withLock { $0 += 1; return $0 }
                if n < 5 {
                    client.enqueue(post([UInt8(n)]), authority: "x", completion: completion(n))
                }
            }
        }
        h.onQueue { c, _ in c.enqueue(post([0]), authority: "x", completion: completion(0)) }
        #expect(h.runUntilResults(5))
        #expect((0..<5).allSatisfy { h.response($0).map { String(decoding: $0.body, as: UTF8.self) } == echoText([UInt8($0)]) })
        #expect(h.inFlight == 0)
    }

    /// Garbage from the server: every request fails as a protocol error, GOAWAY goes out.
    @Test func garbageFromTheServerFailsEverything() {
        let held = DeferredHandler()
        let h = H2ClientHarness(handler: held)
        h.enqueue(0, post([1]))
        #expect(h.run { _, _ in held.count == 1 })
        h.onQueue { _, _ in h.feedClient(frame(type: 0, stream: 0, [1, 2, 3])) }  // DATA on stream 0
        #expect(h.error(0)?.code == .protocolError)
        #expect(h.state == .closeAfterFlush)
        #expect(h.capacity == 0)
        #expect(frames(h.clientOutput()[...]).contains { $0.type == 7 })
    }
}
