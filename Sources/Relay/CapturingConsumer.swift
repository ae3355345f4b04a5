import Spans
import Synchronization

/// A terminal `SpanConsumer` that accepts every batch, counts it and keeps the most recent
/// ones in memory. It stands in for the exporters until they exist, and lets tests (and the
/// `/debug/captured` endpoint) see exactly what the decoders produced.
public final class CapturingConsumer: SpanConsumer {
    /// How many batches are kept; older ones are forgotten (their counts are not).
    public let capacity: Int
    private let state: Mutex<State>

    struct State {
        var batches: [SpanBatch] = []
        var batchCount = 0
        var spanCount = 0
    }

    public init(capacity: Int = 64) {
        self.capacity = max(0, capacity)
        self.state = Mutex(State())
    }

    public func consume(_ batch: SpanBatch, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
        state.withLock { s in
            s.batchCount += 1
            s.spanCount += batch.count
            if capacity > 0 {
                if s.batches.count == capacity { s.batches.removeFirst() }
                s.batches.append(batch)
            }
        }
        completion(.success(()))
    }

    /// Batches kept, oldest first.
    public var batches: [SpanBatch] { state.withLock { $0.batches } }
    public var batchCount: Int { state.withLock { $0.batchCount } }
    public var spanCount: Int { state.withLock { $0.spanCount } }

    /// Forgets the kept batches (counts stay).
    public func clear() { state.withLock { $0.batches.removeAll() } }
}
