/// The set of (trace id low, span id) pairs a sink has seen: open addressing with linear
/// probing over one flat array. Swift's `Set` spent ~30 % of the sink's CPU in SipHash and
/// rehashing; these keys are already well mixed, so one multiply spreads them.
struct SpanIDSet: Sendable {
    private var slots: [UInt64]  // pairs: [2i] = traceLow, [2i+1] = id; (0, 0) = empty
    private var mask: Int
    private(set) var count = 0
    /// (0, 0) cannot be stored in a slot; remembered apart.
    private var hasZero = false

    init(capacity: Int = 1 << 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [UInt64](repeating: 0, count: n * 2)
        mask = n - 1
    }

    @inline(__always) private static func hash(_ a: UInt64, _ b: UInt64) -> Int {
        let h = (a ^ (b &* 0x9E37_79B9_7F4A_7C15)) &* 0xBF58_476D_1CE4_E5B9
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// Inserts the pair; false when it was already there.
    @inline(__always)
    mutating func insert(traceLow: UInt64, id: UInt64) -> Bool {
        if traceLow == 0 && id == 0 {
            defer { hasZero = true }
            return !hasZero
        }
        if (count + 1) * 2 > mask + 1 { grow() }
        var i = Self.hash(traceLow, id) & mask
        return slots.withUnsafeMutableBufferPointer { s in
            while true {
                let a = s[2 * i], b = s[2 * i + 1]
                if a == 0 && b == 0 {
                    s[2 * i] = traceLow; s[2 * i + 1] = id
                    count += 1
                    return true
                }
                if a == traceLow && b == id { return false }
                i = (i + 1) & mask
            }
        }
    }

    /// Whether the pair is in the set.
    @inline(__always)
    func contains(traceLow: UInt64, id: UInt64) -> Bool {
        if traceLow == 0 && id == 0 { return hasZero }
        var i = Self.hash(traceLow, id) & mask
        return slots.withUnsafeBufferPointer { s in
            while true {
                let a = s[2 * i], b = s[2 * i + 1]
                if a == 0 && b == 0 { return false }
                if a == traceLow && b == id { return true }
                i = (i + 1) & mask
            }
        }
    }

    /// Calls `body` with every pair in the set.
    func forEach(_ body: (_ traceLow: UInt64, _ id: UInt64) -> Void) {
        if hasZero { body(0, 0) }
        for i in stride(from: 0, to: slots.count, by: 2) where slots[i] != 0 || slots[i + 1] != 0 { body(slots[i], slots[i + 1]) }
    }

    private mutating func grow() {
        let old = slots
        let n = (mask + 1) * 2
        slots = [UInt64](repeating: 0, count: n * 2)
        mask = n - 1
        count = 0
        for i in stride(from: 0, to: old.count, by: 2) where old[i] != 0 || old[i + 1] != 0 {
            _ = insert(traceLow: old[i], id: old[i + 1])
        }
    }
}
