import Codecs

/// Counts the spans of a body without decoding them, so a request over the span cap is refused
/// before its spans are built (a tiny span costs ≈ 12× its bytes once decoded).
///
/// Every counter is an upper bound of what the decoder would produce: it counts what a span
/// *could* start with at the right depth and stops at the first byte it cannot follow (the
/// decoder, stricter, fails there too). Counting stops as soon as the count passes `max`.
/// Only bodies larger than `max × minimumSpanBytes` are counted: smaller ones cannot hold more.
extension IngestEndpoints.Decoder {
    /// The fewest bytes one span takes in this format as the decoder accepts it (both ids are
    /// required everywhere; kept below the true minimum so the bound is safe).
    var minimumSpanBytes: Int {
        switch self {
        case .zipkinV2JSON, .zipkinV1JSON, .datadogV03JSON: 16   // {"traceId":"1","id":"1"} is 24
        case .zipkinV2Proto: 16                                   // two 8-byte ids with their tags
        case .datadogV03Msgpack, .datadogV04, .datadogV07: 16     // {trace_id: 1, span_id: 1} is 20
        case .datadogV05: 12                                      // a 12-element array
        }
    }

    /// How deep span objects sit in a JSON body (Zipkin: `[{…}]`, Datadog v0.3: `[[{…}]]`); nil for binary formats.
    var jsonSpanDepth: Int? {
        switch self {
        case .zipkinV2JSON, .zipkinV1JSON: 1
        case .datadogV03JSON: 2
        default: nil
        }
    }

    /// Spans in `body`, counted up to just past `max`.
    func countSpans(_ body: [UInt8], max: Int) -> Int {
        if let depth = jsonSpanDepth {
            var c = JSONSpanCounter(depth: depth)
            _ = body.withUnsafeBytes { c.feed($0, max: max) }
            return c.count
        }
        return body.withUnsafeBytes { raw in
            var r = MessagePackReader(raw)
            var n = 0
            switch self {
            case .zipkinV2Proto: return ProtoSpanCounter.count(raw, max: max)
            case .datadogV03Msgpack, .datadogV04: try? Self.countTraces(&r, &n, max: max)
            case .datadogV05: try? Self.countV05(&r, &n, max: max)
            case .datadogV07: try? Self.countV07(&r, &n, max: max)
            default: break
            }
            return n
        }
    }

    /// `[[span, …], …]`: the trace headers give the counts.
    private static func countTraces(_ r: inout MessagePackReader, _ n: inout Int, max: Int) throws(DecodeError) {
        if r.isAtEnd { return }
        let traces = try r.readArrayHeader()
        for _ in 0..<traces {
            let k = try r.readArrayHeader()
            n += k
            if n > max { return }
            for _ in 0..<k { try r.skip() }
        }
    }

    /// `[strings, [[span-array, …], …]]`.
    private static func countV05(_ r: inout MessagePackReader, _ n: inout Int, max: Int) throws(DecodeError) {
        guard try r.readArrayHeader() == 2 else { return }
        let strings = try r.readArrayHeader()
        for _ in 0..<strings { try r.skip() }
        try countTraces(&r, &n, max: max)
    }

    /// `{…, chunks: [{…, spans: [span, …]}, …]}`.
    private static func countV07(_ r: inout MessagePackReader, _ n: inout Int, max: Int) throws(DecodeError) {
        if r.isAtEnd { return }
        let fields = try r.readMapHeader()
        for _ in 0..<fields {
            guard key(&r, is: "chunks") else { try r.skip(); continue }
            let chunks = try r.readArrayHeader()
            for _ in 0..<chunks {
                let entries = try r.readMapHeader()
                for _ in 0..<entries {
                    guard key(&r, is: "spans") else { try r.skip(); continue }
                    let k = try r.readArrayHeader()
                    n += k
                    if n > max { return }
                    for _ in 0..<k { try r.skip() }
                }
            }
        }
    }

    /// Reads a map key and tells whether it is `name` (a key that is not a string, or one cut short, reads as no match).
    private static func key(_ r: inout MessagePackReader, is name: StaticString) -> Bool {
        (try? MsgpackV07Counter.key(&r, is: name)) ?? false
    }
}

