/// A high-dynamic-range latency histogram (HdrHistogram's log-linear layout): values from
/// 1 µs to ~1 h with 3 significant digits (relative error ≤ 1/2048), fixed memory, O(1)
/// record. Kept here rather than a dependency: it is 60 lines and the rig needs only this.
public struct LatencyHistogram: Sendable, Equatable {
    /// Sub-buckets per power of two (2^11 → 3 significant digits).
    static let subBits = 11
    static let subCount = 1 << subBits
    static let magnitudes = 33  // up to 2^(11+32) ns… far beyond an hour; values are µs
    public private(set) var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var max: UInt64 = 0
    public private(set) var min: UInt64 = .max
    public private(set) var sum: Double = 0

    public init() { counts = [UInt64](repeating: 0, count: Self.subCount * Self.magnitudes) }

    @inline(__always) static func index(_ v: UInt64) -> Int {
        if v < UInt64(subCount) { return Int(v) }
        let m = 63 - v.leadingZeroBitCount - (subBits - 1)  // ≥ 1
        let sub = Int(v >> UInt64(m))                       // in [subCount/2, subCount)
        return m * (subCount / 2) + sub
    }
    /// The highest value that lands in bucket `i` (HdrHistogram reports the bucket's top).
    static func value(at i: Int) -> UInt64 {
        if i < subCount { return UInt64(i) }
        let m = i / (subCount / 2) - 1
        let sub = UInt64(i - m * (subCount / 2))
        let shift = UInt64(m)
        return ((sub + 1) << shift) - 1
    }

    /// Records one value (µs).
    public mutating func record(_ micros: UInt64) {
        let i = Swift.min(Self.index(micros), counts.count - 1)
        counts[i] += 1
        count += 1
        sum += Double(micros)
        if micros > max { max = micros }
        if micros < min { min = micros }
    }

    public mutating func merge(_ o: LatencyHistogram) {
        for i in counts.indices { counts[i] += o.counts[i] }
        count += o.count; sum += o.sum
        max = Swift.max(max, o.max); min = Swift.min(min, o.min)
    }

    /// The value at or below which `q` (0…1) of recorded values fall (0 when empty).
    public func quantile(_ q: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let target = Swift.max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for i in counts.indices where counts[i] > 0 {
            seen += counts[i]
            if seen >= target { return Swift.min(Self.value(at: i), max) }
        }
        return max
    }

    public var mean: Double { count == 0 ? 0 : sum / Double(count) }
}
