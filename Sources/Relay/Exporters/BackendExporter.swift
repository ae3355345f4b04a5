import Basics
import Buffering
import Dispatch
import Logging
import Routing
import Transport
#if canImport(Glibc)
import Glibc
#endif

/// Drains one backend's `BackendQueue`: takes records, joins them into batches (by spans,
/// bytes and time), sends up to `concurrency` batches at once, acknowledges what the backend
/// took, requeues what may succeed later (exponential backoff with jitter, `Retry-After`
/// honoured) and drops what never will. After `downAfter` consecutive failures the backend is
/// marked down — its queue spills to disk — and single probe requests test it until one
/// succeeds. Each backend has its own exporter, queue and connections, so one slow or dead
/// backend never slows another.
///
/// All state is confined to `queue` (a serial queue of its own); the backend queue's handler
/// and the sender's completions hop onto it.
final class BackendExporter: @unchecked Sendable {
    let name: String
    let backendQueue: BackendQueue
    let stats: BackendStats
    /// Replaced by a reload that changes the backend's URL or export options (on `queue`).
    private var sender: any PayloadSender
    private var options: ExportOptions
    private let queue: DispatchQueue
    private let logger: Logger
    /// Lines that can repeat per batch or per record: one a minute per kind, with the count.
    private let limited: RateLimitedLogger

    // MARK: state on `queue`
    private var inFlight = 0
    /// Batches complete and waiting for a send slot.
    private var ready: [[Delivery]] = []
    /// The batch being filled.
    private var acc: [Delivery] = []
    private var accSpans = 0
    private var accBytes = 0
    private var accMeta: ArraySlice<UInt8> = []
    private var accSince: UInt64 = 0
    private var waiting = false
    private var timerAt: UInt64 = .max
    private var failures = 0
    private var down = false
    private var backoffUntil: UInt64 = 0
    private var flushing = false
    private var stopped = false
    /// Requests in flight per sender; senders replaced by a reload wait in `retiredSenders`
    /// until their last request is answered, then are shut down.
    private var inFlightBySender: [ObjectIdentifier: Int] = [:]
    private var retiredSenders: [ObjectIdentifier: any PayloadSender] = [:]

    init(name: String, backendQueue: BackendQueue, sender: any PayloadSender, options: ExportOptions,
         stats: BackendStats, logger: Logger) {
        self.name = name
        self.backendQueue = backendQueue
        self.sender = sender
        self.options = options
        self.stats = stats
        var logger = logger
        logger[metadataKey: "backend"] = .string(name)
        self.logger = logger
        self.limited = RateLimitedLogger(logger: logger)
        self.queue = DispatchQueue(label: "tracerelay.export.\(name)")
    }

    func start() { queue.async { self.pump() } }

    // MARK: the loop

    private var batchDelayNanos: UInt64 { UInt64(max(0, options.batchDelayMillis)) * 1_000_000 }