/// Counts JSON objects that open at one nesting depth, fed in pieces (as a decompressor
/// produces them). Tracks only strings (with escapes) and brackets, so it is a few instructions
/// a byte and never fails: on malformed input it counts at most what a decoder could.
struct JSONSpanCounter {
    let depth: Int
    private(set) var count = 0
    private var level = 0
    private var inString = false
    private var escaped = false

    init(depth: Int) { self.depth = depth }

    /// Feeds the next bytes; false once the count passes `max` (counting stops there).
    mutating func feed(_ bytes: UnsafeRawBufferPointer, max: Int) -> Bool {
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"):
                if level == depth {
                    count += 1
                    if count > max { return false }
                }
                level += 1
            case UInt8(ascii: "["): level += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): level -= 1
            default: break
            }
        }
        return true
    }
}

/// Counts the `spans` entries (field 1, length-delimited) of a Zipkin proto3 `ListOfSpans`,
/// whole or from a growing prefix (resuming after the last complete field).
struct ProtoSpanCounter {
    private var position = 0
    private(set) var count = 0

    static func count(_ b: UnsafeRawBufferPointer, max: Int) -> Int {
        var c = ProtoSpanCounter()
        _ = c.feed(b, max: max)
        return c.count
    }

    /// False once the count passed `max`. Stops at a field cut by the end of `b` (or malformed).
    mutating func feed(_ b: UnsafeRawBufferPointer, max: Int) -> Bool {
        var at = position
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while at < b.count && shift < 64 {
                let x = b[at]
                at += 1
                v |= UInt64(x & 0x7f) << shift
                if x & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while at < b.count {
            guard let tag = varint() else { return true }
            switch tag & 7 {
            case 0: guard varint() != nil else { return true }
            case 1: guard b.count - at >= 8 else { return true }; at += 8
            case 5: guard b.count - at >= 4 else { return true }; at += 4
            case 2:
                guard let len = varint(), len <= UInt64(b.count - at) else { return true }
                at += Int(len)
                if tag >> 3 == 1 {
                    count += 1
                    if count > max { position = at; return false }
                }
            default: return true
            }
            position = at
        }
        return true
    }
}

/// Counts spans in a body while it is decompressed (JSON formats and Datadog's msgpack trace
/// arrays), fed the growing decompressed prefix; `over` once the count passed the cap.
final class StreamingSpanCounter {
    private var json: JSONSpanCounter?
    private var traces: MsgpackTraceCounter?
    private var proto: ProtoSpanCounter?
    private var payload: MsgpackV07Counter?
    private var fed = 0
    private(set) var over = false

    /// nil for formats without a streaming counter (none today).
    init?(_ decoder: IngestEndpoints.Decoder) {
        if let depth = decoder.jsonSpanDepth {
            json = JSONSpanCounter(depth: depth)
        } else if decoder == .datadogV04 || decoder == .datadogV03Msgpack {
            traces = MsgpackTraceCounter()
        } else if decoder == .datadogV05 {
            traces = MsgpackTraceCounter(stringTableFirst: true)
        } else if decoder == .zipkinV2Proto {
            proto = ProtoSpanCounter()
        } else if decoder == .datadogV07 {
            payload = MsgpackV07Counter()
        } else {
            return nil
        }
    }

    /// Feeds the decompressed prefix `all`; false once the count passed `max`.
    func feed(_ all: UnsafeRawBufferPointer, max: Int) -> Bool {
        if json != nil {
            let ok = json!.feed(UnsafeRawBufferPointer(rebasing: all[fed...]), max: max)
            fed = all.count
            over = !ok
        } else if traces != nil {
            over = !traces!.feed(all, max: max)
        } else if proto != nil {
            over = !proto!.feed(all, max: max)
        } else if payload != nil {
            over = !payload!.feed(all, max: max)
        }
        return !over
    }
}

/// `[[span, …], …]` (v0.5: `[strings, [[span, …], …]]`) counted from a growing prefix: resumes at
/// the last complete element, so an element cut by the end of the prefix is read again once more
/// bytes arrived.
struct MsgpackTraceCounter {
    /// v0.5: the traces follow a string table, both in a 2-element array.
    private var stringsLeft: Int
    private var position = 0
    private var tracesLeft = -1
    private var spansLeft = 0
    private(set) var count = 0
    private var done = false

