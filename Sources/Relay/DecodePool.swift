import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A bounded pool of worker queues for request bodies too large to decompress and decode on an
/// event loop: the loops keep serving small requests while a large one is decoded here.
///
/// `workers` serial queues (default: one per core), each job going to the least loaded one, and
/// at most `maxQueued` jobs waiting or running in all: beyond that `submit` refuses (the caller
/// answers 503 with `Retry-After`) instead of queueing without bound — a queued job still holds
/// its request body.
public final class DecodePool: Sendable {
    public let workers: Int
    public let maxQueued: Int
    private let queues: [DispatchQueue]
    private let load: Mutex<[Int]>
    private let refusedCount = Atomic<Int>(0)

    public init(workers: Int = DecodePool.cores, maxQueued: Int? = nil) {
        let n = max(1, workers)
        self.workers = n
        self.maxQueued = max(n, maxQueued ?? n * 8)
        self.queues = (0..<n).map { DispatchQueue(label: "tracerelay.decode.\($0)") }
        self.load = Mutex(Array(repeating: 0, count: n))
    }

    /// Online processors.
    public static var cores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Jobs waiting or running now.
    public var queued: Int { load.withLock { $0.reduce(0, +) } }
    /// Jobs refused because the pool was full, since start.
    public var refused: Int { refusedCount.load(ordering: .relaxed) }

    /// Runs `job` on a worker; false (counted) when `maxQueued` jobs are already waiting or running.
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        let picked: Int? = load.withLock { l in
            var total = 0, best = 0
            for i in l.indices {
                total += l[i]
                if l[i] < l[best] { best = i }
            }
            guard total < maxQueued else { return nil }
            l[best] += 1
            return best
        }
        guard let w = picked else {
            refusedCount.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        queues[w].async { [self] in
            job()
            load.withLock { $0[w] -= 1 }
        }
        return true
    }
}
