import Spans
import Testing
@testable import Relay

/// The consistent-hash ring of a sharded backend (ScaleOut/EndpointRing.swift): even spread,
/// ≈ 1/N of the keys moved by a membership change, the same table in every process.
@Suite struct ScaleOutRingTests {
    /// Seeded generator (SplitMix64); the seed is printed with every expectation.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            return mix64(state)
        }
    }

    static func endpoints(_ n: Int, from start: Int = 0) -> [String] {
        (start..<(start + n)).map { "http://10.\($0 >> 16 & 255).\($0 >> 8 & 255).\($0 & 255):9411" }
    }

    static func traces(_ count: Int, seed: UInt64) -> [TraceID] {
        var g = Seeded(state: seed)
        return (0..<count).map { _ in TraceID(high: g.next(), low: g.next()) }
    }

    /// Each endpoint's share of the table is within 1 % of even, and of random trace ids within
    /// a few percent (the keys' own noise: ≈ 1/√(keys per endpoint)).
    @Test(arguments: [3, 10, 100, 1_000, 10_000]) func spreadIsEven(n: Int) {
        let seed = UInt64.random(in: 0..<UInt64.max)
        let ring = EndpointRing(Self.endpoints(n))
        #expect(ring.count == n)
        print("ring spread n=\(n) seed=\(seed)")
        // The table itself: every endpoint owns ⌊M/N⌋ or ⌈M/N⌉ entries.
        let owned = ring.ownership()
        #expect(owned.max()! - owned.min()! <= 1, "table spread, n=\(n): \(owned.min()!)...\(owned.max()!)")
        // Random trace ids: 2,000 per endpoint for small rings (≈ 2.2 % standard deviation).
        let keys = n <= 100 ? 2_000 * n : 200_000
        var hits = [Int](repeating: 0, count: n)
        for t in Self.traces(keys, seed: seed) { hits[ring.index(for: t)] += 1 }
        let evenKeys = Double(keys) / Double(n)
        let sd = (hits.map { (Double($0) - evenKeys) * (Double($0) - evenKeys) }.reduce(0, +) / Double(n)).squareRoot() / evenKeys
        let noise = 1 / evenKeys.squareRoot()
        #expect(sd < noise * 1.3 + 0.01, "seed \(seed), n=\(n): relative standard deviation \(sd), key noise alone \(noise)")
        if n <= 100 {
            let worst = hits.map { abs(Double($0) - evenKeys) / evenKeys }.max()!
            #expect(worst < 0.1, "seed \(seed), n=\(n): worst endpoint \(worst) off even")
        }
    }

    /// Adding one endpoint to N moves ≈ 1/(N+1) of the keys, all of them to the new one;
    /// removing one moves ≈ 1/N, only its own keys.
    @Test(arguments: [3, 4, 10, 50]) func membershipChangeMovesAboutOneNth(n: Int) {
        let seed = UInt64.random(in: 0..<UInt64.max)
        let before = EndpointRing(Self.endpoints(n))
        let grown = EndpointRing(Self.endpoints(n + 1))
        let shrunk = EndpointRing(Array(Self.endpoints(n).dropFirst()))
        let keys = Self.traces(100_000, seed: seed)
        var movedOnAdd = 0, movedToOthers = 0, movedOnRemove = 0, strayOnRemove = 0
        let removed = before.endpoints.firstIndex(of: Self.endpoints(n)[0])!
        for t in keys {
            let a = before.endpoints[before.index(for: t)]
            let b = grown.endpoints[grown.index(for: t)]
            if a != b {
                movedOnAdd += 1
                if b != Self.endpoints(n + 1)[n] { movedToOthers += 1 }
            }
            let c = shrunk.endpoints[shrunk.index(for: t)]
            if a != c {
                movedOnRemove += 1
                if before.index(for: t) != removed { strayOnRemove += 1 }
            }
        }
        let add = Double(movedOnAdd) / Double(keys.count), remove = Double(movedOnRemove) / Double(keys.count)
        let idealAdd = 1 / Double(n + 1), idealRemove = 1 / Double(n)
        print("ring n=\(n) seed=\(seed): add moved \(add) (ideal \(idealAdd)), remove moved \(remove) (ideal \(idealRemove))")
        #expect(add > idealAdd * 0.9 && add < idealAdd * 1.35, "seed \(seed): adding moved \(add), ideal \(idealAdd)")
        #expect(remove > idealRemove * 0.9 && remove < idealRemove * 1.35, "seed \(seed): removing moved \(remove), ideal \(idealRemove)")
        // Maglev moves some keys between endpoints that stay, too: at most about a fifth of those it moves.
        #expect(Double(movedToOthers) < Double(movedOnAdd) * 0.25, "seed \(seed): \(movedToOthers) of \(movedOnAdd) moved between old endpoints")
        #expect(Double(strayOnRemove) < Double(movedOnRemove) * 0.25, "seed \(seed): \(strayOnRemove) of \(movedOnRemove) moved between survivors")
    }

    /// The table depends on the set only: order and duplicates do not matter, so relays agree.
    @Test func sameSetSameRing() {
        let e = Self.endpoints(7)
        let a = EndpointRing(e), b = EndpointRing(e.reversed() + [e[2]])
        for t in Self.traces(10_000, seed: 42) { #expect(a.index(for: t) == b.index(for: t)) }
        // A fixed answer pins the hash across versions and processes (a change would reshuffle a tier mid-upgrade).
        #expect(a.endpoints[a.index(for: TraceID(high: 1, low: 2))] == "http://10.0.0.\(ScaleOutRingTests.pinned):9411")
        #expect(EndpointRing([]).isEmpty)
        #expect(EndpointRing(["x"]).index(for: TraceID(low: 9)) == 0)
    }
    static let pinned = 4

    @Test func endpointsFileLines() {
        let (urls, bad) = FileEndpointResolver.parse("""
        # central relays
        10.0.0.2:9411
        http://10.0.0.1:9411/api/v2/spans   # with a path
          10.0.0.2:9411
        [::1]:9411

        not an endpoint
        """)
        #expect(urls == ["http://10.0.0.1:9411/api/v2/spans", "http://10.0.0.2:9411", "http://[::1]:9411"])
        #expect(bad == [7])
        #expect(ShardedBackend.queueName("central", "http://10.0.0.1:9411") == "central@10.0.0.1_9411")
        #expect(ShardedBackend.queueName("central", "http://[::1]:9411/x") == "central@___1__9411_x")
    }
}
