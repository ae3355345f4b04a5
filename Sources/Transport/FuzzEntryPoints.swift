// Entry points for the libFuzzer harness in Fuzz/ (a separate package, so it cannot reach this
// module's internal types). Each function runs one fuzz input through an engine exactly as a
// connection would, and traps (`fuzzCheck`) only when an invariant the engine promises does
// not hold. Nothing in the product calls these; they change no behaviour.
import Dispatch
import Synchronization

/// One fuzz input per call. Inputs start with a few control bytes (split seed, options) so the
/// fuzzer itself chooses how the bytes are cut into reads: a parser must give the same result
/// whatever the cuts.
@_spi(Fuzzing) public enum TransportFuzz {
    // MARK: HTTP/1.1 request parser

    /// The HTTP/1.1 request parser (HTTP1RequestParser, parseRequestHead, ChunkedDecoder).
    /// `bytes[0]`: split seed and options; the rest is what a client sends. The input is parsed
    /// once whole and once in reads cut by the seed; both must report the same heads, bodies,
    /// failure and upgrade bytes (a trap otherwise).
    public static func http1Request(_ bytes: [UInt8]) {
        guard let control = bytes.first else { return }
        let input = Array(bytes.dropFirst())
        var config = HTTPServerConfiguration()
        if control & 0x80 != 0 { // small limits, so the limit paths are reachable
            config.maxRequestLineBytes = 64
            config.maxHeaderBytes = 256
            config.maxHeaderCount = 8
            config.maxBodyBytes = 512
        }
        let allowUpgrade = control & 0x40 != 0
        wholeVersusSplit(input, control: control, "request parser") {
            runRequestParser(input, config: config, allowUpgrade: allowUpgrade, pieces: $0)
        }
    }

    /// What a parser reports for `input` fed whole and fed in the pieces `control` picks must agree.
    private static func wholeVersusSplit(_ input: [UInt8], control: UInt8, _ what: String, _ run: ([Int]) -> [String]) {
        let whole = run([input.count])
        let cuts = FuzzSplit(seed: control, total: input.count).pieces
        let split = run(cuts)
        fuzzCheck(whole == split, "\(what) differs whole vs split \(cuts):\n whole: \(whole)\n split: \(split)")
    }

    /// Feeds `input` in `pieces` the way HTTP1Engine does (parse when nothing is buffered,
    /// else buffer + parseBuffered); returns everything the parser reported.
    private static func runRequestParser(_ input: [UInt8], config: HTTPServerConfiguration, allowUpgrade: Bool,
                                         pieces: [Int]) -> [String] {
        let parser = HTTP1RequestParser(config: config, budget: BodyBudget.unlimited, allowUpgrade: allowUpgrade)
        let recorder = RequestRecorder(parser)
        parser.delegate = recorder
        var i = 0
        for n in pieces {
            input[i..<(i + n)].withUnsafeBytes { piece in
                if parser.hasBufferedInput || parser.isUpgrading {
                    parser.buffer(piece)
                    parser.parseBuffered()
                } else {
                    parser.parse(piece)
                }
            }
            i += n
        }
        var events = recorder.events
        events.append("end progress=\(parser.progress) upgrade=\(parser.upgradeBytes)")
        return events
    }

    private final class RequestRecorder: HTTP1RequestParserDelegate {
        unowned let parser: HTTP1RequestParser
        var events: [String] = []
        init(_ parser: HTTP1RequestParser) { self.parser = parser }

        func parserMayStartRequest() -> Bool { true }
        func parserBodyStarted(_ head: HTTP1RequestHead) { events.append("body-start \(describe(head))") }
        func parserRequest(_ head: HTTP1RequestHead, body: [UInt8]) {
            events.append("request \(describe(head)) body=\(body)")
            if head.h2cSettings != nil { parser.beginUpgrade() }
        }
        func parserFailed(_ error: HTTP1RequestError) { events.append("failed \(error.status) \(error.code): \(error.message)") }

