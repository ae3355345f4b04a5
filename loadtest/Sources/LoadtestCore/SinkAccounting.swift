import Codecs
import Spans

/// What the sink counts, as JSON for `GET /stats` and the report.
public struct SinkStats: Codable, Sendable, Equatable {
    public var requests = 0
    public var bytes = 0
    /// Requests answered with an error on purpose (`--fail-ratio`) or refused as undecodable.
    public var failedOnPurpose = 0
    public var decodeErrors = 0
    public var spans = 0
    public var uniqueSpans = 0
    public var duplicates = 0
    /// Spans whose `loadtest.sum` disagrees with their content.
    public var altered = 0
    /// Spans without a `loadtest.sum` tag (not from the generator, or the tag was lost).
    public var unverified = 0
    /// Spans whose `region` tag differs from `--region` (residency violations).
    public var violations = 0
    /// Spans without a `region` tag while `--region` is set.
    public var noRegion = 0
    public var perService: [String: Int] = [:]
    public var perFormat: [String: Int] = [:]
    /// Arrival time minus span start, µs (filled in reports and `/stats`, not while counting):
    /// how late spans reach this backend. The generator stamps spans with their request's
    /// intended send time plus their offset in the trace (0–0.1 s), so the lag reads up to
    /// 0.1 s short (clamped at 0); a stalled path shows the stall.
    public var deliveryLagMicros: LatencySummary? = nil
    public init() {}
}

/// The sink's accounting: every decoded span is checked once, in `add`.
/// Pure (no sockets, no locks): the server holds it behind a mutex; tests feed it batches.
public struct SinkAccounting: Sendable {
    public let region: String?
    public private(set) var stats = SinkStats()
    /// Spans seen, by (trace id low, span id): the generator makes span ids unique per run.
    private var seen = SpanIDSet()
    public private(set) var deliveryLag = LatencyHistogram()

    struct SpanKey: Hashable, Sendable { var traceLow: UInt64; var id: UInt64 }

    public init(region: String?) { self.region = region }

    /// The per-span verdicts for one batch, computed without the lock.
    public struct Checked: Sendable {
        var keys: [SpanKey] = []
        var lags: [UInt64] = []
        var altered = 0, unverified = 0, violations = 0, noRegion = 0
        var services: [String: Int] = [:]
        var format: String
        var bytes: Int
    }

    /// Checks every span of `batch` (checksum, region); no shared state touched.
    public static func check(_ batch: SpanBatch, region: String?, bytes: Int) -> Checked {
        var c = Checked(format: batch.metadata.format.rawValue, bytes: bytes)
        c.keys.reserveCapacity(batch.count)
        c.lags.reserveCapacity(batch.count)
        let now = wallMicros()
        var names: [UInt64: String] = [:]
        for i in 0..<batch.count {
            let s = batch.spans[i]
            c.keys.append(SpanKey(traceLow: s.traceID.low, id: s.id))
            c.lags.append(UInt64(max(0, now - s.startNanos / 1000)))
            if let carried = SpanChecksum.carried(batch, i) {
                if carried != SpanChecksum.expected(batch, i) { c.altered += 1 }
            } else {
                c.unverified += 1
            }
            if let region {
                if let r = SpanChecksum.tag(batch, i, "region") {
                    let same = batch.withBytes(r) { b in region.utf8.elementsEqual(b) }
                    if !same { c.violations += 1 }
                } else {
                    c.noRegion += 1
                }
            }
            // Service names as Strings once per distinct name per batch, not once per span.
            let svc = s.localEndpoint.serviceName
            let key = batch.withBytes(svc) { SpanChecksum.hashBytes($0) }
            let name: String
            if let n = names[key] { name = n } else { name = batch.string(svc); names[key] = name }
            c.services[name, default: 0] += 1
        }
        return c
    }

    /// Folds a checked batch into the totals (duplicates are decided here, against all spans seen).
    public mutating func add(_ c: Checked) {
        stats.requests += 1
        stats.bytes += c.bytes
        stats.spans += c.keys.count
        for k in c.keys {
            if seen.insert(traceLow: k.traceLow, id: k.id) { stats.uniqueSpans += 1 } else { stats.duplicates += 1 }
        }
        for l in c.lags { deliveryLag.record(l) }
        stats.altered += c.altered
        stats.unverified += c.unverified
        stats.violations += c.violations
        stats.noRegion += c.noRegion
        for (k, v) in c.services { stats.perService[k, default: 0] += v }
        stats.perFormat[c.format, default: 0] += c.keys.count
    }

    public mutating func add(_ batch: SpanBatch, bytes: Int = 0) {
        add(Self.check(batch, region: region, bytes: bytes))
    }

    /// The stats with the delivery-lag percentiles.
    public var report: SinkStats {
        var s = stats
        if deliveryLag.count > 0 { s.deliveryLagMicros = LatencySummary(deliveryLag) }
        return s
    }

    /// Calls `body` with every distinct (trace id low, span id) received.
    public func forEachSpan(_ body: (_ traceLow: UInt64, _ id: UInt64) -> Void) { seen.forEach(body) }

    mutating func addRaw(bytes: Int) { stats.requests += 1; stats.bytes += bytes }
    public mutating func countFailedOnPurpose() { stats.requests += 1; stats.failedOnPurpose += 1 }
    public mutating func countDecodeError(bytes: Int) { stats.requests += 1; stats.bytes += bytes; stats.decodeErrors += 1 }
}
