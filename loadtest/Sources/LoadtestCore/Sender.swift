import Dispatch
import Logging
import Synchronization
import Transport
#if canImport(Glibc)
import Glibc
#endif

/// Settings of one `loadtest send` run.
public struct SendConfiguration: Sendable {
    public var target: ClientEndpoint
    public var format: WireFormat = .zipkinJSON
    public var http: ClientProtocol = .http1
    public var connections: Int = 4
    /// Concurrent streams per h2c connection (HTTP/1.1: one request per connection at a time).
    public var streams: Int = 10
    public var batch: Int = 500
    /// Spans/s offered (nil: as fast as the window of connections × streams allows).
    public var rate: Double? = nil
    public var durationSeconds: Double? = 10
    public var requests: Int? = nil
    public var shape = MeshShape()
    public var seed: UInt64 = 0
    /// Distinct payload templates to rotate through.
    public var templates: Int = 4
    /// Event loops for the connections.
    public var loops: Int = 1
    /// Open loop: requests allowed to wait for a connection before the generator blocks
    /// (further capped by `maxQueuedBytes`). Latency still counts from intended times.
    public var maxQueued: Int = 10_000
    public var maxQueuedBytes: Int = 512 << 20
    /// Content-Encoding of the bodies (`--compress`).
    public var compression: BodyCompression = .none
    public var progress = false

    public init(target: ClientEndpoint) { self.target = target }
}

/// The generator: renders requests from templates and sends them on the relay's own client,
/// open loop at a set rate or closed loop at `max`, recording latency from intended send times.
public final class LoadSender: Sendable {
    public let configuration: SendConfiguration
    let templates: [PayloadTemplate]
    let logger: Logger
    private let stopFlag = Atomic<Bool>(false)

    struct Stats {
        var histogram = LatencyHistogram()
        var statuses: [String: Int] = [:]
        var acceptedRequests = 0, acceptedSpans = 0, failed = 0, completed = 0
        var firstError: String?
        /// The current second: completions, accepted spans, failures, latencies.
        var interval = LatencyHistogram()
        var intervalSpans = 0, intervalFailed = 0
        var timeline: [TimelinePoint] = []
        /// Span-id counter ranges (`IDSource.spans` before, after) of every acknowledged request.
        var acked: [(from: UInt64, to: UInt64)] = []

        mutating func closeInterval(at seconds: Double, length: Double) {
            guard interval.count > 0 || length >= 0.999 else { return }
            if length < 0.5, !timeline.isEmpty {
                // A short tail (the end of the run) would show a meaningless rate: fold it into the last second.
                timeline[timeline.count - 1].requests += Int(interval.count)
                timeline[timeline.count - 1].errors += intervalFailed
                timeline[timeline.count - 1].maxMicros = max(timeline[timeline.count - 1].maxMicros, interval.max)
                interval = LatencyHistogram(); intervalSpans = 0; intervalFailed = 0
                return
            }
            let l = max(length, 0.001)
            timeline.append(TimelinePoint(t: (seconds * 10).rounded() / 10, spansPerSecond: (Double(intervalSpans) / l).rounded(),
                                          requests: Int(interval.count), errors: intervalFailed,
                                          p50Micros: interval.quantile(0.5), p99Micros: interval.quantile(0.99), maxMicros: interval.max))
            interval = LatencyHistogram(); intervalSpans = 0; intervalFailed = 0
        }
    }
    private let stats = Mutex(Stats())

    public init(configuration c: SendConfiguration, logger: Logger = Logger(label: "loadtest.send")) throws(LoadtestError) {
        configuration = c
        self.logger = logger
        var seed = c.seed
        if seed == 0 { seed = UInt64(truncatingIfNeeded: wallMicros()) ^ UInt64(getpid()) << 40 }
        var shaper = TraceShaper(shape: c.shape, seed: seed)
        var t: [PayloadTemplate] = []
        for i in 0..<max(1, c.templates) {
            t.append(try PayloadTemplate(format: c.format, shaper: &shaper, spans: c.batch, seed: seed &+ UInt64(i)))
        }
        templates = t
        idSeed = SplitMix64.mix(seed ^ 0xD1B5_4A32_D192_ED03)
    }
    let idSeed: UInt64

