import Spans

/// The fast path of the Zipkin v2 JSON decoder.
///
/// Almost every span real clients send has one shape: known keys, string tag values,
/// lower-case hex ids of 16 or 32 digits, plain integer timestamps. `fastSpan` decodes
/// that shape with word-at-a-time scans (`JSONCursor`) and dispatches keys on their first
/// bytes. Whatever else it meets — an unusual form or invalid input — it either hands that
/// one value to the same checked `JSONReader`/`ZipkinIDs` method the general path uses, or
/// gives up (returns false); the caller then rolls the batch back and decodes the span
/// again with `decodeSpan`. Error messages and offsets therefore come from one place only.
///
/// Invariant (checked by the differential tests in ZipkinJSONV2FastPathTests): when
/// `fastSpan` succeeds, `decodeSpan` would have produced the same span, appended the same
/// tags, annotations and text, and stopped at the same offset. Each step accepts a subset
/// of what the general path accepts and produces the same values.
extension ZipkinJSONV2 {
    /// A span's tags, gathered on the stack and appended to the batch once per span
    /// (one copy instead of an `Array.append`, with its uniqueness check, per tag).
    struct TagBuffer {
        let base: UnsafeMutablePointer<Tag>
        let capacity: Int
        var count = 0

        init(_ buffer: UnsafeMutableBufferPointer<Tag>) {
            base = buffer.baseAddress!
            capacity = buffer.count
        }

        @inline(__always) mutating func append(_ t: Tag, _ batch: inout SpanBatch) {
            if count == capacity { flush(into: &batch) }
            (base + count).initialize(to: t)
            count &+= 1
        }

        @inline(never) mutating func flush(into batch: inout SpanBatch) {
            guard count > 0 else { return }
            batch.tags.append(contentsOf: UnsafeBufferPointer(start: base, count: count))
            count = 0
        }
    }

    /// Text at body offsets `range`, as `JSONReader.text` gives it for a string without
    /// escapes. The fast path only runs when every offset fits in UInt32 (checked once per
    /// body), so the conversions need no check.
    @inline(__always) static func slice(_ range: Range<Int>) -> Str {
        let n = range.upperBound &- range.lowerBound
        return Str(offset: n == 0 ? 0 : UInt32(truncatingIfNeeded: range.lowerBound), count: UInt32(truncatingIfNeeded: n))
    }

    // MARK: Member names

    /// The member names an object of the fast path knows.
    protocol MemberKey {
        /// The name whose first sixteen bytes (after the opening quote) are `w0`, `w1`, and
        /// its length including the closing quote; length 0 for any other name. Matching the
        /// closing quote too means the raw name equals the key exactly (an escaped name never
        /// matches, as with `JSONReader.key(_:is:)`).
        static func match(_ w0: UInt64, _ w1: UInt64) -> (Self, Int)
        static var other: Self { get }
    }

    enum SpanKey: MemberKey {
        case id, name, kind, tags, debug, shared, traceId, parentId, duration, timestamp
        case annotations, localEndpoint, remoteEndpoint, other

        @inline(__always) static func match(_ w0: UInt64, _ w1: UInt64) -> (SpanKey, Int) {
            switch UInt8(truncatingIfNeeded: w0) {
            case UInt8(ascii: "i"):
                if w0 & 0xFF_FFFF == 0x22_6469 { return (.id, 3) }                                  // id"
            case UInt8(ascii: "n"):
                if w0 & 0xFF_FFFF_FFFF == 0x22_656D_616E { return (.name, 5) }                      // name"
            case UInt8(ascii: "k"):
                if w0 & 0xFF_FFFF_FFFF == 0x22_646E_696B { return (.kind, 5) }                      // kind"
            case UInt8(ascii: "t"):
                if w0 & 0xFF_FFFF_FFFF == 0x22_7367_6174 { return (.tags, 5) }                      // tags"
                if w0 == 0x2264_4965_6361_7274 { return (.traceId, 8) }                             // traceId"
                if w0 == 0x6D61_7473_656D_6974, w1 & 0xFFFF == 0x2270 { return (.timestamp, 10) }   // timestam|p"
            case UInt8(ascii: "d"):
                if w0 & 0xFFFF_FFFF_FFFF == 0x2267_7562_6564 { return (.debug, 6) }                 // debug"
                if w0 == 0x6E6F_6974_6172_7564, w1 & 0xFF == 0x22 { return (.duration, 9) }         // duration|"
            case UInt8(ascii: "s"):
                if w0 & 0xFF_FFFF_FFFF_FFFF == 0x22_6465_7261_6873 { return (.shared, 7) }          // shared"
            case UInt8(ascii: "p"):
                if w0 == 0x6449_746E_6572_6170, w1 & 0xFF == 0x22 { return (.parentId, 9) }         // parentId|"
            case UInt8(ascii: "a"):
                if w0 == 0x6974_6174_6F6E_6E61, w1 & 0xFFFF_FFFF == 0x2273_6E6F { return (.annotations, 12) } // annotati|ons"
            case UInt8(ascii: "l"):
                if w0 == 0x646E_456C_6163_6F6C, w1 & 0xFFFF_FFFF_FFFF == 0x2274_6E69_6F70 {
                    return (.localEndpoint, 14)                                                      // localEnd|point"
                }
            case UInt8(ascii: "r"):
                if w0 == 0x6E45_6574_6F6D_6572, w1 & 0xFF_FFFF_FFFF_FFFF == 0x22_746E_696F_7064 {
                    return (.remoteEndpoint, 15)                                                     // remoteEn|dpoint"
                }
            default: break
            }
            return (.other, 0)
        }
    }

