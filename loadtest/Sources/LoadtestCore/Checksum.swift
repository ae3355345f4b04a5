import Spans

/// SplitMix64: a tiny deterministic generator (templates are reproducible from a seed) and,
/// through `mix`, a bijection on 64-bit values (so distinct counters give distinct ids).
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inline(__always) public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// The SplitMix64 finaliser: bijective, so it never maps two inputs to one output.
    @inline(__always) public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    public mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}

/// The per-span content checksum carried in the `loadtest.sum` tag.
///
/// It has two parts so the generator can patch payloads in place: a *static* hash of what the
/// generator never changes, computed once per template span from the relay's own decoder, and
/// the *dynamic* fields patched per request (trace id, span id, parent id, start µs), folded in
/// with `combine`. The sink recomputes both from the span it decoded.
///
/// The static part covers what must survive any path through the relay, including a format
/// conversion: service, name, kind, duration (µs), the error state (the flag — Zipkin's
/// `error` tag and Datadog's `error: 1` both set it), and the value of every tag the generator
/// sets (`coveredTagKeys`, order-independent). A covered tag missing, renamed or changed makes
/// the checksum disagree. Tags outside that list are not covered: format conversions add them
/// legitimately (Zipkin → Datadog writes `peer.service` and `network.destination.ip` from the
/// remote endpoint, `error.msg` from the error tag's text, `span.kind`, `_dd.p.tid`; Datadog →
/// Zipkin writes metrics such as `network.destination.port` as tags) — see
/// `Sources/Codecs/Datadog/DatadogMapping.swift`. Before this list the checksum covered every
/// tag, and a Zipkin → Datadog relay showed every CLIENT span (the ones with a remote
/// endpoint) and every error span as "altered".
public enum SpanChecksum {
    public static let tagKey = "loadtest.sum"

    /// A fast 64-bit hash of bytes (8 bytes per step; not cryptographic: it detects changes,
    /// it does not resist forgery).
    @inline(__always)
    public static func hashBytes(_ b: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = seed ^ (UInt64(b.count) &* 0x9E37_79B9_7F4A_7C15)
        var i = 0
        let n = b.count
        while i + 8 <= n {
            let w = b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            h = (h ^ w) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        var tail: UInt64 = 0, shift: UInt64 = 0
        while i < n { tail |= UInt64(b[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        return SplitMix64.mix(h)
    }

    /// The tags the generator sets (`TraceShaper`), the only ones the checksum covers.
    /// `error` is not among them: it is covered as the error flag (Datadog has no such tag).
    public static let coveredTagKeys: [String] = [
        "node_id", "zone", "kuma.mesh", "kuma.zone", "component", "http.method", "http.url", "http.protocol",
        "http.status_code", "guid:x-request-id", "user_agent", "request_size", "response_size", "response_flags",
        "region", "upstream_cluster", "peer.address", "downstream_cluster",
    ]

    /// `coveredTagKeys` by their key hash (`hashBytes(key, seed: 3)`), open addressing over 64
    /// slots: one multiply-free probe per tag instead of string compares.
    static let coveredTable: [UInt64] = {
        var t = [UInt64](repeating: 0, count: 64)
        for k in coveredTagKeys {
            let h = Array(k.utf8).withUnsafeBytes { hashBytes($0, seed: 3) }
            var i = Int(h & 63)
            while t[i] != 0 { i = (i + 1) & 63 }
            t[i] = h
        }
        return t
    }()

    @inline(__always) static func isCovered(_ keyHash: UInt64, _ table: UnsafeBufferPointer<UInt64>) -> Bool {
        var i = Int(keyHash & 63)
        while true {
            let v = table[i]
            if v == keyHash { return true }
            if v == 0 { return false }
            i = (i + 1) & 63
        }
    }

    /// The span's static content: service, name, kind, duration, error flag, and the covered
    /// tags, combined order-independently (a decoder or relay may reorder tags; it may not
    /// change, drop or rename one).
    public static func staticHash(_ batch: SpanBatch, _ i: Int) -> UInt64 {
        let s = batch.spans[i]
        var h = batch.withBytes(s.localEndpoint.serviceName) { hashBytes($0, seed: 1) }
        h = SplitMix64.mix(h ^ batch.withBytes(s.name) { hashBytes($0, seed: 2) })
        h = SplitMix64.mix(h ^ UInt64(s.kind.rawValue) ^ (s.isError ? 1 << 7 : 0) ^ (UInt64(bitPattern: s.durationNanos / 1000) << 8))
        var tags: UInt64 = 0
        coveredTable.withUnsafeBufferPointer { table in
            for t in s.tags {
                let tag = batch.tags[Int(t)]
                let k = batch.withBytes(tag.key) { hashBytes($0, seed: 3) }
                guard isCovered(k, table) else { continue }
                let v = batch.withBytes(tag.value) { hashBytes($0, seed: k) }
                tags &+= SplitMix64.mix(k ^ (v << 1 | v >> 63))
            }
        }
        return SplitMix64.mix(h ^ tags)
    }

    /// The checksum from the static hash and the dynamic fields.
    @inline(__always)
    public static func combine(_ staticHash: UInt64, traceHigh: UInt64, traceLow: UInt64, id: UInt64,
                               parent: UInt64, startMicros: Int64) -> UInt64 {
        var h = SplitMix64.mix(staticHash ^ traceHigh)
        h = SplitMix64.mix(h ^ traceLow)
        h = SplitMix64.mix(h ^ id)
        h = SplitMix64.mix(h ^ parent)
        return SplitMix64.mix(h ^ UInt64(bitPattern: startMicros))
    }

    /// The checksum a decoded span should carry.
    public static func expected(_ batch: SpanBatch, _ i: Int) -> UInt64 {
        let s = batch.spans[i]
        return combine(staticHash(batch, i), traceHigh: s.traceID.high, traceLow: s.traceID.low, id: s.id,
                       parent: s.parentID, startMicros: s.startNanos / 1000)
    }

    /// The checksum the span carries (nil: no `loadtest.sum` tag or not 16 hex digits).
    public static func carried(_ batch: SpanBatch, _ i: Int) -> UInt64? {
        for t in batch.spans[i].tags {
            let tag = batch.tags[Int(t)]
            if batch.equals(tag.key, "loadtest.sum") {
                return batch.withBytes(tag.value) { $0.count == 16 ? parseHex64($0) : nil }
            }
        }
        return nil
    }

    /// The value of tag `key` on span `i`, if any (sink: `region`).
    public static func tag(_ batch: SpanBatch, _ i: Int, _ key: StaticString) -> Str? {
        for t in batch.spans[i].tags {
            let tag = batch.tags[Int(t)]
            if batch.equals(tag.key, key) { return tag.value }
        }
        return nil
    }
}
