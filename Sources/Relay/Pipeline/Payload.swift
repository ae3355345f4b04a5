import Buffering

/// The wire format of a queued record (and of the request body several records make).
enum PayloadFormat: UInt8, Sendable {
    /// A Zipkin v2 JSON list: `[span,span]`.
    case zipkinJSON = 1
    /// Zipkin proto3 `ListOfSpans` (records concatenate: it is one repeated field).
    case zipkinProto = 2
    /// Datadog v0.4: a msgpack array of traces (each an array of span maps).
    case datadogV04 = 3
    /// Zipkin v2 JSON, one span a line (the `file` backend).
    case ndjson = 4

    var contentType: String {
        switch self {
        case .zipkinJSON: "application/json"
        case .zipkinProto: "application/x-protobuf"
        case .datadogV04: "application/msgpack"
        case .ndjson: "application/x-ndjson"
        }
    }
}

/// What a record carries besides its bytes, stored in `Record.metadata` so it survives a
/// spill and a restart: the format, the number of Datadog traces, and a group key — headers
/// that must be sent with these spans (`X-Tracerelay-Tags`, the tracer's `Datadog-Meta-*`).
/// Records join into one request only when format and group key are equal.
///
/// Layout: format (1 byte) · trace count (UInt32, little-endian) · group key (UTF-8, rest).
struct RecordMeta: Equatable, Sendable {
    var format: PayloadFormat
    var traceCount: Int
    /// Headers as `name: value` lines joined by "\n" ("" when none).
    var groupKey: String

    func encoded() -> [UInt8] {
        var out: [UInt8] = [format.rawValue]
        let n = UInt32(clamping: traceCount)
        for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt32(k)))) }
        out.append(contentsOf: groupKey.utf8)
        return out
    }

    init(format: PayloadFormat, traceCount: Int = 0, groupKey: String = "") {
        self.format = format
        self.traceCount = traceCount
        self.groupKey = groupKey
    }

    /// nil for metadata this version does not understand (a record is then dropped and counted).
    init?(_ bytes: ArraySlice<UInt8>) {
        guard bytes.count >= 5, let f = PayloadFormat(rawValue: bytes[bytes.startIndex]) else { return nil }
        format = f
        var n: UInt32 = 0
        for k in 0..<4 { n |= UInt32(bytes[bytes.startIndex + 1 + k]) << (8 * UInt32(k)) }
        traceCount = Int(n)
        groupKey = String(decoding: bytes.dropFirst(5), as: UTF8.self)
    }

    /// The group key as header fields. Split on UTF-8 bytes: a value may begin with a
    /// combining mark, which would fuse with the space before it into one Character.
    var headers: [(name: String, value: String)] {
        Array(groupKey.utf8).split(separator: UInt8(ascii: "\n")).compactMap { line in
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            return (String(decoding: line[..<colon], as: UTF8.self),
                    String(decoding: line[(colon + 1)...].drop(while: { $0 == 0x20 }), as: UTF8.self))
        }
    }

    static func groupKey(_ headers: [(name: String, value: String)]) -> String {
        headers.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }
}

/// Several records of one format and group joined into one request body.
struct Payload: Sendable {
    var format: PayloadFormat
    var body: [UInt8]
    var spanCount: Int
    /// Datadog traces in the body (`X-Datadog-Trace-Count`); 0 for other formats.
    var traceCount: Int
    var headers: [(name: String, value: String)]

    /// Joins records (all with the same `RecordMeta` format and group key) into one body.
    /// Zipkin JSON lists are merged into one list; proto3 and NDJSON records concatenate;
    /// Datadog trace arrays get one array header with the summed count.
    static func join(_ records: [Record], meta: RecordMeta) -> Payload {
        if records.count == 1 {
            // A record is a whole body of its format already; a record that is a request body
            // (the common case) becomes the payload without a copy.
            let r = records[0]
            return Payload(format: meta.format, body: Array(r.bytes), spanCount: r.spanCount,
                           traceCount: meta.format == .datadogV04 ? meta.traceCount : 0, headers: meta.headers)
        }
        var body: [UInt8] = []
        body.reserveCapacity(records.reduce(16) { $0 + $1.bytes.count })
        var spans = 0, traces = 0
        switch meta.format {
        case .zipkinJSON:
            body.append(UInt8(ascii: "["))
            var first = true
            for r in records {
                spans += r.spanCount
                let inner = jsonListInner(r.bytes)
                if inner.isEmpty { continue }
                if !first { body.append(UInt8(ascii: ",")) }
                first = false
                body.append(contentsOf: inner)
            }
            body.append(UInt8(ascii: "]"))
        case .zipkinProto, .ndjson:
            for r in records { spans += r.spanCount; body.append(contentsOf: r.bytes) }
        case .datadogV04:
            var parts: [ArraySlice<UInt8>] = []
            for r in records {
                spans += r.spanCount
                guard let (n, rest) = MsgpackArray.split(r.bytes) else { continue }
                traces += n
                parts.append(rest)
            }
            MsgpackArray.writeHeader(traces, into: &body)
            for p in parts { body.append(contentsOf: p) }
        }
        return Payload(format: meta.format, body: body, spanCount: spans, traceCount: traces, headers: meta.headers)
    }

    /// The bytes between a JSON list's brackets (the list as written by our encoders: no
    /// whitespace outside the spans).
    static func jsonListInner(_ b: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = b.startIndex, hi = b.endIndex
        while lo < hi, b[lo] != UInt8(ascii: "[") { lo += 1 }
        while hi > lo, b[hi - 1] != UInt8(ascii: "]") { hi -= 1 }
        guard hi - lo >= 2 else { return [] }
        return b[(lo + 1)..<(hi - 1)]
    }
}

/// The msgpack array header, read and written (fixarray, array 16, array 32).
enum MsgpackArray {
    /// The element count and the bytes after the header; nil when `b` does not start with an array.
    static func split(_ b: ArraySlice<UInt8>) -> (Int, ArraySlice<UInt8>)? {
        guard let first = b.first else { return nil }
        let s = b.startIndex
        switch first {
        case 0x90...0x9f: return (Int(first & 0x0f), b[(s + 1)...])
        case 0xdc:
            guard b.count >= 3 else { return nil }
            return (Int(b[s + 1]) << 8 | Int(b[s + 2]), b[(s + 3)...])
        case 0xdd:
            guard b.count >= 5 else { return nil }
            return (Int(b[s + 1]) << 24 | Int(b[s + 2]) << 16 | Int(b[s + 3]) << 8 | Int(b[s + 4]), b[(s + 5)...])
        default: return nil
        }
    }

    static func writeHeader(_ n: Int, into out: inout [UInt8]) {
        if n < 16 {
            out.append(0x90 | UInt8(n))
        } else if n <= 0xffff {
            out += [0xdc, UInt8(n >> 8), UInt8(n & 0xff)]
        } else {
            out += [0xdd, UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)]
        }
    }
}