    enum EndpointKey: MemberKey {
        case serviceName, ipv4, ipv6, port, other

        @inline(__always) static func match(_ w0: UInt64, _ w1: UInt64) -> (EndpointKey, Int) {
            if w0 == 0x4E65_6369_7672_6573, w1 & 0xFFFF_FFFF == 0x2265_6D61 { return (.serviceName, 12) } // serviceN|ame"
            switch w0 & 0xFF_FFFF_FFFF {
            case 0x22_3476_7069: return (.ipv4, 5) // ipv4"
            case 0x22_3676_7069: return (.ipv6, 5) // ipv6"
            case 0x22_7472_6F70: return (.port, 5) // port"
            default: return (.other, 0)
            }
        }
    }

    enum AnnotationKey: MemberKey {
        case timestamp, value, other

        @inline(__always) static func match(_ w0: UInt64, _ w1: UInt64) -> (AnnotationKey, Int) {
            if w0 == 0x6D61_7473_656D_6974, w1 & 0xFFFF == 0x2270 { return (.timestamp, 10) } // timestam|p"
            if w0 & 0xFFFF_FFFF_FFFF == 0x2265_756C_6176 { return (.value, 6) }              // value"
            return (.other, 0)
        }
    }

    /// Reads the member name at `c.i` (its opening quote, checked by the caller) and the
    /// ':' after it, leaving `c` at the value. Names `match` does not know are read as
    /// strings. Nil when the syntax is not the simple one.
    @_transparent // as a specialised generic, @inline(__always) was left out of line
    static func memberName<K: MemberKey>(_ c: inout JSONCursor, _ r: inout JSONReader, _: K.Type) -> K? {
        let (key, length) = K.match(c.word(c.i &+ 1), c.word(c.i &+ 9))
        if length > 0 {
            c.i &+= 1 &+ length
        } else if c.plainString() == nil {
            guard string(&c, &r) != nil else { return nil }
        }
        guard c.consume(UInt8(ascii: ":")) else { return nil }
        return length > 0 ? key : K.other
    }

    /// After a member's value: consumes ',' and is true (at the next member's quote, which
    /// it checks), or consumes `close` and is false; nil on anything else.
    @inline(__always) static func nextMember(_ c: inout JSONCursor, close: UInt8) -> Bool? {
        var b = c.current
        if b <= 0x20 { c.skipWhitespace(); b = c.current }
        if b == UInt8(ascii: ",") {
            c.i &+= 1
            if c.current != UInt8(ascii: "\"") {
                c.skipWhitespace()
                guard c.current == UInt8(ascii: "\"") else { return nil }
            }
            return true
        }
        if b == close { c.i &+= 1; return false }
        return nil
    }

    // MARK: Values

    /// A string at `c.i` (its quote checked by the caller), through the checked reader for
    /// escapes; nil when invalid.
    @inline(never) static func string(_ c: inout JSONCursor, _ r: inout JSONReader) -> JSONString? {
        r.position = c.i
        guard let s = try? r.readString() else { return nil }
        c.i = r.position
        return s
    }

    /// The text of a string value at `c.i`; nil unless it is a valid string.
    @inline(__always) static func text(_ c: inout JSONCursor, _ r: inout JSONReader, _ batch: inout SpanBatch) -> Str? {
        guard c.current == UInt8(ascii: "\"") else { return nil }
        if let range = c.plainString() { return slice(range) }
        return escapedText(&c, &r, &batch)
    }

