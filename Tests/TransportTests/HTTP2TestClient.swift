import TestSupport
import CNghttp2
import Dispatch
import Glibc
import Synchronization
@testable import Transport

/// A test-only HTTP/2 client on nghttp2's client session: requests in, frames out as bytes, so
/// tests can talk to `HTTP2ServerEngine` without sockets.
final class HTTP2TestClient {
    struct Response {
        var status: Int?
        /// Every `:status` seen, interim ones (1xx) included.
        var statuses: [Int] = []
        var headers: [(name: String, value: String)] = []
        var body: [UInt8] = []
        /// The stream closed; `closeCode` is the RST_STREAM error code (0 for a clean end).
        var closed = false
        var closeCode: UInt32 = 0
    }

    fileprivate(set) var session: OpaquePointer!
    fileprivate var responses: [Int32: Response] = [:]
    fileprivate var uploads: [Int32: (bytes: [UInt8], offset: Int)] = [:]
    fileprivate(set) var goawayReceived = false
    fileprivate(set) var goawayErrorCode: UInt32 = 0
    fileprivate(set) var goawayLastStreamID: Int32 = 0
    /// The settings the client announces (also packed into `HTTP2-Settings` for upgrades).
    let settings: [nghttp2_settings_entry]

    init(initialWindow: UInt32 = 1 << 20) {
        settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: initialWindow),
        ]
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnData)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrame)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnClose)
        var s: OpaquePointer?
        let rv = nghttp2_session_client_new(&s, callbacks, Unmanaged.passUnretained(self).toOpaque())
        precondition(rv == 0)
        session = s
        var iv = settings
        nghttp2_submit_settings(session, 0, &iv, iv.count)
    }

    deinit { nghttp2_session_del(session) }

    /// The SETTINGS payload for an `HTTP2-Settings` header.
    func settingsPayload() -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 64)
        var iv = settings
        let n = nghttp2_pack_settings_payload(&buf, buf.count, &iv, iv.count)
        precondition(n >= 0)
        return Array(buf[0..<n])
    }

    /// Opens stream 1 as the upgraded request (half-closed local); its answer lands in `responses[1]`.
    func upgrade(head: Bool = false) {
        let payload = settingsPayload()
        let rv = payload.withUnsafeBufferPointer { nghttp2_session_upgrade2(session, $0.baseAddress, $0.count, head ? 1 : 0, nil) }
        precondition(rv == 0, String(cString: nghttp2_strerror(rv)))
        responses[1] = Response()
    }

    /// Submits a request; returns its stream id.
    @discardableResult
    func request(method: String = "POST", path: String = "/", headers: [(String, String)] = [],
                 body: [UInt8]? = nil, contentLength: Bool = true) -> Int32 {
        var fields: [(String, String)] = [(":method", method), (":scheme", "http"), (":authority", "test.local"), (":path", path)]
        fields += headers
        if let body, contentLength { fields.append(("content-length", String(body.count))) }
        var storage: [UInt8] = []
        var offsets: [(Int, Int, Int, Int)] = []
        for (n, v) in fields {
            let a = storage.count; storage += Array(n.utf8)
            let b = storage.count; storage += Array(v.utf8)
            offsets.append((a, b - a, b, storage.count - b))
        }
        let id: Int32 = storage.withUnsafeMutableBufferPointer { buf in
            var nva = offsets.map { nghttp2_nv(name: buf.baseAddress! + $0.0, value: buf.baseAddress! + $0.2, namelen: $0.1, valuelen: $0.3, flags: 0) }
            if body != nil {
                var provider = nghttp2_data_provider()
                provider.read_callback = clientReadBody
                return nghttp2_submit_request(session, nil, &nva, nva.count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, &nva, nva.count, nil, nil)
        }
        precondition(id > 0, String(cString: nghttp2_strerror(id)))
        if let body { uploads[id] = (body, 0) }
        responses[id] = Response()
        return id
    }

    func reset(_ streamID: Int32) {
        nghttp2_submit_rst_stream(session, 0, streamID, NGHTTP2_CANCEL.rawValue)
    }

    /// Everything the client wants to send now.
    func output() -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var p: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &p)
            precondition(n >= 0, "client mem_send failed: \(n)")
            if n == 0 { break }
            out.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
        }
        return out
    }

    /// Feeds server bytes; returns nghttp2's result (negative on a fatal error).
    @discardableResult
    func receive(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
    }

    func response(_ id: Int32) -> Response? { responses[id] }
}

private func client(_ p: UnsafeMutableRawPointer?) -> HTTP2TestClient {
    Unmanaged<HTTP2TestClient>.fromOpaque(p!).takeUnretainedValue()
}

private func clientOnHeader(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ nl: Int,
                            _ value: UnsafePointer<UInt8>?, _ vl: Int, _ flags: UInt8, _ ud: UnsafeMutableRawPointer?) -> Int32 {
    let c = client(ud)
    let id = frame!.pointee.hd.stream_id
    let n = String(decoding: UnsafeBufferPointer(start: name, count: nl), as: UTF8.self)
    let v = String(decoding: UnsafeBufferPointer(start: value, count: vl), as: UTF8.self)
    if n == ":status" {
        c.responses[id, default: .init()].status = Int(v)
        c.responses[id, default: .init()].statuses.append(Int(v) ?? -1)
    } else { c.responses[id, default: .init()].headers.append((n, v)) }
    return 0
}

private func clientOnData(_ s: OpaquePointer?, _ flags: UInt8, _ id: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int,
                          _ ud: UnsafeMutableRawPointer?) -> Int32 {
    client(ud).responses[id, default: .init()].body.append(contentsOf: UnsafeBufferPointer(start: data, count: len))
    return 0
}

