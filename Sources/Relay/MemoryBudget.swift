import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One global bound on the memory that request decoding may hold at once: decompressed bodies
/// and decoded spans of every request in flight, on every loop and decode worker.
///
/// A request reserves before it allocates — a bound derived from the caps (decompression cap,
/// span cap) — narrows the reservation to what it really holds once it is decoded, and releases
/// it when the consumer has taken the batch (the pipeline has encoded its records by then, so the
/// decoded batch is garbage). A reservation that does not fit is refused: the request gets 503
/// with `Retry-After`, counted in `refused`. One atomic add per request on the fast path.
public final class MemoryBudget: Sendable {
    /// Bytes that may be reserved at once.
    public let limit: Int
    private let used = Atomic<Int>(0)
    private let refusedCount = Atomic<Int>(0)

    public init(limit: Int = MemoryBudget.machineDefault) {
        self.limit = max(0, limit)
    }

    /// A quarter of the machine's physical memory, at most 2 GiB (at least 64 MiB).
    public static var machineDefault: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return 1 << 30 }
        let (ram, overflow) = Int(pages).multipliedReportingOverflow(by: Int(size))
        return overflow ? 2 << 30 : min(2 << 30, max(64 << 20, ram / 4))
    }

    /// Bytes reserved now.
    public var inUse: Int { used.load(ordering: .relaxed) }
    /// Reservations refused since start.
    public var refused: Int { refusedCount.load(ordering: .relaxed) }

    /// Reserves `bytes`; nil (counted) when they do not fit.
    public func reserve(_ bytes: Int) -> MemoryReservation? {
        guard take(bytes) else {
            countRefusal()
            return nil
        }
        return MemoryReservation(budget: self, bytes: bytes)
    }

    fileprivate func take(_ bytes: Int) -> Bool {
        let n = max(0, bytes)
        if n > limit { return false }
        let after = used.wrappingAdd(n, ordering: .relaxed).newValue
        if after > limit && n > 0 {
            used.wrappingSubtract(n, ordering: .relaxed)
            return false
        }
        return true
    }

    fileprivate func countRefusal() { refusedCount.wrappingAdd(1, ordering: .relaxed) }

    fileprivate func give(_ bytes: Int) {
        if bytes > 0 { used.wrappingSubtract(bytes, ordering: .relaxed) }
    }
}

/// Bytes held against a `MemoryBudget`. Released by `release()` or, failing that, when the last
/// reference goes, so an error path cannot leak budget.
public final class MemoryReservation: Sendable {
    private let budget: MemoryBudget
    private let held: Atomic<Int>

    fileprivate init(budget: MemoryBudget, bytes: Int) {
        self.budget = budget
        self.held = Atomic(max(0, bytes))
    }

    deinit { release() }

    /// Bytes held now.
    public var bytes: Int { held.load(ordering: .relaxed) }

    /// Holds exactly `bytes` from now on: shrinking always succeeds; growing takes the difference
    /// from the budget and fails (counted, nothing changed) when it does not fit.
    @discardableResult
    public func resize(to bytes: Int) -> Bool {
        let target = max(0, bytes)
        let current = held.load(ordering: .relaxed)
        if target <= current {
            held.store(target, ordering: .relaxed)
            budget.give(current - target)
            return true
        }
        guard budget.take(target - current) else {
            budget.countRefusal()
            return false
        }
        held.store(target, ordering: .relaxed)
        return true
    }

    /// Gives every held byte back (idempotent).
    public func release() {
        budget.give(held.exchange(0, ordering: .relaxed))
    }
}
