import Spans

/// A routing table plus a cache of decisions keyed by the span's resolved mesh tags, for one
/// pipeline loop (not shared between threads). When tags repeat (the usual case: a few
/// services per zone), a span costs a tag scan, a hash and a compare. The cache stores the
/// resolved values themselves, so a hash collision can never misroute a span.
public struct Router {
    public let table: RoutingTable
    /// Open addressing: `hashes[i] == 0` is empty; `slotsAt[i]` is where the entry's resolved
    /// values are stored in `keyBytes`; `verdictAt[i]` indexes `verdicts`.
    private var hashes: [UInt64]
    private var keyAt: [Int32]
    private var verdictAt: [Int32]
    private var verdicts: [RoutingTable.Verdict] = []
    private var keyBytes: [UInt8] = []
    private let mask: Int

    /// `capacity`: cache entries (rounded up to a power of two); the cache is cleared when full.
    public init(_ table: RoutingTable, capacity: Int = 8192) {
        self.table = table
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        hashes = Array(repeating: 0, count: n)
        keyAt = Array(repeating: 0, count: n)
        verdictAt = Array(repeating: 0, count: n)
        mask = n - 1
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
                        let v = cachedVerdict(UnsafeBufferPointer(slots))
                        return table.decision(v, span: span)
                    }
                }
            }
        }
    }

    /// Routes every span of `batch`: kept spans per backend, sampled-out and refused counts.
    public mutating func route(_ batch: SpanBatch) -> BatchRoutes {
        let nb = table.backends.count
        var per = Array(repeating: [BatchRoutes.Routed](), count: nb)
        var sampledOut = Array(repeating: 0, count: nb)
        var refusedCounts: [RefusalKey: Int] = [:]
        let ctx = RequestContext(table: table, metadata: batch.metadata)
        let table = self.table
        ctx.withSlots { base in
            batch.storage.withUnsafeBytes { storage in
                batch.tags.withUnsafeBufferPointer { tags in
                    batch.spans.withUnsafeBufferPointer { spans in
                        withUnsafeTemporaryAllocation(of: Slot.self, capacity: table.keys.count) { slots in
                            table.withResolver { resolver in
                                for i in 0..<spans.count {
                                    let span = spans[i]
                                    resolver.resolve(span, storage: storage, tags: tags, base: base, into: slots)
                                    let v = cachedVerdict(UnsafeBufferPointer(slots))
                                    if v.backend >= 0 {
                                        if table.sample(span, v) {
                                            per[v.backend].append(.init(span: UInt32(i), addedTags: UInt32(v.tagSet)))
                                        } else {
                                            sampledOut[v.backend] += 1
                                        }
                                    } else {
                                        refusedCounts[RefusalKey(reason: v.refusal ?? .noBackend, region: v.region, backend: v.selected), default: 0] += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let refused = refusedCounts.map { k, n in
            BatchRoutes.RefusalCount(reason: k.reason, region: table.regionLabel(k.region),
                                     backend: k.backend >= 0 ? table.backends[k.backend].name : "", count: n)
        }.sorted { ($0.reason.rawValue, $0.region, $0.backend) < ($1.reason.rawValue, $1.region, $1.backend) }
        return BatchRoutes(perBackend: per, sampledOut: sampledOut, refused: refused)
    }

    struct RefusalKey: Hashable { var reason: RouteDecision.Refusal; var region: Int; var backend: Int }

    @inline(__always)
    private mutating func cachedVerdict(_ slots: UnsafeBufferPointer<Slot>) -> RoutingTable.Verdict {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        for s in slots { h = hashBytes(h, s.ptr, s.count) }
        h |= 1  // 0 marks an empty entry
        let found: Int = hashes.withUnsafeBufferPointer { hs in
            var i = Int(truncatingIfNeeded: h ^ (h >> 29)) & mask
            while true {
                let e = hs[i]
                if e == 0 { return -1 }
                if e == h, keyMatches(Int(keyAt[i]), slots) { return Int(verdictAt[i]) }
                i = (i + 1) & mask
            }
        }
        if found >= 0 { return verdicts[found] }
        let v = table.verdict(slots, trace: nil)
        insert(h, slots, v)
        return v
    }

    @inline(__always)
    private func keyMatches(_ offset: Int, _ slots: UnsafeBufferPointer<Slot>) -> Bool {
        keyBytes.withUnsafeBytes { kb in
            var p = offset
            for s in slots {
                let n = Int(kb.loadUnaligned(fromByteOffset: p, as: Int32.self))
                p += 4
                if n != s.count { return false }
                if n > 0 {
                    if !bytesEqual(kb.baseAddress! + p, n, s.ptr, n) { return false }
                    p += n
                }
            }
            return true
        }
    }

    private mutating func insert(_ h: UInt64, _ slots: UnsafeBufferPointer<Slot>, _ v: RoutingTable.Verdict) {
        if verdicts.count * 2 >= hashes.count || keyBytes.count > (8 << 20) {
            for j in hashes.indices { hashes[j] = 0 }
            keyBytes.removeAll(keepingCapacity: true)
            verdicts.removeAll(keepingCapacity: true)
        }
        let off = keyBytes.count
        for s in slots {
            withUnsafeBytes(of: Int32(s.count).littleEndian) { keyBytes.append(contentsOf: $0) }
            if s.count > 0 { keyBytes.append(contentsOf: UnsafeRawBufferPointer(start: s.ptr, count: s.count)) }
        }
        var i = Int(truncatingIfNeeded: h ^ (h >> 29)) & mask
        while hashes[i] != 0 { i = (i + 1) & mask }
        hashes[i] = h
        keyAt[i] = Int32(off)
        verdictAt[i] = Int32(verdicts.count)
        verdicts.append(v)
    }
}

extension RoutingTable {
    /// The metrics label for a decision's region: a configured name, `other` or `unknown`.
    public func regionLabel(_ r: Int?) -> String {
        guard let r, r != Int.min else { return "unknown" }
        return r >= 0 ? regionNames[r] : "other"
    }
}
