import Codecs
import Spans
#if canImport(Glibc)
import Glibc
#endif

/// A wire format the generator sends and the sink accepts.
public enum WireFormat: String, Sendable, CaseIterable {
    case zipkinJSON = "zipkin-json"
    case zipkinProto = "zipkin-proto"
    case datadogV04 = "datadog-v04"
    case datadogV05 = "datadog-v05"

    /// The request path a collector / agent serves it on.
    public var path: String {
        switch self {
        case .zipkinJSON, .zipkinProto: "/api/v2/spans"
        case .datadogV04: "/v0.4/traces"
        case .datadogV05: "/v0.5/traces"
        }
    }
    public var method: String {
        switch self {
        case .zipkinJSON, .zipkinProto: "POST"
        case .datadogV04, .datadogV05: "PUT"
        }
    }
    public var isDatadog: Bool { self == .datadogV04 || self == .datadogV05 }
    public var contentType: String {
        switch self {
        case .zipkinJSON: "application/json"
        case .zipkinProto: "application/x-protobuf"
        case .datadogV04, .datadogV05: "application/msgpack"
        }
    }

    func encode(_ batch: SpanBatch) throws(LoadtestError) -> [UInt8] {
        var out: [UInt8] = []
        switch self {
        case .zipkinJSON: ZipkinJSONV2.encode(batch, into: &out)
        case .zipkinProto: ZipkinProto3.encode(batch, into: &out)
        case .datadogV04: DatadogV04.encode(batch, into: &out)
        case .datadogV05:
            DatadogV04.encode(batch, into: &out)
            out = try DatadogV05Transcoder.transcode(v04: out)
        }
        return out
    }

    public func decode(_ body: [UInt8]) throws(DecodeError) -> SpanBatch {
        switch self {
        case .zipkinJSON: try ZipkinJSONV2.decode(body, metadata: BatchMetadata(format: .zipkinV2JSON))
        case .zipkinProto: try ZipkinProto3.decode(body, metadata: BatchMetadata(format: .zipkinV2Proto))
        case .datadogV04: try DatadogV04.decode(body, metadata: BatchMetadata(format: .datadogV04))
        case .datadogV05: try DatadogV05.decode(body, metadata: BatchMetadata(format: .datadogV05))
        }
    }
}

/// Draws ids for patched payloads. Span ids are `mix(seed + n)` for a counter `n` — a
/// bijection, so no two spans of a run share an id (zero is skipped); trace ids likewise from
/// their own counter, 128-bit traces get a non-zero high half.
public struct IDSource: Sendable {
    public let seed: UInt64
    public private(set) var spans: UInt64 = 0
    public private(set) var traces: UInt64 = 0

    public init(seed: UInt64) { self.seed = seed }

    @inline(__always) public mutating func nextSpanID() -> UInt64 {
        while true {
            spans &+= 1
            let v = SplitMix64.mix(seed &+ spans)
            if v != 0 { return v }
        }
    }
    /// The id `nextSpanID` returned when its counter reached `counter` (nil: a counter it
    /// skipped because the mix was zero).
    @inline(__always) public static func spanID(seed: UInt64, counter: UInt64) -> UInt64? {
        let v = SplitMix64.mix(seed &+ counter)
        return v == 0 ? nil : v
    }
    @inline(__always) public mutating func nextTrace(is128: Bool) -> (high: UInt64, low: UInt64) {
        traces &+= 1
        var low = SplitMix64.mix(seed ^ 0x5851_F42D_4C95_7F2D &+ traces)
        if low == 0 { low = 1 }
        let high = is128 ? (SplitMix64.mix(seed ^ 0x1405_7B7E_F767_814F &+ traces) | 1) : 0
        return (high, low)
    }
}

/// A pre-encoded request body whose ids, start times and checksums are patched in place for
/// every request, so generating a request costs one copy plus a few bytes per span.
///
/// Built by encoding spans whose dynamic fields hold random *sentinel* values with the relay's
/// own encoder, then finding every place a sentinel landed (hex text, big- or little-endian
/// 64-bit, 16 decimal digits; µs or ns) in one pass. Whatever layout the encoder chose, the
/// patch writes the same width, so the payload stays valid and its length never changes.
public struct PayloadTemplate: Sendable {
    public enum Field: UInt8, Sendable { case traceHigh, traceLow, spanID, start, sum }
    public enum Encoding: UInt8, Sendable { case hex, bigEndian, littleEndian, decimal16 }
    public struct Site: Sendable, Hashable {
        public var offset: Int32
        public var field: Field
        public var encoding: Encoding
        public var nanos: Bool
        public var index: Int32
    }

    public let format: WireFormat
    public let bytes: [UInt8]
    public let sites: [Site]
    public let spanCount: Int
    public let traceCount: Int
    let is128: [Bool]
    let traceOf: [Int32]
    let parentOf: [Int32]
    let startOffsetMicros: [Int64]
    let staticHash: [UInt64]
    /// Services of the spans, for accounting on the sending side.
    public let services: [String]

