import Dispatch
import TLS

/// The connection side a protocol engine talks to. Implemented by the socket connection of
/// the event loop; a test can implement it with plain buffers. Every call happens on `queue`.
package protocol ConnectionContext: AnyObject {
    /// The connection's serial queue. Engines hop here before touching their state when a
    /// handler answers from another thread.
    var queue: DispatchQueue { get }
    /// The engine has new output for `drainOutput`; the connection arms its write source.
    func outputAvailable()
    /// "ip:port" of the peer.
    var remoteAddress: String { get }
    /// Listener name, copied into each request.
    var listener: String { get }
    /// The server-wide budget for buffered request bodies (shared by every connection and
    /// both engines). Reserve as a body buffer grows; release when the request is handed to
    /// the handler or the stream/connection ends.
    var bodyBudget: BodyBudget { get }
    /// The server's counters (answers it gave itself, h2 streams).
    var counters: ServerCounters { get }
    /// The verified certificate identity of the peer (TLS with client certificates), copied
    /// into every request's `HTTPRequest.peer`.
    var peerIdentity: TLSPeerIdentity? { get }
}

extension ConnectionContext {
    /// Contexts without a server (sans-IO tests) buffer without a global limit.
    package var bodyBudget: BodyBudget { BodyBudget.unlimited }
    package var counters: ServerCounters { ServerCounters.detached }
    package var peerIdentity: TLSPeerIdentity? { nil }
}

/// What the engine wants the connection to do after a call.
package enum EngineDisposition: Equatable, Sendable {
    /// Keep reading.
    case open
    /// Stop reading for now (unsent output or in-flight requests are over their limits);
    /// the engine calls `outputAvailable()` when it can take more.
    case pauseReading
    /// Send what is pending, then close.
    case closeAfterFlush
    /// Close at once (protocol error beyond recovery, output already queued is dropped).
    case closeNow
    /// HTTP/1.1 accepted `Upgrade: h2c`: the connection sends the pending output (the 101
    /// response), takes `ProtocolEngine.takeUpgrade()` and continues with an HTTP/2 engine.
    case upgradeToHTTP2
}

/// What an HTTP/1.1 engine hands over when a request asked for `Upgrade: h2c`.
package struct H2CUpgrade: Sendable {
    /// The request that carried the upgrade, complete with its body; it becomes stream 1.
    package var request: HTTPRequest
    /// The `HTTP2-Settings` header, base64url-decoded (a SETTINGS frame payload).
    package var settingsPayload: [UInt8]
    /// Bytes the peer already sent after the request (the HTTP/2 preface and frames).
    package var remainingBytes: [UInt8]

    package init(request: HTTPRequest, settingsPayload: [UInt8], remainingBytes: [UInt8]) {
        self.request = request
        self.settingsPayload = settingsPayload
        self.remainingBytes = remainingBytes
    }
}

/// A sans-IO protocol engine (HTTP/1.1 parser or HTTP/2 session): bytes in, requests to the
/// handler, bytes out. Owned by one connection and used only on its queue.
package protocol ProtocolEngine: AnyObject {
    /// Bytes read from the peer. The engine parses them, hands complete requests to its
    /// handler and may queue output.
    func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition
    /// Moves up to `limit` bytes of pending output to the end of `out`.
    func drainOutput(into out: inout [UInt8], limit: Int)
    /// Whether output is pending.
    var hasPendingOutput: Bool { get }
    /// The current wish (after output was drained or a response was queued).
    var disposition: EngineDisposition { get }
    /// Requests read but not yet fully answered.
    var inFlightRequests: Int { get }
    /// The peer half-closed (EOF). Answer what is in flight, then close.
    func peerClosed() -> EngineDisposition
    /// Graceful shutdown: stop taking new requests (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close`
    /// on the next response), finish the ones in flight.
    func beginShutdown() -> EngineDisposition
    /// A timer of the connection fired (idle / header-read / body-read): the engine answers
    /// with 408 where that makes sense and says whether to close.
    func timeout(_ kind: TimeoutKind) -> EngineDisposition
    /// The engine stopped parsing to let the loop's other connections run (fairness): the
    /// connection calls `beginTurn()` from a later block of its queue.
    var wantsNewTurn: Bool { get }
    /// A new turn of the event loop for this connection: parsing may go on.
    func beginTurn() -> EngineDisposition
    /// The peer stopped (`true`) or resumed (`false`) taking our output: the response bytes it
    /// has not received (the connection's and the kernel's send queue) passed
    /// `maxOutputBufferBytes`. An engine starts no new request while it holds.
    func outputBacklogChanged(_ backlogged: Bool) -> EngineDisposition
    /// What the connection's timer should watch (`nil`: the connection decides from
    /// `inFlightRequests` and its output).
    var readPhase: ReadPhase? { get }
    /// The connection measured a body arriving slower than `minBodyRate`: answer and close.
    func bodyTooSlow() -> EngineDisposition
    /// After `.upgradeToHTTP2`: what the HTTP/2 engine continues with. Once.
    func takeUpgrade() -> H2CUpgrade?
    /// Buffer capacity the engine holds, for tests of buffer reuse.
    var retainedBufferBytes: Int { get }
}

extension ProtocolEngine {
    package var wantsNewTurn: Bool { false }
    package func beginTurn() -> EngineDisposition { disposition }
    package func outputBacklogChanged(_ backlogged: Bool) -> EngineDisposition { disposition }
    package var readPhase: ReadPhase? { nil }
    package func bodyTooSlow() -> EngineDisposition { disposition }
    package func takeUpgrade() -> H2CUpgrade? { nil }
    package var retainedBufferBytes: Int { 0 }
}

package enum TimeoutKind: Sendable { case idle, headerRead, bodyRead }