        private func describe(_ h: HTTP1RequestHead) -> String {
            "\(h.method) \(h.path) ?\(h.query) \(h.version) \(h.headers.fields) close=\(h.closeAfter) head=\(h.isHead) "
                + "continue=\(h.expectContinue) h2c=\(String(describing: h.h2cSettings)) length=\(h.contentLength) chunked=\(h.chunked)"
        }
    }

    // MARK: HTTP/1.1 client response parser

    /// The outbound client's HTTP/1.1 response parser (HTTP1ClientEngine). `bytes[0]`: split
    /// seed and options (bit 7: the request is HEAD; bit 6: small limits); the rest is what
    /// the server sends. Whole and split feeding must complete the request the same way.
    public static func http1Response(_ bytes: [UInt8]) {
        guard let control = bytes.first else { return }
        let input = Array(bytes.dropFirst())
        var config = HTTPClientConfiguration()
        if control & 0x40 != 0 {
            config.maxResponseBytes = 512
            config.maxResponseHeaderBytes = 256
            config.maxResponseHeaderCount = 8
        }
        let method = control & 0x80 != 0 ? "HEAD" : "POST"
        wholeVersusSplit(input, control: control, "response parser") {
            runResponseParser(input, config: config, method: method, pieces: $0)
        }
    }

    private static func runResponseParser(_ input: [UInt8], config: HTTPClientConfiguration, method: String,
                                          pieces: [Int]) -> [String] {
        let engine = HTTP1ClientEngine(configuration: config)
        let events = FuzzLog()
        engine.enqueue(ClientRequest(method: method, path: "/api/v2/spans", body: Array("[]".utf8)), authority: "backend:9411") { r in
            switch r {
            case .success(let response): events.add("response \(response.status) \(response.headers.fields) body=\(response.body)")
            // The message quotes what was buffered of a bad status line ('…'), which depends on the
            // cuts. Cut by scalar: a combining character after the quote would merge with it into
            // one Character (a fuzz input began with U+0338).
            case .failure(let error):
                let text = String(String.UnicodeScalarView(error.description.unicodeScalars.prefix { $0 != "'" }))
                events.add("error \(text) sent=\(error.requestMaybeSent)")
            }
        }
        var out: [UInt8] = []
        while engine.hasPendingOutput { engine.drainOutput(into: &out, limit: 1 << 16) }
        var i = 0
        for n in pieces {
            let state = input[i..<(i + n)].withUnsafeBytes { engine.receive($0) }
            i += n
            if state == .closeNow { break } // the connection closes: later bytes are never read
        }
        let before = engine.state
        engine.connectionEnded(ClientError(.connectionClosed, "EOF"))
        return events.entries + ["end state=\(before) inFlight=\(engine.inFlight)"]
    }

    // MARK: HTTP/2 client

    /// The outbound client's HTTP/2 engine (HTTP2ClientEngine) reading a server's bytes.
    /// `bytes[0]`: split seed; bits 0–1 of `bytes[1]`: 1–4 requests (one a HEAD), bit 2: the rest
    /// is frame records (`frames(fromRecords:)`), else what the server sends (starting with its
    /// SETTINGS). Every request must complete exactly
    /// once by the end of the connection.
    public static func h2Client(_ bytes: [UInt8]) {
        guard bytes.count >= 2 else { return }
        let input = bytes[1] & 4 != 0 ? frames(fromRecords: bytes.dropFirst(2)) : Array(bytes.dropFirst(2))
        let queue = DispatchQueue(label: "fuzz.h2.client")
        let completions = FuzzLog()
        let requests = clientRequests(1 + Int(bytes[1] & 3))
        queue.sync {
            let engine = HTTP2ClientEngine(configuration: HTTPClientConfiguration(), queue: queue)
            for r in requests {
                engine.enqueue(r, authority: "backend:9411") { _ in completions.add("done") }
            }
            var out: [UInt8] = []
            var i = 0
            for n in FuzzSplit(seed: bytes[0], total: input.count, coarse: true).pieces {
                while engine.hasPendingOutput { engine.drainOutput(into: &out, limit: 1 << 16) }
                out.removeAll(keepingCapacity: true)
                let state = input[i..<(i + n)].withUnsafeBytes { engine.receive($0) }
                i += n
                if state == .closeNow { break }
            }
            engine.connectionEnded(ClientError(.connectionClosed, "EOF"))
            fuzzCheck(engine.inFlight == 0, "h2 client: \(engine.inFlight) requests in flight after the connection ended")
        }
        fuzzCheck(completions.entries.count == requests.count, "h2 client: \(completions.entries.count) completions for \(requests.count) requests")
    }