    public init(format: WireFormat, shaper: inout TraceShaper, spans count: Int, seed: UInt64) throws(LoadtestError) {
        self.format = format
        let (drafts, traces, is128) = shaper.draftSpans(count: max(1, count))
        var rng = SplitMix64(seed: seed ^ 0xA076_1D64_78BD_642F)
        var used = Set<UInt64>()
        func sentinel() -> UInt64 {
            while true { let v = rng.next() | (1 << 63); if used.insert(v).inserted { return v } }
        }
        func timeSentinel() -> UInt64 {
            while true {
                let v = 1_600_000_000_000_000 + rng.next() % 300_000_000_000_000
                if used.insert(v).inserted && used.insert(v * 1000).inserted { return v }
            }
        }
        let highS = (0..<traces).map { _ in sentinel() }, lowS = (0..<traces).map { _ in sentinel() }
        let idS = drafts.map { _ in sentinel() }, sumS = drafts.map { _ in sentinel() }
        let startS = drafts.map { _ in timeSentinel() }

        var b = SpanBatch()
        for d in drafts {
            var s = Span(traceID: TraceID(high: is128[d.trace] ? highS[d.trace] : 0, low: lowS[d.trace]), id: idS[d.index])
            s.parentID = d.parent >= 0 ? idS[d.parent] : 0
            s.kind = d.kind
            s.name = b.intern(d.name)
            s.startNanos = Int64(startS[d.index]) * 1000
            s.durationNanos = d.durationMicros * 1000
            let svc = shaper.shape.serviceName(d.service)
            s.localEndpoint = Endpoint(serviceName: b.intern(svc), ipv4: b.intern("10.\(d.service / 250).\(d.service % 250).7"))
            if let r = d.remote { s.remoteEndpoint = Endpoint(serviceName: b.intern(r.service), ipv4: b.intern(r.ip), port: r.port) }
            let lo = b.tags.count
            for (k, v) in d.tags { b.tags.append(Tag(key: b.intern(k), value: b.intern(v))) }
            b.tags.append(Tag(key: b.intern(SpanChecksum.tagKey), value: b.intern(hex16(sumS[d.index]))))
            s.tags = UInt32(lo)..<UInt32(b.tags.count)
            if d.tags.contains(where: { $0.0 == "error" }) { s.flags.insert(.error) }
            b.spans.append(s)
        }
        let encoded = try format.encode(b)

        // Where did each sentinel land?
        var lookup: [UInt64: (Field, Int32, Bool)] = [:]
        for t in 0..<traces { lookup[highS[t]] = (.traceHigh, Int32(t), false); lookup[lowS[t]] = (.traceLow, Int32(t), false) }
        for i in drafts.indices {
            lookup[idS[i]] = (.spanID, Int32(i), false)
            lookup[sumS[i]] = (.sum, Int32(i), false)
            lookup[startS[i]] = (.start, Int32(i), false)
            lookup[startS[i] * 1000] = (.start, Int32(i), true)
        }
        var sites: [Site] = []
        encoded.withUnsafeBytes { p in
            let n = p.count
            var i = 0
            while i < n {
                if i + 16 <= n, let v = Self.hexValue(p, i), let hit = lookup[v], hit.0 != .start {
                    sites.append(Site(offset: Int32(i), field: hit.0, encoding: .hex, nanos: false, index: hit.1)); i += 16; continue
                }
                if i + 16 <= n, (i == 0 || !Self.isDigit(p[i - 1])), (i + 16 == n || !Self.isDigit(p[i + 16])),
                   let v = Self.decimalValue(p, i), let hit = lookup[v], hit.0 == .start, !hit.2 {
                    sites.append(Site(offset: Int32(i), field: .start, encoding: .decimal16, nanos: false, index: hit.1)); i += 16; continue
                }
                if i + 8 <= n {
                    let raw = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    if let hit = lookup[UInt64(bigEndian: raw)], hit.0 != .sum {
                        sites.append(Site(offset: Int32(i), field: hit.0, encoding: .bigEndian, nanos: hit.2, index: hit.1)); i += 8; continue
                    }
                    if let hit = lookup[UInt64(littleEndian: raw)], hit.0 != .sum {
                        sites.append(Site(offset: Int32(i), field: hit.0, encoding: .littleEndian, nanos: hit.2, index: hit.1)); i += 8; continue
                    }
                }
                i += 1
            }
        }
        // Every span's id, start and checksum must be patchable, or the payload would repeat.
        var seen = [[Bool]](repeating: [Bool](repeating: false, count: 3), count: drafts.count)
        for s in sites {
            switch s.field {
            case .spanID: seen[Int(s.index)][0] = true
            case .start: seen[Int(s.index)][1] = true
            case .sum: seen[Int(s.index)][2] = true
            default: break
            }
        }
        if let bad = seen.firstIndex(where: { $0.contains(false) }) {
            throw LoadtestError("\(format.rawValue): span \(bad) of the template has no patch site for \(seen[bad]) (id, start, sum)")
        }

        // Static hashes from the relay's own decoder, so generator and sink agree by construction.
        let decoded: SpanBatch
        do { decoded = try format.decode(encoded) } catch { throw LoadtestError("\(format.rawValue): the template does not decode: \(error)") }
        guard decoded.count == drafts.count else {
            throw LoadtestError("\(format.rawValue): template decodes to \(decoded.count) spans, expected \(drafts.count)")
        }
        let indexOfID = Dictionary(uniqueKeysWithValues: idS.enumerated().map { ($1, $0) })
        var hashes = [UInt64](repeating: 0, count: drafts.count)
        for i in 0..<decoded.count {
            guard let t = indexOfID[decoded.spans[i].id] else { throw LoadtestError("template span id lost in decoding") }
            hashes[t] = SpanChecksum.staticHash(decoded, i)
        }

        bytes = encoded
        self.sites = sites
        spanCount = drafts.count
        traceCount = traces
        self.is128 = is128
        traceOf = drafts.map { Int32($0.trace) }
        parentOf = drafts.map { Int32($0.parent) }
        startOffsetMicros = drafts.map(\.startOffsetMicros)
        staticHash = hashes
        services = drafts.map { shaper.shape.serviceName($0.service) }
    }

