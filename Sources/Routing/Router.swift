import Spans

/// A routing table plus a cache of decisions keyed by the span's resolved mesh tags, for one
/// pipeline loop (not shared between threads). When tags repeat (the usual case: a few
/// services per zone), a span costs a tag scan, a hash and a compare. The cache stores the
/// resolved values themselves, so a hash collision can never misroute a span.
public struct Router {
    public let table: RoutingTable
    /// Open addressing; an entry holds what the common case needs, so a hit touches one
    /// entry and its key bytes. `hash == 0` is empty.
    private var entries: [Entry]
    private var verdicts: [RoutingTable.Verdict] = []
    private var keyBytes: [UInt8] = []
    private let mask: Int
    /// The previous span's entry: spans of one batch usually come from one sidecar, so the
    /// next span often has the same tags and skips the hash and the probe.
    private var last: Entry? = nil

    /// `capacity`: cache entries (rounded up to a power of two); the cache is cleared when full.
    public init(_ table: RoutingTable, capacity: Int = 8192) {
        self.table = table
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        entries = Array(repeating: Entry(), count: n)
        mask = n - 1
    }

    struct Entry {
        var hash: UInt64 = 0
        var threshold: UInt64 = 0
        var keyAt: Int32 = 0
        var verdictAt: Int32 = 0
        /// -1 when refused (see `verdicts[verdictAt]`).
        var backend: Int32 = -1
        var tagSet: UInt16 = 0
        var all = false
    }

    /// Routes span `index` of `batch` through the cache.
    public mutating func route(_ index: Int, in batch: SpanBatch) -> RouteDecision {
        let ctx = RequestContext(table: table, metadata: batch.metadata)
        return ctx.withSlots { base in
            batch.storage.withUnsafeBytes { storage in
                batch.tags.withUnsafeBufferPointer { tags in
                    withUnsafeTemporaryAllocation(of: Slot.self, capacity: table.keys.count) { slots in
                        let span = batch.spans[index]
                        table.withResolver { $0.resolve(span, storage: storage, tags: tags, base: base, into: slots) }
                        let e = cachedEntry(UnsafeBufferPointer(slots))
                        return table.decision(verdicts[Int(e.verdictAt)], span: span)
                    }
                }
            }
        }
    }