    /// The requests `h2Client` sends (and `h2Conversation` records answers to).
    static func clientRequests(_ n: Int) -> [ClientRequest] {
        (0..<n).map { k in
            ClientRequest(method: k == 1 ? "HEAD" : "POST", path: "/v\(k)", headers: [("content-type", "application/json")],
                          body: k == 1 ? [] : [UInt8](repeating: 0x61, count: k * 700))
        }
    }

    // MARK: HTTP/2 server

    /// The client preface every h2c connection starts with (prepended to the fuzz input).
    static let clientMagic = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// Its length, for seeds recorded with it.
    public static var clientMagicLength: Int { clientMagic.count }

    /// The HTTP/2 server engine (HTTP2ServerEngine on nghttp2) reading a client's frames.
    /// `bytes[0]`: split seed and options (bit 7: small limits; bit 6: the rest is frame records,
    /// see `frames(fromRecords:)`); the rest are frames after the client preface, which is prepended. The handler answers every request (echoing its body;
    /// `PUT` answers twice, which must be harmless); reads stop when the engine asks to close.
    public static func h2Server(_ bytes: [UInt8]) {
        guard let control = bytes.first else { return }
        let input = clientMagic + (control & 0x40 != 0 ? frames(fromRecords: bytes.dropFirst()) : Array(bytes.dropFirst()))
        var config = HTTP2Configuration()
        if control & 0x80 != 0 {
            config.maxConcurrentStreams = 4
            config.initialStreamWindow = 1024
            config.maxBodyBytes = 2048
            config.maxBufferedBodyBytes = 4096
            config.maxHeaderListBytes = 512
            config.maxHeaderFields = 8
        }
        let context = FuzzContext()
        let handler = ClosureHandler { request, respond in
            var body = Array(request.path.utf8) + request.body
            if request.path.hasSuffix("/big") { body += [UInt8](repeating: 0x62, count: 100_000) }
            respond(HTTPResponse(status: 200, headers: [("x-method", request.method)], body: body))
            if request.method == "PUT" { respond(HTTPResponse(status: 500)) }
        }
        let engine = context.queue.sync { HTTP2ServerEngine(context: context, handler: handler, configuration: config) }
        var out: [UInt8] = []
        func drain() {
            context.queue.sync {} // answers the handler queued
            context.queue.sync {
                while engine.hasPendingOutput { engine.drainOutput(into: &out, limit: 1 << 16) }
                out.removeAll(keepingCapacity: true)
            }
        }
        var i = 0
        for n in FuzzSplit(seed: control, total: input.count, coarse: true).pieces {
            let d = context.queue.sync { input[i..<(i + n)].withUnsafeBytes { engine.receive($0) } }
            i += n
            drain()
            if d == .closeNow || d == .closeAfterFlush { break }
        }
        _ = context.queue.sync { engine.peerClosed() }
        drain()
        _ = context.queue.sync { engine.beginShutdown() }
        drain()
    }

    private final class FuzzContext: ConnectionContext, @unchecked Sendable {
        let queue = DispatchQueue(label: "fuzz.h2.server")
        let remoteAddress = "127.0.0.1:1"
        let listener = "fuzz"
        func outputAvailable() {}
    }

    // MARK: frame records

