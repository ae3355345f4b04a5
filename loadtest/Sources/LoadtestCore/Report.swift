import Foundation

/// Latency percentiles in microseconds.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64
    public var mean: Double

    public init(_ h: LatencyHistogram) {
        count = h.count
        p50 = h.quantile(0.50); p90 = h.quantile(0.90); p99 = h.quantile(0.99); p999 = h.quantile(0.999)
        max = h.max; mean = (h.mean * 10).rounded() / 10
    }
    enum CodingKeys: String, CodingKey { case count, p50, p90, p99, p999 = "p99.9", max, mean }
}

/// One second of a run: accepted spans/s, completed requests, failures, latency of that second.
public struct TimelinePoint: Codable, Sendable, Equatable {
    /// Seconds since the start, at the end of the interval.
    public var t: Double
    public var spansPerSecond: Double
    public var requests: Int
    public var errors: Int
    public var p50Micros: UInt64
    public var p99Micros: UInt64
    public var maxMicros: UInt64
}

/// What `loadtest send` writes with `--report`.
public struct SendReport: Codable, Sendable, Equatable {
    public var format: String
    public var http: String
    public var target: String
    public var connections: Int
    public var streams: Int
    public var batchSpans: Int
    /// Offered spans/s (nil: `--rate max`).
    public var rateSpansPerSecond: Double?
    public var elapsedSeconds: Double
    public var sentRequests: Int
    public var sentSpans: Int
    /// Bytes on the wire (compressed when `compression` is set).
    public var sentBytes: Int
    /// Content-Encoding of the bodies (`--compress`; nil: none) and their size before it.
    public var compression: String? = nil
    public var uncompressedBytes: Int? = nil
    public var acceptedRequests: Int
    public var acceptedSpans: Int
    public var failedRequests: Int
    /// HTTP status → requests ("error:<code>" for requests without an answer).
    public var statusCodes: [String: Int]
    public var spansPerSecond: Double
    public var requestsPerSecond: Double
    /// Generator CPU (user + system) for the run and spans sent per CPU second.
    public var cpuSeconds: Double
    public var spansPerCPUSecond: Double
    /// Latest a request went out after its intended time (µs): large values mean the
    /// generator itself could not keep the rate.
    public var maxSendLagMicros: UInt64
    /// Latency from each request's intended send time (open loop) to its answer, µs.
    public var latencyMicros: LatencySummary
    /// The first failure's status and answer (or client error), to say why.
    public var firstError: String? = nil
    /// One point per second of the run (the last one may cover less).
    public var timeline: [TimelinePoint] = []

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// The human summary printed at the end.
    public func summary() -> String {
        func f(_ v: Double) -> String { String(format: "%.0f", v) }
        func ms(_ us: UInt64) -> String { String(format: "%.2f ms", Double(us) / 1000) }
        let codes = statusCodes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return """
        loadtest send: \(format) over \(http) to \(target), \(connections) connection(s) × \(streams) stream(s), \(batchSpans) spans/request
          offered   \(rateSpansPerSecond.map { f($0) + " spans/s" } ?? "max")
          sent      \(sentSpans) spans in \(sentRequests) requests (\(sentBytes) bytes\(compression.map { c in ", \(c) from \(uncompressedBytes ?? 0)" } ?? "")) in \(String(format: "%.2f", elapsedSeconds)) s
          accepted  \(acceptedSpans) spans (\(acceptedRequests) requests), failed requests \(failedRequests)
          status    \(codes)
          rate      \(f(spansPerSecond)) spans/s, \(f(requestsPerSecond)) req/s
          cpu       \(String(format: "%.2f", cpuSeconds)) s → \(f(spansPerCPUSecond)) spans per CPU second
          latency   p50 \(ms(latencyMicros.p50))  p90 \(ms(latencyMicros.p90))  p99 \(ms(latencyMicros.p99))  p99.9 \(ms(latencyMicros.p999))  max \(ms(latencyMicros.max))  (from intended send times)
          send lag  max \(ms(maxSendLagMicros))
        """ + (firstError.map { "\n  first error \($0)" } ?? "")
    }
}

/// Writes `text` to `path` (a report), creating or replacing it.
public func writeFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}
