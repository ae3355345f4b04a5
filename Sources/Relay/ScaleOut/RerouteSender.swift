import Buffering
import Codecs
import Routing
import Spans
import Synchronization

/// The sender of a sharded backend's queues that do not belong to a live endpoint: the
/// backend's own queue (spans that arrived while no endpoint was known, or queued under an
/// older single-endpoint configuration) and the queues of endpoints that left the ring. It
/// sends nothing over the network: it decodes the payload, splits its spans by the current
/// ring and enqueues each part on its endpoint's queue, in the same format and with the same
/// headers. Delivered once every part is queued; retryable when there is no endpoint or a
/// queue refused (the whole payload comes again: parts already queued are then duplicated —
/// at least once, never lost).
final class RerouteSender: PayloadSender {
    private weak let backend: ShardedBackend?
    let target: String

    init(_ backend: ShardedBackend) {
        self.backend = backend
        target = "reroute:\(backend.config.name)"
    }

    func send(_ payload: Payload, completion: @escaping @Sendable (SendOutcome) -> Void) {
        guard let backend else { return completion(.retryable("the backend is gone", retryAfter: nil)) }
        let snap = backend.snapshot
        guard !snap.ring.isEmpty else { return completion(.retryable("no endpoint resolved yet", retryAfter: nil)) }
        let batch: SpanBatch
        do {
            switch payload.format {
            case .zipkinJSON: batch = try ZipkinJSONV2.decode(payload.body, metadata: BatchMetadata(format: .zipkinV2JSON))
            case .zipkinProto: batch = try ZipkinProto3.decode(payload.body, metadata: BatchMetadata(format: .zipkinV2Proto))
            case .datadogV04: batch = try DatadogV04.decode(payload.body, metadata: BatchMetadata(format: .datadogV04))
            case .ndjson: return completion(.permanent("NDJSON records are not re-routed"))
            }
        } catch {
            return completion(.permanent("a queued record could not be decoded for re-routing: \(error)"))
        }
        let groups = backend.group(batch.spans.indices, of: batch, ring: snap)
        let groupKey = RecordMeta.groupKey(payload.headers)
        var work: [(BackendQueue, Record)] = []
        for (i, indices) in groups.enumerated() where !indices.isEmpty {
            var out: [UInt8] = []
            var meta = RecordMeta(format: payload.format, groupKey: groupKey)
            switch payload.format {
            case .zipkinJSON: ZipkinJSONV2.encode(batch, spans: indices, into: &out)
            case .zipkinProto: ZipkinProto3.encode(batch, spans: indices, into: &out)
            case .datadogV04:
                DatadogV04.encode(batch, spans: indices, into: &out)
                meta.traceCount = MsgpackArray.split(out[...])?.0 ?? 0
            case .ndjson: break
            }
            work.append((snap.queues[i], Record(bytes: out, spanCount: indices.count, metadata: meta.encoded())))
        }
        let spans = batch.count
        withExtendedLifetime(snap) {
            RoutingConsumer.enqueue(work) { [weak backend] r in
                switch r {
                case .success:
                    backend?.countRerouted(spans)
                    completion(.delivered)
                case .failure(let e):
                    completion(.retryable(e.message, retryAfter: e.retryAfterSeconds.map(Double.init)))
                }
            }
        }
    }

    func shutdown() {}
}