    /// HTTP/2 frames from records `type flags stream length(2, big-endian) payload`: the fuzzer
    /// mutates records, and every frame header stays consistent with its payload (a payload
    /// cut short by the end of the input gets the length it has).
    static func frames(fromRecords records: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        var r = records
        while r.count >= 5 {
            let type = r[r.startIndex], flags = r[r.startIndex + 1], stream = r[r.startIndex + 2]
            let n = min(Int(r[r.startIndex + 3]) << 8 | Int(r[r.startIndex + 4]), r.count - 5)
            out += [0, UInt8(n >> 8), UInt8(n & 0xff), type, flags, 0, 0, 0, stream]
            out += r.dropFirst(5).prefix(n)
            r = r.dropFirst(5 + n)
        }
        return out
    }

    /// The inverse of `frames(fromRecords:)` for seeds: wire frames to records (stream ids and
    /// lengths must fit: one byte, two bytes).
    public static func records(fromFrames wire: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i + 9 <= wire.count {
            let n = Int(wire[i]) << 16 | Int(wire[i + 1]) << 8 | Int(wire[i + 2])
            out += [wire[i + 3], wire[i + 4], wire[i + 8], UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
            out += wire[(i + 9)..<min(wire.count, i + 9 + n)]
            i += 9 + n
        }
        return out
    }

    // MARK: seeds

    /// A real conversation for the seed corpora: HTTP2ClientEngine sends `clientRequests(n)`
    /// to an HTTP2ServerEngine whose handler echoes; returns what each side sent (the client's
    /// bytes start with the preface).
    public static func h2Conversation(requests n: Int) -> (client: [UInt8], server: [UInt8]) {
        let requests = clientRequests(n)
        let context = FuzzContext()
        let handler = ClosureHandler { request, respond in
            respond(HTTPResponse(status: 202, headers: [("content-type", "application/json")], body: Array("{}".utf8) + request.body))
        }
        let server = context.queue.sync { HTTP2ServerEngine(context: context, handler: handler, configuration: HTTP2Configuration()) }
        let client = context.queue.sync { HTTP2ClientEngine(configuration: HTTPClientConfiguration(), queue: context.queue) }
        let done = FuzzLog()
        context.queue.sync {
            for r in requests { client.enqueue(r, authority: "backend:9411") { _ in done.add("done") } }
        }
        var clientSent: [UInt8] = [], serverSent: [UInt8] = []
        for _ in 0..<50 where done.entries.count < requests.count {
            context.queue.sync {
                var up: [UInt8] = []
                while client.hasPendingOutput { client.drainOutput(into: &up, limit: 1 << 16) }
                clientSent += up
                _ = up.withUnsafeBytes { server.receive($0) }
            }
            context.queue.sync {}
            context.queue.sync {
                var down: [UInt8] = []
                while server.hasPendingOutput { server.drainOutput(into: &down, limit: 1 << 16) }
                serverSent += down
                _ = down.withUnsafeBytes { client.receive($0) }
            }
        }
        return (clientSent, serverSent)
    }
}

/// `precondition` whose message survives -O (the harness is a release build): the finding's
/// explanation goes to the crash log.
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

/// Completions collected from any thread.
private final class FuzzLog: Sendable {
    private let log = Mutex<[String]>([])
    func add(_ entry: String) { log.withLock { $0.append(entry) } }
    var entries: [String] { log.withLock { $0 } }
}

/// Read sizes cut from a seed byte: the low 3 bits pick the largest read (1 … 4096 bytes;
/// `coarse`: 16 … 65536, for engines where a read costs a queue hop), the seed drives a small
/// xorshift generator. Same seed and length → same cuts.
struct FuzzSplit {
    let pieces: [Int]

    init(seed: UInt8, total: Int, coarse: Bool = false) {
        let largest = (coarse ? [16, 61, 256, 1024, 4096, 9000, 16384, 65536] : [1, 2, 7, 16, 61, 256, 1024, 4096])[Int(seed & 7)]
        var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        var pieces: [Int] = []
        var left = total
        while left > 0 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            let n = min(left, 1 + Int(state % UInt64(largest)))
            pieces.append(n)
            left -= n
        }
        self.pieces = pieces
    }
}
