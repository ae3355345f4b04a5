#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Spans

/// Zipkin's id rules, shared by the JSON decoders.
enum ZipkinIDs {
    /// Reads a trace id string: 1…32 hex digits of either case, left-padded; a 128-bit id
    /// with a zero high half becomes 64-bit. `canonical` is true when the text was already
    /// what the encoder writes (16 or 32 lower-case digits, non-zero high half for 32).
    static func traceID(_ r: inout JSONReader) throws(DecodeError) -> (TraceID, canonical: Bool) {
        let s = try r.readString()
        let b = r.bytes(s.range)
        guard !s.hasEscapes, s.count >= 1, s.count <= 32, let id = TraceID(hexBytes: b) else {
            throw r.error("traceId must be 1 to 32 hex digits", at: s.start - 1, code: .invalidValue)
        }
        guard !id.isZero else { throw r.error("traceId is all zeros", at: s.start - 1, code: .invalidValue) }
        let canonical = (s.count == 16 || (s.count == 32 && id.high != 0)) && isLower(b)
        return (id, canonical)
    }

    /// Reads a span or parent id string: 1…16 hex digits of either case, left-padded.
    static func spanID(_ r: inout JSONReader, field: StaticString) throws(DecodeError) -> (UInt64, canonical: Bool) {
        let s = try r.readString()
        let b = r.bytes(s.range)
        guard !s.hasEscapes, let id = parseHex64(b) else {
            throw r.error("\(field) must be 1 to 16 hex digits", at: s.start - 1, code: .invalidValue)
        }
        return (id, s.count == 16 && isLower(b))
    }

    @inline(__always) static func isLower(_ b: UnsafeRawBufferPointer) -> Bool {
        for c in b where c >= UInt8(ascii: "A") && c <= UInt8(ascii: "F") { return false }
        return true
    }
}

/// Zipkin span kind spellings.
enum ZipkinKinds {
    /// Parses a kind name case-insensitively; unknown names are `.unspecified` (Zipkin drops
    /// them). `exact` is true for the canonical upper-case spelling.
    static func parse(_ b: UnsafeRawBufferPointer) -> (SpanKind, exact: Bool) {
        guard b.count <= 16 else { return (.unspecified, false) }
        // Up to 16 bytes as two little-endian words, zero-padded, upper-cased a word at a time.
        var words: (UInt64, UInt64) = (0, 0)
        if b.count > 0 { withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: b) } }
        let (u0, lower0) = upper(UInt64(littleEndian: words.0))
        let (u1, lower1) = upper(UInt64(littleEndian: words.1))
        let exact = !(lower0 || lower1)
        guard u1 == 0 else { return (.unspecified, false) }
        switch u0 {
        case 0x0000_544E_4549_4C43: return (.client, exact) // CLIENT
        case 0x0000_5245_5652_4553: return (.server, exact) // SERVER
        case 0x5245_4355_444F_5250: return (.producer, exact) // PRODUCER
        case 0x5245_4D55_534E_4F43: return (.consumer, exact) // CONSUMER
        default: return (.unspecified, false)
        }
    }

    /// `w` with ASCII 'a'…'z' bytes upper-cased, and whether there were any.
    @inline(__always) private static func upper(_ w: UInt64) -> (UInt64, Bool) {
        let t = w & 0x7F7F_7F7F_7F7F_7F7F // no carries between bytes below
        let lower = (t &+ 0x1F1F_1F1F_1F1F_1F1F) & ~(t &+ 0x0505_0505_0505_0505) & ~w & 0x8080_8080_8080_8080 // ≥ 'a', ≤ 'z'
        return (w &- (lower &>> 2), lower != 0)
    }
}