    /// Sends what can be sent now; arranges to be called again when that changes.
    private func pump() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !stopped else { return }
        let now = Clock.monotonicNanos()
        if backoffUntil > now {
            arm(at: backoffUntil)
            return
        }
        let limit = down ? 1 : max(1, options.concurrency)
        while inFlight < limit {
            if let batch = takeBatch(now: now) {
                send(batch)
                continue
            }
            let got = backendQueue.next(maxBytes: max(1, options.batchBytes - accBytes))
            if got.isEmpty {
                if !acc.isEmpty { arm(at: accSince &+ batchDelayNanos) }
                if !waiting {
                    waiting = true
                    backendQueue.next(maxBytes: options.batchBytes, on: queue) { [weak self] deliveries in
                        guard let self else { return }
                        self.waiting = false
                        self.add(deliveries)
                        self.pump()
                    }
                }
                return
            }
            add(got)
        }
    }

    /// A batch to send now: a complete one, or the one being filled once it is old enough.
    private func takeBatch(now: UInt64) -> [Delivery]? {
        if !ready.isEmpty { return ready.removeFirst() }
        if !acc.isEmpty && (flushing || now >= accSince &+ batchDelayNanos) { return closeAcc() }
        return nil
    }

    private func closeAcc() -> [Delivery] {
        let b = acc
        acc = []
        accSpans = 0
        accBytes = 0
        return b
    }

    /// Adds records to the batch being filled; a record of another format or header group
    /// closes the batch first, and a full batch moves to `ready`.
    private func add(_ deliveries: [Delivery]) {
        guard !stopped else {
            for d in deliveries { backendQueue.nack(d) }
            return
        }
        for d in deliveries {
            guard RecordMeta(d.record.metadata) != nil else {
                // Written by a version that encoded differently: it cannot be sent as it is.
                backendQueue.ack(d)
                stats.update { $0.droppedSpans += d.record.spanCount; $0.lastError = "undecodable queued record dropped" }
                limited.log(.warning, key: "undecodable", "dropping a queued record this version cannot decode", metadata: ["spans": "\(d.record.spanCount)"])
                continue
            }
            if !acc.isEmpty && d.record.metadata != accMeta { ready.append(closeAcc()) }
            if acc.isEmpty {
                accSince = Clock.monotonicNanos()
                accMeta = d.record.metadata
            }
            acc.append(d)
            accSpans += d.record.spanCount
            accBytes += d.record.bytes.count
            if accSpans >= options.batchSpans || accBytes >= options.batchBytes { ready.append(closeAcc()) }
        }
    }

    private func arm(at deadline: UInt64) {
        guard deadline < timerAt else { return }
        timerAt = deadline
        let now = Clock.monotonicNanos()
        let delay = deadline > now ? deadline - now : 0
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(min(delay, UInt64(Int.max))))) { [weak self] in
            guard let self else { return }
            if self.timerAt == deadline { self.timerAt = .max }
            self.pump()
        }
    }

    // MARK: sending

    private func send(_ batch: [Delivery]) {
        guard let meta = RecordMeta(batch[0].record.metadata) else { return }
        inFlight += 1
        let payload = Payload.join(batch.map(\.record), meta: meta)
        let started = Clock.monotonicNanos()
        let id = ObjectIdentifier(sender as AnyObject)
        inFlightBySender[id, default: 0] += 1
        sender.send(payload) { [weak self] outcome in
            guard let self else { return }
            self.queue.async {
                self.senderAnswered(id)
                self.finished(batch, payload: payload, outcome: outcome, started: started)
            }
        }
    }

    private func finished(_ batch: [Delivery], payload: Payload, outcome: SendOutcome, started: UInt64) {
        dispatchPrecondition(condition: .onQueue(queue))
        inFlight -= 1
        let spans = payload.spanCount
        switch outcome {
        case .delivered:
            for d in batch { backendQueue.ack(d) }
            let latency = Double(Clock.monotonicNanos() &- started) / 1e9
            stats.recordLatency(nanos: Clock.monotonicNanos() &- started)
            stats.update {
                $0.sentSpans += spans
                $0.sentRequests += 1
                $0.sentBytes += payload.body.count
                $0.lastLatencySeconds = latency
                $0.up = true
            }
            failures = 0
            if down {
                down = false
                backendQueue.markUp()
                logger.notice("backend is up again; replaying what was queued", metadata: ["target": "\(sender.target)"])
            }
        case .permanent(let reason):
            for d in batch { backendQueue.ack(d) }
            stats.update { $0.droppedSpans += spans; $0.failedRequests += 1; $0.lastError = reason }
            // A permanent answer repeats for every batch: one line a minute, with the count.
            limited.log(.error, key: "permanent", "backend refused spans for good; dropped", metadata: [
                "target": "\(sender.target)", "spans": "\(spans)", "answer": "\(reason)",
            ])
            failures = 0
        case .retryable(let reason, let retryAfter):
            retry(batch, spans: spans, reason: reason, retryAfter: retryAfter)
        case .unauthorized(let status, let reason):
            // Every batch gets the same answer until the token is fixed: one line a minute.
            limited.log(.error, key: "unauthorized", "backend refused our credentials (HTTP \(status)); spans are kept and retried — "
                        + "check conf.auth (its token file) against the tokens the backend accepts, then reload", metadata: [
                "target": "\(sender.target)", "status": "\(status)", "spans": "\(spans)", "answer": "\(reason)",
            ])
            retry(batch, spans: spans, reason: reason, retryAfter: nil)
        }
        pump()
    }

    /// Puts a batch back in the queue (delivered again before anything newer), counts the
    /// failure and backs off; marks the backend down after `downAfter` failures in a row.
    private func retry(_ batch: [Delivery], spans: Int, reason: String, retryAfter: Double?) {
        for d in batch.reversed() { backendQueue.nack(d) }
        failures += 1
        stats.update { $0.failedRequests += 1; $0.retriedSpans += spans; $0.lastError = reason }
        guard !stopped else { return }
        let delay = retryAfter.map { min($0, options.maxBackoffSeconds * 4) } ?? backoff(failures)
        backoffUntil = Clock.monotonicNanos() &+ UInt64(delay * 1e9)
        if failures >= options.downAfter && !down {
            down = true
            backendQueue.markDown()
            stats.update { $0.up = false }
            logger.warning("backend is down; its queue spills to disk and one probe request at a time tests it",
                           metadata: ["target": "\(sender.target)", "error": "\(reason)", "failures": "\(failures)"])
        } else if failures == 1 {
            // Once per failure streak; a flapping backend starts a streak per batch.
            limited.log(.info, key: "retrying", "send failed; retrying", metadata: ["target": "\(sender.target)", "error": "\(reason)"])
        }
    }

    /// 100 ms × 2^(n−1), capped, with ±50 % jitter so relays do not retry in step.
    private func backoff(_ n: Int) -> Double {
        let base = min(options.maxBackoffSeconds, 0.1 * Double(1 << min(20, max(0, n - 1))))
        return base * Double.random(in: 0.5...1.0)
    }

    // MARK: shutdown

    /// Sends what is queued without waiting for batches to fill, until the queue is empty, the
    /// backend is down, or `deadline` (monotonic ns) passes; then calls `completion`.
    /// - Parameter evenWhenDown: keep trying a backend that is down (a backend removed by a
    ///   reload drains until empty or `deadline`; shutdown does not wait for a dead backend).
    func flush(until deadline: UInt64, evenWhenDown: Bool = false, completion: @escaping @Sendable () -> Void) {
        queue.async {
            self.flushing = true
            self.pump()
            self.checkFlushed(deadline: deadline, evenWhenDown: evenWhenDown, completion: completion)
        }
    }

    private func checkFlushed(deadline: UInt64, evenWhenDown: Bool, completion: @escaping @Sendable () -> Void) {
        let empty = inFlight == 0 && acc.isEmpty && ready.isEmpty && backendQueue.statistics().records == 0
        if empty || (down && !evenWhenDown) || Clock.monotonicNanos() >= deadline || stopped {
            completion()
            return
        }
        queue.asyncAfter(deadline: .now() + .milliseconds(20)) {
            self.checkFlushed(deadline: deadline, evenWhenDown: evenWhenDown, completion: completion)
        }
    }

    // MARK: reload

    /// New requests go through `newSender` with `newOptions` (a reload changed the backend's
    /// URL or export settings); what is queued or retried is sent there too. Requests in flight
    /// finish on the old sender, which is shut down after its last answer.
    func replace(sender newSender: any PayloadSender, options newOptions: ExportOptions) {
        queue.async {
            let old = self.sender
            self.sender = newSender
            self.options = newOptions
            // The old target's failures say nothing about the new one: try it now.
            self.failures = 0
            self.backoffUntil = 0
            self.retire(old)
            self.pump()
        }
    }

    /// Tries again now instead of after the backoff: a reload changed the backend's token.
    func retryNow() {
        queue.async {
            self.backoffUntil = 0
            self.pump()
        }
    }

    /// Back to filling batches after a drain that a reload called off (the backend was configured again).
    func resumeBatching() { queue.async { self.flushing = false } }

    private func retire(_ old: any PayloadSender) {
        let id = ObjectIdentifier(old as AnyObject)
        if inFlightBySender[id, default: 0] == 0 {
            DispatchQueue.global().async { old.shutdown() }
        } else {
            retiredSenders[id] = old
        }
    }

    private func senderAnswered(_ id: ObjectIdentifier) {
        let left = inFlightBySender[id, default: 1] - 1
        inFlightBySender[id] = left == 0 ? nil : left
        if left == 0, let old = retiredSenders.removeValue(forKey: id) {
            DispatchQueue.global().async { old.shutdown() }
        }
    }

    /// Stops sending, fails what is in flight and closes the queue: what was not delivered
    /// (in memory, in flight, being batched) is written to the spill directory and replayed by
    /// the next start. Blocks until done.
    func stop() {
        let senders = queue.sync {
            stopped = true
            return [sender] + Array(retiredSenders.values)
        }
        for s in senders { s.shutdown() }
        backendQueue.shutdown()
    }
}

