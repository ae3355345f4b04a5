import Spans

/// Consistent hashing of routing keys (trace ids, service names) onto a backend's endpoints:
/// Maglev hashing (Eisenbud et al., NSDI 2016; Envoy's `MAGLEV` load balancer). Each endpoint
/// fills a lookup table of prime size M ≥ 100 × N in the order of its own permutation, so
///
/// - every endpoint owns M/N table entries ±1: the spread is even to within 1 % of a share
///   (before the noise of the keys themselves);
/// - a lookup is one multiply-shift hash and one table read, whatever N is;
/// - the table depends only on the *set* of endpoint names (sorted first), so every relay in a
///   tier computes the same one without talking to the others;
/// - adding or removing one endpoint moves about 1/N of the keys — somewhat more than the
///   ideal: up to a fifth of the moved keys move between endpoints that stayed (measured in
///   ScaleOutRingTests; the paper reports the same), never a reshuffle of everything.
///
/// Immutable; built off the hot path (a membership change), read by any thread.
struct EndpointRing: Sendable, Equatable {
    /// The endpoints, sorted; lookups answer an index into this list.
    let endpoints: [String]
    private let table: [UInt32]

    /// - Parameter endpoints: endpoint names (URLs); duplicates are ignored.
    init(_ endpoints: [String]) {
        let names = Array(Set(endpoints)).sorted()
        self.endpoints = names
        guard names.count > 1 else {
            table = names.isEmpty ? [] : [0]
            return
        }
        let m = Self.prime(atLeast: max(65_537, 100 * names.count))
        var table = [UInt32](repeating: .max, count: m)
        // Each endpoint walks its permutation (offset + j·skip) mod M, taking the first free slot.
        var offset = [Int](), skip = [Int](), next = [Int](repeating: 0, count: names.count)
        for n in names {
            let h = fnv1a(n)
            offset.append(Int(mix64(h ^ 0x9E37_79B9_7F4A_7C15) % UInt64(m)))
            skip.append(Int(mix64(h ^ 0xC2B2_AE3D_27D4_EB4F) % UInt64(m - 1)) + 1)
        }
        var filled = 0
        fill: while true {
            for i in names.indices {
                var c = (offset[i] + next[i] * skip[i]) % m
                while table[c] != .max {
                    next[i] += 1
                    c = (offset[i] + next[i] * skip[i]) % m
                }
                table[c] = UInt32(i)
                next[i] += 1
                filled += 1
                if filled == m { break fill }
            }
        }
        self.table = table
    }

    var isEmpty: Bool { endpoints.isEmpty }

    /// Table entries each endpoint owns (tests: Maglev gives each ⌊M/N⌋ or ⌈M/N⌉).
    func ownership() -> [Int] {
        var owned = [Int](repeating: 0, count: endpoints.count)
        for i in table { owned[Int(i)] += 1 }
        return owned
    }
    var count: Int { endpoints.count }

    /// The endpoint index for a 64-bit key hash. Requires a non-empty ring.
    @inline(__always) func index(forHash h: UInt64) -> Int {
        // Lemire's multiply-shift maps the hash onto 0..<M without a division.
        let (hi, _) = h.multipliedFullWidth(by: UInt64(table.count))
        return Int(table[Int(hi)])
    }

    /// The endpoint index for a trace id (both halves).
    @inline(__always) func index(for trace: TraceID) -> Int { index(forHash: Self.hash(trace)) }

    @inline(__always) static func hash(_ t: TraceID) -> UInt64 { mix64(t.low ^ mix64(t.high &+ 0x9E37_79B9_7F4A_7C15)) }

    /// The key hash of a service name (FNV-1a, then mixed).
    static func hash(service bytes: some Sequence<UInt8>) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return mix64(h)
    }

    static func == (a: EndpointRing, b: EndpointRing) -> Bool { a.endpoints == b.endpoints }

    private static func prime(atLeast n: Int) -> Int {
        var c = n | 1
        while !isPrime(c) { c += 2 }
        return c
    }

    private static func isPrime(_ n: Int) -> Bool {
        if n < 4 { return n > 1 }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}

/// FNV-1a over a string's UTF-8 bytes: stable across processes and versions (Swift's `Hasher`
/// is seeded per process, so relays would disagree).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
}

/// SplitMix64's finalizer: spreads every input bit over the output.
@inline(__always) func mix64(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