/// Conversions between textual and binary IP addresses (proto3 carries bytes, the batch text).
enum ZipkinIP {
    /// Appends the text form of a 4- or 16-byte address to the batch; empty for other sizes.
    static func text(_ bytes: UnsafeRawBufferPointer, in batch: inout SpanBatch) -> Str {
        let family: Int32
        switch bytes.count {
        case 4:
            // Hot (every span of an Envoy proto batch): format on the stack, append once.
            var buf: (UInt64, UInt64) = (0, 0)
            return withUnsafeMutableBytes(of: &buf) { out in
                var o = 0
                for i in 0..<4 {
                    if i > 0 { out[o] = UInt8(ascii: "."); o += 1 }
                    let v = bytes[i]
                    if v >= 100 { out[o] = 48 + v / 100; o += 1 }
                    if v >= 10 { out[o] = 48 + (v / 10) % 10; o += 1 }
                    out[o] = 48 + v % 10; o += 1
                }
                return batch.internBytes(UnsafeRawBufferPointer(rebasing: out[0..<o]))
            }
        case 16: family = AF_INET6
        default: return .empty
        }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
            guard inet_ntop(family, bytes.baseAddress, buf.baseAddress, 64) != nil else { return .empty }
            let n = strlen(buf.baseAddress!)
            return batch.internBytes(UnsafeRawBufferPointer(start: buf.baseAddress, count: n))
        }
    }

    /// Parses an address text into `out` (16 bytes); returns 4 or 16 for the size written,
    /// 0 when the text is not an address of that family.
    static func parse(_ text: UnsafeRawBufferPointer, v6: Bool, into out: UnsafeMutableRawPointer) -> Int {
        guard text.count > 0, text.count < 64 else { return 0 }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
            UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: text.baseAddress!, byteCount: text.count)
            buf[text.count] = 0
            guard inet_pton(v6 ? AF_INET6 : AF_INET, buf.baseAddress, out) == 1 else { return 0 }
            return v6 ? 16 : 4
        }
    }
}

/// How Zipkin's `debug` flag meets Datadog's sampling priority (docs/protocol-fidelity.md).
///
/// OpenTelemetry's Zipkin exporters write `debug: true` on every sampled span, and a tracer
/// reports only sampled spans, so `debug` says "the tracer kept this trace": Datadog's
/// AUTO_KEEP (1), not USER_KEEP (2), which would override the agent's and the backend's
/// sampling for every trace. The other way, a Datadog USER_KEEP or higher (a person asked to
/// keep the trace) is Zipkin's `debug` (keep regardless of sampling); lower priorities have
/// no Zipkin spelling.
public enum ZipkinSampling {
    /// The sampling priority a Zipkin `debug: true` span gets.
    @inlinable public static var debugPriority: Int8 { 1 }
    /// Whether a span is written with `debug: true`.
    @inlinable public static func writesDebug(_ s: Span) -> Bool {
        s.flags.contains(.debug) || (s.samplingPriority ?? 0) >= 2
    }
}

/// Zipkin marks an error with an `error` tag (its value the message; any value counts). A span
/// from Datadog carries its error as a flag (`error: 1`) with the message in `error.msg`: written
/// to Zipkin, such a span gets an `error` tag — the message when there is one, else `"true"` —
/// so Zipkin backends see the failure. Spans that already have an `error` tag are written as
/// they are. Only error spans pay for the check.
enum ZipkinErrorTag {
    /// The `error` tag a span needs added: its message, or `"true"` without one.
    enum Value { case message(Str), flagOnly }

    /// What to add to `s`, or nil when nothing is needed (no allocation).
    @inline(__always)
    static func missing(_ s: Span, of batch: SpanBatch) -> Value? {
        guard s.flags.contains(.error) else { return nil }
        return added(s, of: batch)
    }

    @inline(never)
    static func added(_ s: Span, of batch: SpanBatch) -> Value? {
        if batch.tag(s, "error") != nil { return nil }
        if let m = batch.tag(s, "error.msg") ?? batch.tag(s, "error.message"), !m.isEmpty { return .message(m) }
        return .flagOnly
    }

    /// Calls `body` with the tag's value bytes.
    static func withValue<R>(_ v: Value, of batch: SpanBatch, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch v {
        case .message(let m): batch.withBytes(m, body)
        case .flagOnly: ("true" as StaticString).withUTF8Buffer { body(UnsafeRawBufferPointer($0)) }
        }
    }
}