    @inline(never) static func escapedText(_ c: inout JSONCursor, _ r: inout JSONReader, _ batch: inout SpanBatch) -> Str? {
        guard let s = string(&c, &r) else { return nil }
        return r.text(s, in: &batch)
    }

    /// A span or parent id: 16 lower-case hex digits in place, else `ZipkinIDs.spanID`.
    @inline(__always)
    static func spanID(_ c: inout JSONCursor, _ r: inout JSONReader, field: StaticString) -> (UInt64, canonical: Bool)? {
        if c.current == UInt8(ascii: "\""), c.byte(c.i &+ 17) == UInt8(ascii: "\""), let v = c.lowerHex16(c.i &+ 1) {
            c.i &+= 18
            return (v, true)
        }
        return checkedSpanID(&c, &r, field: field)
    }

    @inline(never)
    static func checkedSpanID(_ c: inout JSONCursor, _ r: inout JSONReader, field: StaticString) -> (UInt64, canonical: Bool)? {
        r.position = c.i
        guard let result = try? ZipkinIDs.spanID(&r, field: field) else { return nil }
        c.i = r.position
        return result
    }

    /// A trace id: 16 or 32 lower-case hex digits in place, else `ZipkinIDs.traceID`.
    @inline(__always) static func traceID(_ c: inout JSONCursor, _ r: inout JSONReader) -> (TraceID, canonical: Bool)? {
        let p = c.i
        if c.current == UInt8(ascii: "\"") {
            if c.byte(p &+ 17) == UInt8(ascii: "\""), let lo = c.lowerHex16(p &+ 1), lo != 0 {
                c.i = p &+ 18
                return (TraceID(high: 0, low: lo), true)
            }
            if c.byte(p &+ 33) == UInt8(ascii: "\""), let hi = c.lowerHex16(p &+ 1), let lo = c.lowerHex16(p &+ 17), hi | lo != 0 {
                c.i = p &+ 34
                return (TraceID(high: hi, low: lo), hi != 0)
            }
        }
        return checkedTraceID(&c, &r)
    }

    @inline(never) static func checkedTraceID(_ c: inout JSONCursor, _ r: inout JSONReader) -> (TraceID, canonical: Bool)? {
        r.position = c.i
        guard let result = try? ZipkinIDs.traceID(&r) else { return nil }
        c.i = r.position
        return result
    }

    /// `micros` for a plain integer in place; other forms go through `micros` itself.
    @inline(__always)
    static func micros(_ c: inout JSONCursor, _ r: inout JSONReader, _ what: StaticString) -> (Int64, canonical: Bool)? {
        if let d = c.plainInteger() {
            // Beyond this, ×1000 overflows and `micros` refuses the value.
            guard d <= UInt64(Int64.max / 1000) else { return nil }
            return (Int64(d) &* 1000, true)
        }
        return checkedMicros(&c, &r, what)
    }

    @inline(never)
    static func checkedMicros(_ c: inout JSONCursor, _ r: inout JSONReader, _ what: StaticString) -> (Int64, canonical: Bool)? {
        r.position = c.i
        guard let result = try? micros(&r, "\(what)") else { return nil }
        c.i = r.position
        return result
    }

    /// Skips any value through the checked reader (unknown members).
    @inline(never) static func skipValue(_ c: inout JSONCursor, _ r: inout JSONReader) -> Bool {
        r.position = c.i
        guard (try? r.skipValue()) != nil else { return false }
        c.i = r.position
        return true
    }

    // MARK: Objects

