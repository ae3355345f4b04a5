import Basics
import Dispatch
import Synchronization

/// The last few minutes of throughput, one sample a second, so the status page shows history
/// the moment it opens (a rate computed in the browser would start empty). Sampling reads the
/// counters the relay keeps anyway, on a timer of its own: nothing on the request path.
public final class ThroughputHistory: Sendable {
    /// Cumulative figures at one instant.
    struct Sample: Sendable {
        var monotonicNanos: UInt64
        var ingestSpans: Int
        var refusedSpans: Int
        /// Per backend: spans sent (cumulative) and bytes queued (memory + disk, a gauge).
        var backends: [String: (sent: Int, queued: Int)]
    }

    let capacity: Int
    private let samples: Mutex<[Sample]>
    private let timer = Mutex<TimerBox?>(nil)

    init(capacity: Int) {
        self.capacity = max(2, capacity)
        samples = Mutex([])
    }

    func start(interval: Duration = .seconds(1), _ read: @escaping @Sendable () -> RelayStatus?) {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "tracerelay.status-history"))
        let ms = Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        t.schedule(deadline: .now(), repeating: .milliseconds(max(10, ms)))
        t.setEventHandler { [weak self] in
            guard let self, let s = read() else { return }
            self.add(Self.sample(s))
        }
        let box = TimerBox(t)
        timer.withLock { $0?.source.cancel(); $0 = box }
        t.activate()
    }

    func stop() { timer.withLock { $0?.source.cancel(); $0 = nil } }

    static func sample(_ s: RelayStatus) -> Sample {
        var backends: [String: (Int, Int)] = [:]
        for b in s.backends { backends[b.name] = (b.stats.sentSpans, b.queue.memoryBytes + b.queue.diskBytes) }
        let refused = s.routing.refused.values.reduce(0, +) + s.ingest.values.reduce(0) { $0 + $1.refusedSpans.values.reduce(0, +) }
        return Sample(monotonicNanos: Clock.monotonicNanos(), ingestSpans: s.ingest.values.reduce(0) { $0 + $1.spans },
                      refusedSpans: refused, backends: backends)
    }

    func add(_ s: Sample) {
        samples.withLock {
            $0.append(s)
            if $0.count > capacity { $0.removeFirst($0.count - capacity) }
        }
    }

    /// Per-second rates between successive samples (oldest first) and the queue gauge at each.
    struct Series: Sendable {
        var ingestSpansPerSecond: [Double] = []
        var refusedSpansPerSecond: [Double] = []
        var backends: [String: (sentPerSecond: [Double], queuedBytes: [Int])] = [:]
    }

    func series() -> Series {
        let all = samples.withLock { $0 }
        var out = Series()
        guard all.count >= 2 else { return out }
        for (a, b) in zip(all, all.dropFirst()) {
            let dt = max(1e-3, Double(b.monotonicNanos &- a.monotonicNanos) / 1e9)
            out.ingestSpansPerSecond.append(Double(max(0, b.ingestSpans - a.ingestSpans)) / dt)
            out.refusedSpansPerSecond.append(Double(max(0, b.refusedSpans - a.refusedSpans)) / dt)
            for (name, now) in b.backends {
                let before = a.backends[name]?.sent ?? now.sent
                out.backends[name, default: ([], [])].sentPerSecond.append(Double(max(0, now.sent - before)) / dt)
                out.backends[name, default: ([], [])].queuedBytes.append(now.queued)
            }
        }
        return out
    }
}

/// A Dispatch timer, passed between threads: Dispatch sources are thread-safe to cancel, the
/// protocol is just not marked `Sendable`.
private final class TimerBox: @unchecked Sendable {
    let source: DispatchSourceTimer
    init(_ source: DispatchSourceTimer) { self.source = source }
}
