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
    /// Largest request body; a stream declaring more gets 413 when its HEADERS arrive, one
    /// whose DATA passes it gets 413 and is reset. A server uses the smaller of this and
    /// `HTTPServerConfiguration.maxBodyBytes`. Default 25 MiB.
    public var maxBodyBytes: Int = 25 << 20
    /// Request body bytes one connection may hold for streams whose body is still arriving
    /// (the peer can open many streams and send part of each). A stream that would pass it
    /// gets 503 with `Retry-After` and is reset. Counted as buffer capacity, which grows with
    /// the data (a declared `content-length` is never allocated up front). The server-wide
    /// `BodyBudget` applies on top (over it: REFUSED_STREAM). Default 64 MiB.
    public var maxBufferedBodyBytes: Int = 64 << 20
    /// SETTINGS_MAX_HEADER_LIST_SIZE (names + values + 32 bytes per field); a larger header
    /// block gets 431. Past twice this (or trailers past it) the connection ends with GOAWAY
    /// `ENHANCE_YOUR_CALM`: HPACK lets a small block name a 4 KB table entry thousands of times,
    /// and nghttp2 would decode the rest of a reset stream's block anyway. Default 64 KiB.
    public var maxHeaderListBytes: Int = 64 << 10
    /// Most header fields in one header block (request headers or trailers); past it the
    /// block is treated like one over `maxHeaderListBytes` (431, GOAWAY past twice this).
    /// Default 100, as `HTTPServerConfiguration.maxHeaderCount`.
    public var maxHeaderFields: Int = 100
    /// Header bytes (counted as for `maxHeaderListBytes`) one connection may make us decode
    /// per second, across all its header blocks. HPACK lets a few bytes on the wire name a
    /// 4 KB table entry, so this bounds the CPU a peer can cost; past it the connection ends
    /// with GOAWAY `ENHANCE_YOUR_CALM`. Default 32 MiB/s (a busy well-behaved client stays
    /// far below: ~30k requests/s × ~400 B).
    public var maxHeaderBytesPerSecond: Int = 32 << 20
    /// Least average rate, in bytes per second over each `bodyRateWindow`, at which a stream's
    /// body must arrive once its headers are in; a slower stream gets 408 and is reset. PING,
    /// SETTINGS or WINDOW_UPDATE frames do not count. 0 = off. A server uses its own
    /// `HTTPServerConfiguration.minBodyRate`. Default 1 KiB/s.
    public var minBodyRate: Int = 1024
    /// The window (seconds) over which `minBodyRate` is averaged. A server uses its own
    /// `HTTPServerConfiguration.bodyRateWindow`. Default 10 s.
    public var bodyRateWindow: Double = 10
    /// A connection with no request in progress and no HEADERS or DATA for this long is closed
    /// (GOAWAY) the next time the peer sends anything, so PINGs alone do not keep it open.
    /// A server uses its `HTTPServerConfiguration.idleTimeout`. Default 60 s.
    public var idleTimeout: Double = 60
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
        c.maxHeaderFields = max(c.maxHeaderFields, 16)
        c.maxHeaderBytesPerSecond = max(c.maxHeaderBytesPerSecond, 4 * c.maxHeaderListBytes)
        c.minBodyRate = max(c.minBodyRate, 0)
        c.bodyRateWindow = min(max(c.bodyRateWindow, 0.01), 86_400)
        c.idleTimeout = min(max(c.idleTimeout, 0.01), 86_400 * 365)
        c.maxFrameSize = min(max(c.maxFrameSize, 16_384), 16_777_215)
        c.maxPendingOutputBytes = max(c.maxPendingOutputBytes, 16_384)
        return c
    }
}

extension HTTPServerConfiguration {
    /// The HTTP/2 settings a connection of this server runs with: `http2`, with the
    /// server-wide body limit (the smaller one wins, so `--max-body-bytes` binds both
    /// protocols), body-rate and idle settings applied. `Connection` passes this, not `http2`.
    package var resolvedHTTP2: HTTP2Configuration {
        var c = http2
        c.maxBodyBytes = min(c.maxBodyBytes, maxBodyBytes)
        c.minBodyRate = minBodyRate
        c.bodyRateWindow = bodyRateWindow
        c.idleTimeout = idleTimeout
        return c
    }
}