    /// Decodes the span object at `r.position` (its '{') and appends it to the batch, or
    /// returns false when the general path must decide. Tags go through `tagBuffer`;
    /// annotations and unescaped text go straight to the batch: the caller rolls those
    /// back on false.
    static func fastSpan(_ r: inout JSONReader, _ batch: inout SpanBatch, _ tagBuffer: inout TagBuffer) -> Bool {
        var c = JSONCursor(r)
        let start = c.i
        let tags0 = batch.tags.count, ann0 = batch.annotations.count
        var span = Span(traceID: TraceID(low: 0), id: 0)
        var canonical = true
        var haveTrace = false, haveID = false
        c.i &+= 1
        c.skipWhitespace()
        // An empty object has no traceId: the general path reports it.
        guard c.current == UInt8(ascii: "\"") else { return false }
        while true {
            guard let key = memberName(&c, &r, SpanKey.self) else { return false }
            if c.current == UInt8(ascii: "n") {
                guard c.atNull() else { return false }
                c.i &+= 4
                canonical = false
            } else {
                switch key {
                case .id:
                    guard let (id, ok) = spanID(&c, &r, field: "id"), id != 0 else { return false }
                    span.id = id; haveID = true; canonical = canonical && ok
                case .traceId:
                    guard let (id, ok) = traceID(&c, &r) else { return false }
                    span.traceID = id; haveTrace = true; canonical = canonical && ok
                case .parentId:
                    guard let (id, ok) = spanID(&c, &r, field: "parentId") else { return false }
                    span.parentID = id; canonical = canonical && ok && id != 0
                case .name:
                    guard let t = text(&c, &r, &batch) else { return false }
                    span.name = t
                case .kind:
                    guard c.current == UInt8(ascii: "\"") else { return false }
                    let s: JSONString
                    if let range = c.plainString() {
                        s = JSONString(start: range.lowerBound, end: range.upperBound, hasEscapes: false)
                    } else {
                        guard let escaped = string(&c, &r) else { return false }
                        s = escaped
                    }
                    let (kind, exact) = ZipkinKinds.parse(r.bytes(s.range))
                    span.kind = kind; canonical = canonical && exact
                case .timestamp:
                    guard let (v, ok) = micros(&c, &r, "timestamp") else { return false }
                    span.startNanos = v; canonical = canonical && ok
                case .duration:
                    guard let (v, ok) = micros(&c, &r, "duration") else { return false }
                    span.durationNanos = v; canonical = canonical && ok
                case .debug, .shared:
                    let w = c.word(c.i)
                    if w & 0xFFFF_FFFF == 0x6575_7274 { // true
                        c.i &+= 4
                        if key == .debug { span.flags.insert(.debug); span.samplingPriority = ZipkinSampling.debugPriority } else { span.flags.insert(.shared) }
                    } else if w & 0xFF_FFFF_FFFF == 0x65_736C_6166 { // false
                        c.i &+= 5
                    } else {
                        return false
                    }
                case .tags:
                    guard tags(&c, &r, &batch, &tagBuffer, &span.flags, &canonical) else { return false }
                case .annotations:
                    guard annotations(&c, &r, &batch, &canonical) else { return false }
                case .localEndpoint:
                    guard let e = endpoint(&c, &r, &batch, &canonical) else { return false }
                    span.localEndpoint = e
                case .remoteEndpoint:
                    guard let e = endpoint(&c, &r, &batch, &canonical) else { return false }
                    span.remoteEndpoint = e
                case .other:
                    guard skipValue(&c, &r) else { return false }
                }
            }
            guard let more = nextMember(&c, close: UInt8(ascii: "}")) else { return false }
            if !more { break }
        }
        guard haveTrace, haveID else { return false }
        r.position = c.i
        tagBuffer.flush(into: &batch)
        span.tags = UInt32(tags0)..<UInt32(batch.tags.count)
        span.annotations = UInt32(ann0)..<UInt32(batch.annotations.count)
        if canonical { span.raw = batch.slice(start..<c.i) }
        batch.spans.append(span)
        return true
    }

    /// The `tags` object: string values (and nulls); numbers, booleans and anything
    /// invalid are left to the general path.
    static func tags(_ cursor: inout JSONCursor, _ r: inout JSONReader, _ batch: inout SpanBatch, _ tagBuffer: inout TagBuffer,
                     _ flags: inout Span.Flags, _ canonical: inout Bool) -> Bool {
        var c = cursor // a local, kept in registers
        guard c.consume(UInt8(ascii: "{")) else { return false }
        if c.current == UInt8(ascii: "}") { cursor.i = c.i &+ 1; return true }
        while true {
            guard c.current == UInt8(ascii: "\"") else { return false }
            // As in the general path, the key's text is taken before the value is read.
            let key: Str, isError: Bool
            if let range = c.plainString() {
                key = slice(range)
                isError = range.count == 5 && c.word(range.lowerBound) & 0xFF_FFFF_FFFF == 0x72_6F72_7265 // error
            } else {
                guard let s = string(&c, &r) else { return false }
                key = r.text(s, in: &batch)
                isError = false // an escaped key never equals "error" (raw bytes are compared)
            }
            guard c.consume(UInt8(ascii: ":")) else { return false }
            let b = c.current
            if b == UInt8(ascii: "\"") {
                let value: Str
                if let range = c.plainString() {
                    value = slice(range)
                } else {
                    guard let t = escapedText(&c, &r, &batch) else { return false }
                    value = t
                }
                if isError { flags.insert(.error) }
                tagBuffer.append(Tag(key: key, value: value), &batch)
            } else if b == UInt8(ascii: "n") && c.atNull() {
                c.i &+= 4
                canonical = false
            } else {
                return false
            }
            guard let more = nextMember(&c, close: UInt8(ascii: "}")) else { return false }
            if !more { cursor.i = c.i; return true }
        }
    }