private func clientOnFrame(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ ud: UnsafeMutableRawPointer?) -> Int32 {
    let c = client(ud)
    if frame!.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
        c.goawayReceived = true
        c.goawayErrorCode = frame!.pointee.goaway.error_code
        c.goawayLastStreamID = frame!.pointee.goaway.last_stream_id
    }
    return 0
}

private func clientOnClose(_ s: OpaquePointer?, _ id: Int32, _ code: UInt32, _ ud: UnsafeMutableRawPointer?) -> Int32 {
    let c = client(ud)
    c.responses[id, default: .init()].closed = true
    c.responses[id, default: .init()].closeCode = code
    c.uploads[id] = nil
    return 0
}

private func clientReadBody(_ s: OpaquePointer?, _ id: Int32, _ buf: UnsafeMutablePointer<UInt8>?, _ length: Int,
                            _ flags: UnsafeMutablePointer<UInt32>?, _ src: UnsafeMutablePointer<nghttp2_data_source>?,
                            _ ud: UnsafeMutableRawPointer?) -> Int {
    let c = client(ud)
    guard var up = c.uploads[id] else {
        flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        return 0
    }
    let n = min(length, up.bytes.count - up.offset)
    up.bytes.withUnsafeBufferPointer { buf!.update(from: $0.baseAddress! + up.offset, count: n) }
    up.offset += n
    if up.offset == up.bytes.count { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
    c.uploads[id] = up
    return n
}

// MARK: Harness

/// A connection stand-in with a real serial queue; counts `outputAvailable` calls.
final class H2TestContext: ConnectionContext, @unchecked Sendable {
    // Only touched on `queue` (the engine calls it there), like a real connection.
    let queue = DispatchQueue(label: "test.h2.connection")
    var outputAvailableCalls = 0
    let remoteAddress = "127.0.0.1:40000"
    let listener = "test-h2"
    func outputAvailable() { outputAvailableCalls += 1 }
}

/// How client bytes are cut before they reach the engine.
enum H2Split: Sendable, CustomStringConvertible {
    case whole, byteByByte, random(seed: UInt64)
    var description: String {
        switch self { case .whole: "whole"; case .byteByByte: "byte-by-byte"; case .random(let s): "random(\(s))" }
    }
}

/// Engine + client wired through byte buffers; every engine call runs on the context's queue.
final class H2Harness: @unchecked Sendable {
    // Engine and client are only touched inside `context.queue.sync` (see `step`).
    let context = H2TestContext()
    let client: HTTP2TestClient
    var engine: HTTP2ServerEngine!
    var split: H2Split
    var rng: SplitMix64
    private(set) var lastDisposition: EngineDisposition = .open
    /// Raw bytes the engine produced, for tests that look at frames.
    private(set) var serverBytes: [UInt8] = []

    init(handler: any HTTPHandler, configuration: HTTP2Configuration = HTTP2Configuration(), split: H2Split = .whole,
         client: HTTP2TestClient = HTTP2TestClient()) {
        self.client = client
        self.split = split
        if case .random(let seed) = split { rng = SplitMix64(seed: seed) } else { rng = SplitMix64(seed: 1) }
        engine = HTTP2ServerEngine(context: context, handler: handler, configuration: configuration)
    }

    /// For the upgrade path: the caller builds the engine.
    init(client: HTTP2TestClient, engineFactory: (H2TestContext) throws -> HTTP2ServerEngine) rethrows {
        self.client = client
        self.split = .whole
        rng = SplitMix64(seed: 1)
        // On the context's queue, like the connection does: the upgrade init dispatches stream 1,
        // whose answer arrives on that queue while the init is still feeding the session.
        let context = self.context
        engine = try context.queue.sync { try engineFactory(context) }
    }

    /// Feeds bytes to the engine cut as `split` says.
    func feed(_ bytes: [UInt8]) {
        var i = 0
        while i < bytes.count {
            let n: Int
            switch split {
            case .whole: n = bytes.count - i
            case .byteByByte: n = 1
            case .random: n = min(bytes.count - i, Int.random(in: 1...4096, using: &rng))
            }
            lastDisposition = bytes[i..<(i + n)].withUnsafeBytes { engine.receive($0) }
            i += n
        }
    }

    /// One round: client output to the engine, engine output to the client. Returns whether bytes moved.
    @discardableResult
    func step() -> Bool {
        context.queue.sync {
            let up = client.output()
            if !up.isEmpty { feed(up) }
            var down: [UInt8] = []
            while engine.hasPendingOutput { engine.drainOutput(into: &down, limit: 16_384) }
            if !down.isEmpty {
                serverBytes += down
                client.receive(down)
            }
            lastDisposition = engine.disposition
            return !up.isEmpty || !down.isEmpty
        }
    }

    /// Steps until `done` holds (checked on the queue) or `seconds` pass.
    @discardableResult
    func run(seconds: Double = 10, until done: (HTTP2TestClient, HTTP2ServerEngine) -> Bool) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            let moved = step()
            if context.queue.sync(execute: { done(client, engine) }) { return true }
            if !moved { usleep(500) }
        }
        return false
    }

    func onQueue<T>(_ body: (HTTP2TestClient, HTTP2ServerEngine) -> T) -> T {
        context.queue.sync { body(client, engine) }
    }

    var disposition: EngineDisposition { onQueue { _, e in e.disposition } }
}

/// Records what the handler saw, across threads.
final class H2Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func add(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
    var count: Int { items.withLock { $0.count } }
}

/// FNV-1a over every byte: the handler and the test compute it independently.
func h2Checksum(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
}

func h2RandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}