    init(stringTableFirst: Bool = false) { stringsLeft = stringTableFirst ? -2 : 0 }

    mutating func feed(_ all: UnsafeRawBufferPointer, max: Int) -> Bool {
        if done { return true }
        var r = MessagePackReader(all)
        r.position = position
        do throws(DecodeError) {
            if stringsLeft == -2 {
                guard try r.readArrayHeader() == 2 else { done = true; return true }
                stringsLeft = -1
                position = r.position
            }
            if stringsLeft == -1 {
                stringsLeft = try r.readArrayHeader()
                position = r.position
            }
            while stringsLeft > 0 {
                try r.skip()
                stringsLeft -= 1
                position = r.position
            }
            if tracesLeft < 0 {
                tracesLeft = try r.readArrayHeader()
                position = r.position
            }
            while tracesLeft > 0 || spansLeft > 0 {
                if spansLeft == 0 {
                    let n = try r.readArrayHeader()
                    tracesLeft -= 1
                    spansLeft = n
                    count += n
                    position = r.position
                    if count > max { return false }
                    continue
                }
                try r.skip()
                spansLeft -= 1
                position = r.position
            }
            done = true
        } catch {
            // Cut by the end of the prefix (or malformed: the decoder will say where): wait for more.
        }
        return true
    }
}

/// Datadog v0.7's `{…, chunks: [{…, spans: [span, …]}, …]}` counted from a growing prefix, like
/// `MsgpackTraceCounter`: each step reads one whole element and commits its end, so an element
/// cut by the end of the prefix is read again once more bytes arrived. A `spans` array counts
/// with its header, before its spans arrive.
struct MsgpackV07Counter {
    private enum Phase { case start, payload, chunks, chunk, spans, done }
    private var phase = Phase.start
    private var position = 0
    private var fieldsLeft = 0, chunksLeft = 0, entriesLeft = 0, spansLeft = 0
    private(set) var count = 0

    mutating func feed(_ all: UnsafeRawBufferPointer, max: Int) -> Bool {
        var r = MessagePackReader(all)
        r.position = position
        do throws(DecodeError) {
            while true {
                switch phase {
                case .done:
                    return true
                case .start:
                    if r.isAtEnd { return true }
                    fieldsLeft = try r.readMapHeader()
                    phase = .payload
                case .payload:
                    if fieldsLeft == 0 { phase = .done; continue }
                    if try Self.key(&r, is: "chunks") {
                        chunksLeft = try r.readArrayHeader()
                        phase = .chunks
                    } else {
                        try r.skip()
                    }
                    fieldsLeft -= 1
                case .chunks:
                    if chunksLeft == 0 { phase = .payload; continue }
                    entriesLeft = try r.readMapHeader()
                    chunksLeft -= 1
                    phase = .chunk
                case .chunk:
                    if entriesLeft == 0 { phase = .chunks; continue }
                    if try Self.key(&r, is: "spans") {
                        spansLeft = try r.readArrayHeader()
                        count += spansLeft
                        phase = .spans
                    } else {
                        try r.skip()
                    }
                    entriesLeft -= 1
                    if count > max { position = r.position; return false }
                case .spans:
                    if spansLeft == 0 { phase = .chunk; continue }
                    try r.skip()
                    spansLeft -= 1
                }
                position = r.position
            }
        } catch {
            // Cut by the end of the prefix (or malformed: the decoder will say where): wait for more.
            // A step changes the state only after all its reads succeeded, so it restarts cleanly.
        }
        return true
    }

    /// Reads a map key and tells whether it is `name`; a key of another type is skipped (no match).
    /// Throws when the key is cut by the end of the prefix.
    static func key(_ r: inout MessagePackReader, is name: StaticString) throws(DecodeError) -> Bool {
        if try r.peekType() != .string { try r.skip(); return false }
        let range = try r.readStringRange()
        guard range.count == name.utf8CodeUnitCount else { return false }
        let p = name.utf8Start
        for (i, at) in range.enumerated() where r.bytes[at] != p[i] { return false }
        return true
    }
}
