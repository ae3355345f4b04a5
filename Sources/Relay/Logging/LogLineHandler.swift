import Basics
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the relay writes its log lines.
public enum LogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line, for log shippers: `time` (RFC 3339, UTC, milliseconds), `level`,
    /// `label`, `source`, `message`, then every metadata key as a field of its own.
    case json
    /// One line per event for a person at a terminal: time, level, label, message, `key=value` pairs.
    case text

    /// `json` unless `sink` is a terminal: a person reads a terminal, a program reads everything else.
    public static func automatic(for sink: LogSink) -> LogFormat { sink.isTerminal ? .text : .json }
}

/// The relay's log handler: each event becomes one line, written whole to a `LogSink`.
///
/// Promises: a value from the wire can neither end a line nor forge one. In JSON every string
/// is written by `jsonQuoted`, which escapes the control characters; the text format passes the
/// message and every metadata value through `logSafe` (call sites pass wire values raw, so
/// JSON is not escaped twice). Metadata merges the handler's,
/// the metadata provider's and the event's (the event wins); in JSON a metadata key that would
/// shadow a fixed field (`time`, `level`, …) is written as `metadata.<key>`.
public struct LogLineHandler: LogHandler {
    public let label: String
    public let format: LogFormat
    public let sink: LogSink
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(label: String, format: LogFormat, level: Logger.Level = .info, sink: LogSink = .standardError,
                metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.label = label
        self.format = format
        self.sink = sink
        self.logLevel = level
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        sink.write(line(for: event, timeNanos: Clock.wallNanos()))
    }

    /// The fields every JSON line starts with; metadata keys equal to one of them get a prefix.
    static let fixedFields: Set<String> = ["time", "level", "label", "source", "message"]

    /// The line `event` becomes (newline included), stamped `timeNanos` (wall clock, Unix epoch).
    public func line(for event: LogEvent, timeNanos: Int64) -> String {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let m = event.metadata { all.merge(m) { _, new in new } }
        if let error = event.error, all["error"] == nil { all["error"] = "\(error)" }
        let time = rfc3339Millis(timeNanos)
        let message = event.message.description
        switch format {
        case .json:
            var out = "{\"time\":\"\(time)\",\"level\":\"\(event.level.rawValue)\",\"label\":\(jsonQuoted(label))"
            out += ",\"source\":\(jsonQuoted(event.source)),\"message\":\(jsonQuoted(message))"
            for key in all.keys.sorted() {
                let name = Self.fixedFields.contains(key) ? "metadata." + key : key
                out += "," + jsonQuoted(name) + ":"
                Self.appendJSON(all[key]!, to: &out)
            }
            return out + "}\n"
        case .text:
            let level = event.level.rawValue
            var out = time + " " + level + String(repeating: " ", count: max(1, 9 - level.count))
            out += logSafe(label) + ": " + logSafe(message)
            for key in all.keys.sorted() {
                out += " " + logSafe(key) + "=" + Self.text(all[key]!)
            }
            return out + "\n"
        }
    }

    static func appendJSON(_ value: Logger.MetadataValue, to out: inout String) {
        switch value {
        case .string(let s): out += jsonQuoted(s)
        case .stringConvertible(let c): out += jsonQuoted(c.description)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                appendJSON(v, to: &out)
            }
            out += "]"
        case .dictionary(let d):
            out += "{"
            for (i, k) in d.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                out += jsonQuoted(k) + ":"
                appendJSON(d[k]!, to: &out)
            }
            out += "}"
        }
    }

    static func text(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let s): logSafe(s)
        case .stringConvertible(let c): logSafe(c.description)
        case .array(let a): "[" + a.map(text).joined(separator: ", ") + "]"
        case .dictionary(let d): "[" + d.keys.sorted().map { logSafe($0) + ": " + text(d[$0]!) }.joined(separator: ", ") + "]"
        }
    }
}

/// `2026-12-01T17:29:15.123Z`: RFC 3339 in UTC with milliseconds.
public func rfc3339Millis(_ nanos: Int64) -> String {
    // Floor division, so times before 1970 still get a millisecond in 0...999.
    let millis = nanos >= 0 ? nanos / 1_000_000 : (nanos - 999_999) / 1_000_000
    var seconds = time_t(millis >= 0 ? millis / 1000 : (millis - 999) / 1000)
    let ms = Int(millis - Int64(seconds) * 1000)
    var t = tm()
    gmtime_r(&seconds, &t)
    func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
    return "\(pad(Int(t.tm_year) + 1900, 4))-\(pad(Int(t.tm_mon) + 1, 2))-\(pad(Int(t.tm_mday), 2))"
        + "T\(pad(Int(t.tm_hour), 2)):\(pad(Int(t.tm_min), 2)):\(pad(Int(t.tm_sec), 2)).\(pad(ms, 3))Z"
}
