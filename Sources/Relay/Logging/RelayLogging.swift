import Logging

/// Process-wide logging setup of `tracerelay serve`.
public enum RelayLogging {
    /// Installs `LogLineHandler` as every logger's handler: `format` (nil: JSON unless the sink
    /// is a terminal), lines at `level` and above, written to `sink`. Call once, first thing.
    /// - Returns: the format chosen.
    @discardableResult
    public static func bootstrap(format: LogFormat?, level: Logger.Level, sink: LogSink = .standardError) -> LogFormat {
        let chosen = format ?? LogFormat.automatic(for: sink)
        LoggingSystem.bootstrap { label in LogLineHandler(label: label, format: chosen, level: level, sink: sink) }
        return chosen
    }
}

extension RateLimitedLogger {
    /// A refused ingest request: a warning per refusal code (`bad_payload`, `queue_full`, …),
    /// rate-limited. The message may quote the request's bytes: the log handler escapes it.
    /// Costs a lock and a table lookup per refusal; the line is built only when written.
    func refused(code: String, status: Int, message: @autoclosure () -> String, listener: String, format: String) {
        log(.warning, key: code, "ingest request refused",
            metadata: ["code": "\(code)", "http.status": "\(status)", "reason": "\(message())",
                       "http.listener": "\(listener)", "format": "\(format)"])
    }
}