    static func annotations(_ c: inout JSONCursor, _ r: inout JSONReader, _ batch: inout SpanBatch, _ canonical: inout Bool) -> Bool {
        guard c.consume(UInt8(ascii: "[")) else { return false }
        if c.current == UInt8(ascii: "]") { c.i &+= 1; return true }
        while true {
            if c.current == UInt8(ascii: "n") {
                guard c.atNull() else { return false }
                c.i &+= 4
                canonical = false
            } else {
                guard c.consume(UInt8(ascii: "{")) else { return false }
                var a = Annotation(timestampNanos: 0, value: .empty)
                if c.current == UInt8(ascii: "}") {
                    c.i &+= 1
                } else {
                    guard c.current == UInt8(ascii: "\"") else { return false }
                    while true {
                        guard let key = memberName(&c, &r, AnnotationKey.self) else { return false }
                        if c.current == UInt8(ascii: "n") {
                            guard c.atNull() else { return false }
                            c.i &+= 4
                            canonical = false
                        } else {
                            switch key {
                            case .timestamp:
                                guard let (v, ok) = micros(&c, &r, "annotation timestamp") else { return false }
                                a.timestampNanos = v; canonical = canonical && ok
                            case .value:
                                guard let t = text(&c, &r, &batch) else { return false }
                                a.value = t
                            case .other:
                                guard skipValue(&c, &r) else { return false }
                            }
                        }
                        guard let more = nextMember(&c, close: UInt8(ascii: "}")) else { return false }
                        if !more { break }
                    }
                }
                batch.annotations.append(a)
            }
            // Elements: ',' then any value (checked above), or ']'.
            var b = c.current
            if b <= 0x20 { c.skipWhitespace(); b = c.current }
            if b == UInt8(ascii: ",") {
                c.i &+= 1
                c.skipWhitespace()
            } else if b == UInt8(ascii: "]") {
                c.i &+= 1
                return true
            } else {
                return false
            }
        }
    }

    static func endpoint(_ c: inout JSONCursor, _ r: inout JSONReader, _ batch: inout SpanBatch, _ canonical: inout Bool) -> Endpoint? {
        guard c.consume(UInt8(ascii: "{")) else { return nil }
        var e = Endpoint()
        if c.current == UInt8(ascii: "}") { c.i &+= 1; return e }
        guard c.current == UInt8(ascii: "\"") else { return nil }
        while true {
            guard let key = memberName(&c, &r, EndpointKey.self) else { return nil }
            if c.current == UInt8(ascii: "n") {
                guard c.atNull() else { return nil }
                c.i &+= 4
                canonical = false
            } else {
                switch key {
                case .serviceName:
                    guard let t = text(&c, &r, &batch) else { return nil }
                    e.serviceName = t
                case .ipv4:
                    guard let t = text(&c, &r, &batch) else { return nil }
                    e.ipv4 = t
                case .ipv6:
                    guard let t = text(&c, &r, &batch) else { return nil }
                    e.ipv6 = t
                case .port:
                    // Zipkin treats 0, negative and out-of-range ports as absent.
                    let port: Int64?
                    if let d = c.plainInteger() {
                        port = Int64(d)
                    } else {
                        guard let n = checkedNumber(&c, &r) else { return nil }
                        port = n.integer
                    }
                    // An explicit 0 (Envoy's local endpoint) means "absent" to every Zipkin reader: still canonical.
                    if let p = port, p > 0, p <= 65535 { e.port = UInt16(p) } else if port != 0 { canonical = false }
                case .other:
                    guard skipValue(&c, &r) else { return nil }
                }
            }
            guard let more = nextMember(&c, close: UInt8(ascii: "}")) else { return nil }
            if !more { return e }
        }
    }

    @inline(never) static func checkedNumber(_ c: inout JSONCursor, _ r: inout JSONReader) -> JSONNumber? {
        r.position = c.i
        guard let n = try? r.readNumber() else { return nil }
        c.i = r.position
        return n
    }
}
