/// Limits of one HTTP/2 server connection. Every value has a documented default; values out of
/// the range HTTP/2 allows are clamped when the engine starts.
public struct HTTP2Configuration: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS; the peer may not open more streams at once. Also the
    /// number of requests waiting for their handler's answer above which reading pauses.
    /// Default 256.
    public var maxConcurrentStreams: Int = 256
    /// SETTINGS_INITIAL_WINDOW_SIZE: how much body a stream may send before we acknowledge it.
    /// Default 1 MiB, so a typical trace batch arrives without a round trip for WINDOW_UPDATE.
    public var initialStreamWindow: Int = 1 << 20
    /// The connection-level receive window, raised with WINDOW_UPDATE at start (HTTP/2 starts
    /// every connection at 64 KiB). Default 16 MiB.
    public var connectionWindow: Int = 16 << 20
    /// Largest request body; larger bodies get 413 and the stream is reset. Default 25 MiB.
    public var maxBodyBytes: Int = 25 << 20
    /// Request body bytes one connection may hold for streams whose body is still arriving
    /// (the peer can open many streams and send part of each). A stream that would pass it
    /// gets 503 with `Retry-After` and is reset. Default 64 MiB.
    public var maxBufferedBodyBytes: Int = 64 << 20
    /// SETTINGS_MAX_HEADER_LIST_SIZE (names + values + 32 bytes per field); larger header
    /// blocks get 431. Default 64 KiB.
    public var maxHeaderListBytes: Int = 64 << 10
    /// SETTINGS_MAX_FRAME_SIZE, the largest frame the peer may send. Default 16 KiB (the
    /// protocol's minimum and default).
    public var maxFrameSize: Int = 16 << 10
    /// Unsent output above which the engine asks the connection to pause reading. Default 1 MiB.
    public var maxPendingOutputBytes: Int = 1 << 20

    public init() {}

    /// The values clamped to what the protocol allows.
    var clamped: HTTP2Configuration {
        var c = self
        let maxWindow = Int(Int32.max)
        c.maxConcurrentStreams = min(max(c.maxConcurrentStreams, 1), Int(UInt32.max))
        c.initialStreamWindow = min(max(c.initialStreamWindow, 1), maxWindow)
        c.connectionWindow = min(max(c.connectionWindow, 65_535), maxWindow)
        c.maxBodyBytes = max(c.maxBodyBytes, 0)
        c.maxBufferedBodyBytes = max(c.maxBufferedBodyBytes, 0)
        c.maxHeaderListBytes = min(max(c.maxHeaderListBytes, 1024), Int(UInt32.max))
        c.maxFrameSize = min(max(c.maxFrameSize, 16_384), 16_777_215)
        c.maxPendingOutputBytes = max(c.maxPendingOutputBytes, 16_384)
        return c
    }
}
