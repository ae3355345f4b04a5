/// A sans-IO client protocol engine (HTTP/1.1 or HTTP/2): requests in, bytes out; bytes in,
/// responses out. Owned by one `ClientConnection` and used only on its queue; tests drive it
/// with plain buffers. Completions are called on that queue, each exactly once.
package protocol ClientEngine: AnyObject {
    /// Takes a request (call only while `capacity > 0`). Its bytes become pending output; its
    /// completion runs when the whole response is read or the request fails.
    func enqueue(_ request: ClientRequest, authority: String,
                 completion: @escaping @Sendable (Result<ClientResponse, ClientError>) -> Void)
    /// Bytes read from the server.
    func receive(_ bytes: UnsafeRawBufferPointer) -> ClientEngineState
    /// Moves up to `limit` bytes of pending output to the end of `out`.
    func drainOutput(into out: inout [UInt8], limit: Int)
    var hasPendingOutput: Bool { get }
    /// How many more requests `enqueue` takes now: HTTP/1.1 1 when idle on a reusable
    /// connection, else 0; HTTP/2 the streams left under the server's concurrency limit.
    var capacity: Int { get }
    /// Requests enqueued and not yet completed.
    var inFlight: Int { get }
    /// The current wish (after `receive`, `drainOutput` or a completion).
    var state: ClientEngineState { get }
    /// The connection ended (EOF, reset, timeout, shutdown): fail every request in flight with
    /// `error` (a response that was complete by EOF — HTTP/1.1 without a length — succeeds).
    func connectionEnded(_ error: ClientError)
}

/// What a client engine wants from its connection.
package enum ClientEngineState: Equatable, Sendable {
    /// Keep the connection; more requests may follow.
    case open
    /// Send what is pending, then close (the server said `Connection: close`, GOAWAY, or the
    /// response had no length). Requests still in flight have been or will be failed.
    case closeAfterFlush
    /// A protocol error: close at once (in-flight requests are failed by `connectionEnded`).
    case closeNow
}