    /// Every span id the target acknowledged (2xx), regenerated from the id counter ranges of
    /// the acknowledged requests: what a scenario must find at its sinks.
    public func forEachAcknowledgedSpanID(_ body: (UInt64) -> Void) {
        let ranges = stats.withLock { $0.acked }
        for r in ranges {
            var n = r.from
            while n < r.to {
                n &+= 1
                if let id = IDSource.spanID(seed: idSeed, counter: n) { body(id) }
            }
        }
    }

    /// Ends the run early (SIGINT); in-flight requests still complete.
    public func stop() { stopFlag.store(true, ordering: .relaxed) }

    /// Runs to completion on the calling thread and returns the report.
    public func run() -> SendReport {
        let c = configuration
        let group = EventLoopGroup(loopCount: c.loops)
        var cc = HTTPClientConfiguration()
        cc.protocolVersion = c.http
        cc.poolSize = 1
        cc.maxConcurrentStreams = max(1, c.streams)
        cc.responseTimeout = 30
        var lg = logger
        lg.logLevel = .warning
        let clients = (0..<max(1, c.connections)).map { _ in HTTPClient(endpoint: c.target, configuration: cc, group: group, logger: lg) }
        defer { for cl in clients { cl.shutdown() } }

        let perConnection = c.http == .h2c ? max(1, c.streams) : 1
        let byBytes = c.maxQueuedBytes / max(1, templates[0].bytes.count)
        let window = c.rate == nil ? clients.count * perConnection : max(clients.count * perConnection, min(c.maxQueued, byBytes))
        let slots = DispatchSemaphore(value: window)
        let inflight = DispatchGroup()
        var headers: [(name: String, value: String)] = [("Content-Type", c.format.contentType)]
        if let e = c.compression.contentEncoding { headers.append(("Content-Encoding", e)) }
        let compressor = BodyCompressor(c.compression)
        let path = c.target.path == "/" || c.target.path.isEmpty ? c.format.path : c.target.path

        let cpu0 = processCPUSeconds()
        let start = monoNanos() + 1_000_000
        let wall0 = wallMicros() + 1000
        let schedule = c.rate.map {
            OpenLoopSchedule(spansPerSecond: $0, spansPerRequest: templates[0].spanCount, startNanos: start,
                             maxRequests: c.requests, durationNanos: c.durationSeconds.map { UInt64($0 * 1e9) })
        }
        let deadline = c.durationSeconds.map { start + UInt64($0 * 1e9) }

        // Once a second: a timeline point for the report and, on a TTY, the progress line.
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "loadtest.progress"))
        timer.schedule(deadline: .now() + 1, repeating: 1)
        let lastTick = Mutex(start)
        timer.setEventHandler { [self] in
            let now = monoNanos()
            let prev = lastTick.withLock { v in defer { v = now }; return v }
            let point = stats.withLock { s -> TimelinePoint? in
                s.closeInterval(at: Double(now &- start) / 1e9, length: Double(now &- prev) / 1e9)
                return s.timeline.last
            }
            if c.progress, let point {
                let done = stats.withLock { $0.completed }, failed = stats.withLock { $0.failed }
                writeStderr(String(format: "\r[%5.1fs] %10.0f spans/s  %d requests  %d errors  p99 %.2f ms   ",
                                   point.t, point.spansPerSecond, done, failed, Double(point.p99Micros) / 1000))
            }
        }
        timer.resume()

        var ids = IDSource(seed: idSeed)
        var scratch = PayloadTemplate.Scratch()
        var k = 0, sentSpans = 0, sentBytes = 0, rawBytes = 0
        var maxLag: UInt64 = 0
        while !stopFlag.load(ordering: .relaxed) {
            if let maxRequests = c.requests, k >= maxRequests { break }
            let intended: UInt64
            if let schedule {
                guard schedule.includes(k) else { break }
                intended = schedule.intendedNanos(k)
                sleepUntil(intended)
            } else {
                if let deadline, monoNanos() >= deadline { break }
                intended = 0
            }
            slots.wait()
            let template = templates[k % templates.count]
            let now = monoNanos()
            let sendAt = schedule == nil ? max(now, start) : intended
            if schedule != nil, now > intended { maxLag = max(maxLag, (now - intended) / 1000) }
            let counterBefore = ids.spans
            let raw = template.render(ids: &ids, baseMicros: wall0 + Int64((sendAt &- start) / 1000), scratch: &scratch)
            let idRange = (from: counterBefore, to: ids.spans)
            let body = compressor.compress(raw)
            if c.format == .datadogV04 || c.format == .datadogV05 {
                headers = [("Content-Type", c.format.contentType), ("X-Datadog-Trace-Count", String(template.traceCount))]
                if let e = c.compression.contentEncoding { headers.append(("Content-Encoding", e)) }
            }
            let spans = template.spanCount
            sentSpans += spans
            sentBytes += body.count
            rawBytes += raw.count
            inflight.enter()
            clients[k % clients.count].send(ClientRequest(method: c.format.method, path: path, headers: headers, body: body)) { [self] result in
                let lat = (monoNanos() &- sendAt) / 1000
                stats.withLock { s in
                    s.histogram.record(lat)
                    s.interval.record(lat)
                    s.completed += 1
                    switch result {
                    case .success(let r):
                        s.statuses[String(r.status), default: 0] += 1
                        if (200..<300).contains(r.status) {
                            s.acceptedRequests += 1; s.acceptedSpans += spans; s.intervalSpans += spans
                            s.acked.append(idRange)
                        } else {
                            s.failed += 1; s.intervalFailed += 1
                            if s.firstError == nil { s.firstError = "\(r.status): " + String(decoding: r.body.prefix(300), as: UTF8.self) }
                        }
                    case .failure(let e):
                        s.statuses["error:" + e.code.rawValue, default: 0] += 1
                        s.failed += 1; s.intervalFailed += 1
                        if s.firstError == nil { s.firstError = e.description }
                    }
                }
                slots.signal()
                inflight.leave()
            }
            k += 1
        }
        _ = inflight.wait(timeout: .now() + 35)
        let end = monoNanos()
        timer.cancel()
        let lastTickAt = lastTick.withLock { $0 }
        stats.withLock { $0.closeInterval(at: Double(end &- start) / 1e9, length: Double(end &- lastTickAt) / 1e9) }
        if c.progress { writeStderr("\n") }
        let cpu = processCPUSeconds() - cpu0
        let elapsed = Double(end &- start) / 1e9
        let s = stats.withLock { $0 }
        return SendReport(
            format: c.format.rawValue, http: c.http == .h2c ? "h2c" : "http/1.1", target: "\(c.target.description)",
            connections: clients.count, streams: perConnection, batchSpans: templates[0].spanCount, rateSpansPerSecond: c.rate,
            elapsedSeconds: (elapsed * 1000).rounded() / 1000, sentRequests: k, sentSpans: sentSpans, sentBytes: sentBytes,
            compression: c.compression == .none ? nil : c.compression.rawValue,
            uncompressedBytes: c.compression == .none ? nil : rawBytes,
            acceptedRequests: s.acceptedRequests, acceptedSpans: s.acceptedSpans, failedRequests: s.failed,
            statusCodes: s.statuses, spansPerSecond: (Double(sentSpans) / elapsed).rounded(),
            requestsPerSecond: (Double(k) / elapsed).rounded(), cpuSeconds: (cpu * 1000).rounded() / 1000,
            spansPerCPUSecond: cpu > 0 ? (Double(sentSpans) / cpu).rounded() : 0, maxSendLagMicros: maxLag,
            latencyMicros: LatencySummary(s.histogram), firstError: s.firstError, timeline: s.timeline)
    }
}
