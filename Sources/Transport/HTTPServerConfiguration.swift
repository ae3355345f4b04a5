/// Limits and tuning of `HTTPServer`. Every field has a documented default; the defaults suit
/// a trace collector taking ~50 KB JSON bodies from many keep-alive clients.
public struct HTTPServerConfiguration: Sendable {
    /// Largest request head (request line + headers + the final blank line), and separately
    /// the largest chunked trailer section. Over it → 431. Default 64 KiB.
    public var maxHeaderBytes: Int = 64 * 1024
    /// Most header fields in one request head. Over it → 431. Default 100.
    public var maxHeaderCount: Int = 100
    /// Longest request line (method, target, version). Over it → 414. Default 8 KiB.
    public var maxRequestLineBytes: Int = 8 * 1024
    /// Largest request body (decoded, for chunked). Over it → 413, answered as soon as it is
    /// known (from `Content-Length`, or when the chunks pass it) without reading the rest.
    /// Default 25 MiB.
    public var maxBodyBytes: Int = 25 * 1024 * 1024
    /// A keep-alive connection with no request in progress is closed after this many seconds.
    /// Default 60 s.
    public var idleTimeout: Double = 60
    /// A request head must arrive completely within this many seconds of its first byte
    /// (slow-loris protection). Over it → 408 and close. Default 10 s.
    public var headerReadTimeout: Double = 10
    /// While a body is being read, the peer must send some of it at least this often
    /// (seconds between reads). Over it → 408 and close. Default 60 s.
    public var bodyReadTimeout: Double = 60
    /// Global budget for request bodies being received and buffered, shared by every
    /// connection of the server and both protocols (`BodyBudget`). A body that would pass
    /// it is refused: HTTP/1.1 answers 503 with `Retry-After` and closes, HTTP/2 resets the
    /// stream with REFUSED_STREAM. Bytes count from the moment they are buffered until the
    /// request reaches its handler. Default: a quarter of physical memory, at most 1 GiB.
    public var maxBufferedBodyBytes: Int = BodyBudget.defaultLimit
    /// When the body budget is full and a new reservation fails, the buffered body that has
    /// made no progress for the longest time is aborted (HTTP/1.1: 408 and close) if that time
    /// is at least this many seconds, so stalled bodies cannot hold the budget against
    /// clients that send. Default 5 s.
    public var stalledBodyTimeout: Double = 5
    /// Least average rate, in bytes per second over each `bodyRateWindow`, at which a body
    /// being received must progress (like nginx's `client_body_timeout`, but a trickle of a
    /// few bytes, or HTTP/2 PINGs, do not reset it). Below it → 408 and close. 0 = off.
    /// Default 1 KiB/s.
    public var minBodyRate: Int = 1024
    /// The window (seconds) over which `minBodyRate` is averaged. Default 10 s.
    public var bodyRateWindow: Double = 10
    /// Backpressure: a connection whose unsent output exceeds this many bytes stops being read
    /// until the peer takes it. Default 1 MiB.
    public var maxOutputBufferBytes: Int = 1024 * 1024
    /// Most HTTP/1.1 requests read ahead of their responses on one connection (pipelining
    /// or slow handlers); beyond it the connection stops reading. Default 32.
    public var maxPipelinedRequests: Int = 32
    /// Bytes read from one connection per readiness event before yielding to others (fairness).
    /// Default 512 KiB.
    public var readBudget: Int = 512 * 1024
    /// HTTP/1.1 requests started on one connection per turn of its event loop before it yields to
    /// the loop's other connections (fairness: 512 KiB of tiny pipelined requests is thousands of
    /// requests, seconds of a loop's time). Default 2: in the hostile mix's "noread" probe (200
    /// connections pipelining POSTs) a well-behaved client's p99 was 140 ms with 64 and 16 ms with
    /// 8; with 50 connections pipelining without reading (Tests/e2e/test_hostile_h1.py, debug
    /// build) it kept 0.54 of its rate with 8 and 0.91 with 2.
    public var maxRequestsPerTurn: Int = 2
    /// Connections accepted per listener readiness event before yielding. Default 64.
    public var acceptBudget: Int = 64
    /// Pause before accepting again after running out of file descriptors (EMFILE/ENFILE),
    /// seconds. Default 0.1 s.
    public var acceptBackoff: Double = 0.1
    /// `listen(2)` backlog. Default 1024.
    public var backlog: Int32 = 1024
    /// Connections open at once, over every listener (default 10,000). One more is accepted and
    /// closed at once (counted), so a flood of idle sockets cannot take the descriptors and the
    /// memory the others need. Keep it below the process's descriptor limit (`ulimit -n`) minus
    /// what spill files and outbound connections use.
    public var maxConnections: Int = 10_000
    /// Number of event loops (serial queues); `nil` → number of cores. Default nil.
    public var loops: Int? = nil
    /// After a response with `Connection: close` (or an error), how long to keep reading and
    /// discarding what the peer still sends before closing, so it sees our answer instead of
    /// a reset. Seconds. Default 2 s.
    public var lingerTimeout: Double = 2
    /// …and at most this many bytes (default 1 MiB): a peer that keeps sending after our last
    /// answer is cut off once it has made us read that much, not only after `lingerTimeout`.
    public var lingerMaxBytes: Int = 1 << 20
    /// Give each connection its own serial queue (targeting its loop's queue) rather than
    /// running it on the loop's queue directly. Either way a connection's work is serialized
    /// on one loop; the dedicated queue costs one more queue hand-off per event (≈ 5–7 %
    /// CPU per request in http-vs-nginx.sh) but names the connection in debuggers.
    /// Default true.
    public var dedicatedConnectionQueues: Bool = true
    /// How connections learn that their socket is ready. Default `.epollPerLoop`: it passes
    /// the same socket and end-to-end tests as `.dispatchSources` and, in
    /// Benchmarks/http-vs-nginx.sh (2 cores), serves ≈ 1.7× the HTTP/1.1 requests per
    /// server CPU-second (47k vs 28k) and ≈ 1.03× the h2c ones. See `HTTPEventMode`.
    public var eventMode: HTTPEventMode = .epollPerLoop
    /// Accept HTTP/2 over cleartext: the prior-knowledge preface and `Upgrade: h2c`.
    /// Default true.
    public var enableH2C: Bool = true
    /// Honour `Upgrade: h2c` on HTTP/1.1 requests (after validating it: RFC 9113 §3.2).
    /// When false the header is ignored and the request served as HTTP/1.1; the
    /// prior-knowledge preface still works if `enableH2C` is on. A listener can turn it off
    /// for itself with `ListenAddress.allowH2CUpgrade` (e.g. behind a proxy that filters
    /// paths, where an upgrade would let later streams bypass it). Default true.
    public var allowH2CUpgrade: Bool = true
    /// HTTP/2 settings (windows, concurrent streams…), used when a connection speaks h2c.
    public var http2: HTTP2Configuration = HTTP2Configuration()

    public init() {}
}

/// How a server's connections wait for socket readiness. Both keep every connection's work
/// serialized on one event loop's queue and drive the same protocol engines.
public enum HTTPEventMode: String, Sendable, CaseIterable {
    /// One read DispatchSource per connection (plus a write source once its send buffer
    /// fills) and a timer per connection. libdispatch re-arms the fd through its manager
    /// thread after every event (eventfd wake-up, `epoll_ctl`, `FIONREAD`), once per request
    /// on a keep-alive connection.
    case dispatchSources
    /// Each event loop owns an epoll instance; its connections register their fd once
    /// (edge-triggered in, out and peer half-close) and never re-arm it. One DispatchSource
    /// per loop watches the epoll fd; its handler collects ready connections with
    /// `epoll_wait(timeout 0)` in bounded batches and runs them directly on the loop queue,
    /// so a burst of requests costs one Dispatch wake-up. One timer per loop drives the
    /// connections' timeouts. `dedicatedConnectionQueues` does not apply (connections run on
    /// the loop queue).
    case epollPerLoop
}
