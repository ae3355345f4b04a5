// Helpers every test target shares: one seeded generator, one "wait until" — so randomized tests
// can be replayed from their seed and no test orders itself with sleeps.
import Basics
#if canImport(Glibc)
import Glibc
#endif

/// A seeded generator (SplitMix64). Random tests name their seed in failure messages (or use
/// `init(seed:printing:)`), so a failing run can be replayed exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }
    /// Prints the seed with what it drives, so a failing run can be reproduced.
    public init(seed: UInt64, printing what: String) {
        print("\(what): seed \(seed)")
        state = seed
    }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Waits until `condition` holds, polling every millisecond, for at most `seconds`; returns
/// whether it held. For waiting on observable state instead of sleeping for an ordering.
public func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Clock.monotonicNanos() &+ UInt64(seconds * 1e9)
    while Clock.monotonicNanos() < deadline {
        if try condition() { return true }
        usleep(1000)
    }
    return try condition()
}