    /// Scratch arrays reused across renders (no allocation per request).
    public struct Scratch {
        var high: [UInt64] = [], low: [UInt64] = [], id: [UInt64] = [], start: [Int64] = [], sum: [UInt64] = []
        public init() {}
    }

    /// A fresh body: the template with new ids (from `ids`), start times at `baseMicros` plus
    /// each span's offset in its trace, and matching checksums.
    public func render(ids: inout IDSource, baseMicros: Int64, scratch: inout Scratch) -> [UInt8] {
        var out = bytes
        render(into: &out, ids: &ids, baseMicros: baseMicros, scratch: &scratch)
        return out
    }

    public func render(into out: inout [UInt8], ids: inout IDSource, baseMicros: Int64, scratch: inout Scratch) {
        if scratch.id.count != spanCount {
            scratch.id = .init(repeating: 0, count: spanCount); scratch.start = .init(repeating: 0, count: spanCount)
            scratch.sum = .init(repeating: 0, count: spanCount)
        }
        if scratch.high.count != traceCount {
            scratch.high = .init(repeating: 0, count: traceCount); scratch.low = .init(repeating: 0, count: traceCount)
        }
        for t in 0..<traceCount {
            let v = ids.nextTrace(is128: is128[t]); scratch.high[t] = v.high; scratch.low[t] = v.low
        }
        for i in 0..<spanCount { scratch.id[i] = ids.nextSpanID() }
        for i in 0..<spanCount {
            let t = Int(traceOf[i]), p = Int(parentOf[i])
            let start = baseMicros + startOffsetMicros[i]
            scratch.start[i] = start
            scratch.sum[i] = SpanChecksum.combine(staticHash[i], traceHigh: scratch.high[t], traceLow: scratch.low[t],
                                                  id: scratch.id[i], parent: p >= 0 ? scratch.id[p] : 0, startMicros: start)
        }
        if out.count != bytes.count { out = bytes }
        out.withUnsafeMutableBytes { dst in
            for s in sites {
                let i = Int(s.index)
                let v: UInt64
                switch s.field {
                case .traceHigh: v = scratch.high[i]
                case .traceLow: v = scratch.low[i]
                case .spanID: v = scratch.id[i]
                case .sum: v = scratch.sum[i]
                case .start: v = UInt64(scratch.start[i]) &* (s.nanos ? 1000 : 1)
                }
                let o = Int(s.offset)
                switch s.encoding {
                case .hex: Self.writeHex(v, dst, o)
                case .bigEndian: dst.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt64.self)
                case .littleEndian: dst.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt64.self)
                case .decimal16: Self.writeDecimal16(v, dst, o)
                }
            }
        }
    }

    // MARK: byte helpers

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    @inline(__always) static func writeHex(_ v: UInt64, _ dst: UnsafeMutableRawBufferPointer, _ o: Int) {
        var x = v
        hexDigits.withUnsafeBufferPointer { d in
            var k = 15
            while k >= 0 { dst[o + k] = d[Int(x & 0xf)]; x >>= 4; k -= 1 }
        }
    }
    @inline(__always) static func writeDecimal16(_ v: UInt64, _ dst: UnsafeMutableRawBufferPointer, _ o: Int) {
        var x = v
        var k = 15
        while k >= 0 { dst[o + k] = UInt8(ascii: "0") &+ UInt8(x % 10); x /= 10; k -= 1 }
    }
    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    @inline(__always) static func hexValue(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt64? {
        var v: UInt64 = 0
        for k in 0..<16 {
            let c = p[i + k]
            let d: UInt8
            if c >= 48 && c <= 57 { d = c - 48 } else if c >= 97 && c <= 102 { d = c - 87 } else { return nil }
            v = v << 4 | UInt64(d)
        }
        return v
    }
    @inline(__always) static func decimalValue(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt64? {
        var v: UInt64 = 0
        for k in 0..<16 {
            let c = p[i + k]
            guard isDigit(c) else { return nil }
            v = v &* 10 &+ UInt64(c - 48)
        }
        return v
    }
}