    /// Routes every span of `batch`: kept spans per backend, sampled-out and refused counts.
    public mutating func route(_ batch: SpanBatch) -> BatchRoutes {
        let nb = table.backends.count
        let n = batch.spans.count
        // First pass: each span's destination (backend, or -1 dropped/refused) into flat
        // arrays; the per-backend lists are filled afterwards with exact capacities.
        var dest = [Int32](repeating: -1, count: n)
        var added = [UInt16](repeating: 0, count: n)
        var sampledOut = Array(repeating: 0, count: nb)
        var kept = Array(repeating: 0, count: nb)
        var refusedCounts: [RefusalKey: Int] = [:]
        let ctx = RequestContext(table: table, metadata: batch.metadata)
        let table = self.table
        // A client whose certificate pins a region: spans of any other region are refused.
        // (`Int.max` = no pin; a region the table does not know pins to "nothing matches".)
        let pin = batch.metadata.pinnedRegion.map { table.regionNames.firstIndex(of: $0) ?? Int.min + 1 } ?? Int.max
        ctx.withSlots { base in
            batch.storage.withUnsafeBytes { storage in
                batch.tags.withUnsafeBufferPointer { tags in
                    batch.spans.withUnsafeBufferPointer { spans in
                        dest.withUnsafeMutableBufferPointer { dest in
                            added.withUnsafeMutableBufferPointer { added in
                                withUnsafeTemporaryAllocation(of: Slot.self, capacity: table.keys.count) { slots in
                                    table.withResolver { resolver in
                                        for i in 0..<spans.count {
                                            let span = spans[i]
                                            resolver.resolve(span, storage: storage, tags: tags, base: base, into: slots)
                                            let e = cachedEntry(UnsafeBufferPointer(slots))
                                            if pin != Int.max, verdicts[Int(e.verdictAt)].region != pin {
                                                let r = verdicts[Int(e.verdictAt)].region
                                                refusedCounts[RefusalKey(reason: .identity, region: r, backend: -1), default: 0] += 1
                                                continue
                                            }
                                            if e.backend >= 0 {
                                                if RoutingTable.sample(span, all: e.all, below: e.threshold) {
                                                    dest[i] = e.backend
                                                    added[i] = e.tagSet
                                                    kept[Int(e.backend)] += 1
                                                } else {
                                                    sampledOut[Int(e.backend)] += 1
                                                }
                                            } else {
                                                let v = verdicts[Int(e.verdictAt)]
                                                refusedCounts[RefusalKey(reason: v.refusal ?? .noBackend, region: v.region, backend: v.selected), default: 0] += 1
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var per = kept.map { k -> [BatchRoutes.Routed] in
            var a: [BatchRoutes.Routed] = []
            a.reserveCapacity(k)
            return a
        }
        for i in 0..<n where dest[i] >= 0 {
            per[Int(dest[i])].append(.init(span: UInt32(i), addedTags: UInt32(added[i])))
        }
        let refused = refusedCounts.map { k, n in
            BatchRoutes.RefusalCount(reason: k.reason, region: table.regionLabel(k.region),
                                     backend: k.backend >= 0 ? table.backends[k.backend].name : "", count: n)
        }.sorted { ($0.reason.rawValue, $0.region, $0.backend) < ($1.reason.rawValue, $1.region, $1.backend) }
        return BatchRoutes(perBackend: per, sampledOut: sampledOut, refused: refused)
    }

    struct RefusalKey: Hashable { var reason: RouteDecision.Refusal; var region: Int; var backend: Int }

    @inline(__always)
    private mutating func cachedEntry(_ slots: UnsafeBufferPointer<Slot>) -> Entry {
        if let last, keyBytes.withUnsafeBytes({ Router.keyMatches($0, Int(last.keyAt), slots) }) { return last }
        let e = probe(slots)
        last = e
        return e
    }

    @inline(__always)
    private mutating func probe(_ slots: UnsafeBufferPointer<Slot>) -> Entry {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        for s in slots { h = hashBytes(h, s.ptr, s.count) }
        h |= 1  // 0 marks an empty entry
        let found: Entry? = entries.withUnsafeBufferPointer { es in
            keyBytes.withUnsafeBytes { kb in
                var i = Int(truncatingIfNeeded: h ^ (h >> 29)) & mask
                while true {
                    let e = es[i]
                    if e.hash == 0 { return nil }
                    if e.hash == h, Router.keyMatches(kb, Int(e.keyAt), slots) { return e }
                    i = (i + 1) & mask
                }
            }
        }
        if let found { return found }
        return insert(h, slots, table.verdict(slots, trace: nil))
    }

    @inline(__always)
    private static func keyMatches(_ kb: UnsafeRawBufferPointer, _ offset: Int, _ slots: UnsafeBufferPointer<Slot>) -> Bool {
        var p = offset
        for s in slots {
            let n = Int(kb.loadUnaligned(fromByteOffset: p, as: Int32.self))
            p += 4
            if n != s.count { return false }
            if n > 0 {
                if !fastEqual(kb.baseAddress! + p, s.ptr!, n) { return false }
                p += n
            }
        }
        return true
    }

    private mutating func insert(_ h: UInt64, _ slots: UnsafeBufferPointer<Slot>, _ v: RoutingTable.Verdict) -> Entry {
        if verdicts.count * 2 >= entries.count || keyBytes.count > (8 << 20) {
            for j in entries.indices { entries[j].hash = 0 }
            keyBytes.removeAll(keepingCapacity: true)
            verdicts.removeAll(keepingCapacity: true)
            last = nil
        }
        let off = keyBytes.count
        for s in slots {
            withUnsafeBytes(of: Int32(s.count).littleEndian) { keyBytes.append(contentsOf: $0) }
            if s.count > 0 { keyBytes.append(contentsOf: UnsafeRawBufferPointer(start: s.ptr, count: s.count)) }
        }
        var i = Int(truncatingIfNeeded: h ^ (h >> 29)) & mask
        while entries[i].hash != 0 { i = (i + 1) & mask }
        let e = Entry(hash: h, threshold: v.threshold.below, keyAt: Int32(off), verdictAt: Int32(verdicts.count),
                      backend: Int32(v.backend), tagSet: UInt16(truncatingIfNeeded: v.tagSet), all: v.threshold.all)
        entries[i] = e
        verdicts.append(v)
        return e
    }
}

extension RoutingTable {
    /// The metrics label for a decision's region: a configured name, `other` or `unknown`.
    public func regionLabel(_ r: Int?) -> String {
        guard let r, r != Int.min else { return "unknown" }
        return r >= 0 ? regionNames[r] : "other"
    }
}
