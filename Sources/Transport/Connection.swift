import Basics
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
internal import CShims
import TLS

/// One accepted TCP connection: a non-blocking fd, its serial queue (targeting an event
/// loop), its readiness notifications and the protocol engine it drives.
///
/// Readiness comes through a `ConnectionReadiness` (`HTTPServerConfiguration.eventMode`):
/// per-connection Dispatch sources, or the loop's edge-triggered `EpollPoller`. Everything
/// here runs on `queue`; entry points assert it in debug builds.
///
/// Backpressure: the connection stops reading while the engine says so (pipelining and output
/// limits) and while the peer does not take our output — the bytes it has not received (ours
/// plus the kernel's send queue, `SIOCOUTQ`) over `maxOutputBufferBytes` (`outputBacklogged`).
/// Such a connection ends on the idle timeout counted from its last successful write.
final class Connection: ConnectionContext, @unchecked Sendable {
    let fd: Int32
    let queue: DispatchQueue
    let remoteAddress: String
    let listener: String
    private let loop: EventLoop
    private let config: HTTPServerConfiguration
    private let handler: any HTTPHandler
    private weak var server: HTTPServer?
    /// The server's budget for buffered request bodies (`ConnectionContext.bodyBudget`).
    let bodyBudget: BodyBudget
    /// The server's counters (`ConnectionContext.counters`).
    var counters: ServerCounters { server?.counters ?? .detached }
    /// This connection's listener honours `Upgrade: h2c`.
    private let allowH2CUpgrade: Bool
    /// The listener's TLS context at accept time (nil: plain HTTP/h2c).
    private let tls: TLSContext?

    private var readiness: (any ConnectionReadiness)?
    private var engine: (any ProtocolEngine)?
    /// Bytes read before the protocol is known (h2c prior-knowledge preface detection).
    private var sniffed: [UInt8] = []

    private enum Phase { case open, lingering, closed }
    private var phase: Phase = .open
    private var readSuspended = false
    /// A `beginTurn` block is queued (the engine yielded after `maxRequestsPerTurn` requests).
    private var turnScheduled = false
    private var eofSeen = false
    private var closeWhenFlushed = false
    private var upgradeWhenFlushed = false
    private var inReadHandler = false
    private var isFlushing = false

    private var out = ByteQueue(retainedCapacity: HTTP1Engine.retainedBufferLimit)
    /// The peer is not taking our output (see the type's comment).
    private(set) var outputBacklogged = false
    /// Bytes handed to the kernel since its send queue was last measured; the queue is
    /// measured (one `ioctl`) only after `backlogCheckBytes` of them, so a peer that reads
    /// costs nothing per request.
    private var sentSinceQueueCheck = 0

    private var lastRead: UInt64
    private var lastWrite: UInt64
    private var phaseStart: UInt64
    private var lastPhase: ReadPhase = .idle
    private var lingerDeadline: UInt64 = 0
    /// Bytes read and dropped while lingering (bounded by `lingerMaxBytes`).
    private var lingerDiscarded = 0
    /// Bytes read so far, and the start of the current `minBodyRate` window (time, bytes).
    private var bytesRead: UInt64 = 0
    private var rateWindowStart: UInt64 = 0
    private var rateWindowBytes: UInt64 = 0

    init(fd: Int32, remoteAddress: String, listener: String, loop: EventLoop, queue: DispatchQueue,
         config: HTTPServerConfiguration, handler: any HTTPHandler, server: HTTPServer?,
         bodyBudget: BodyBudget = .unlimited, allowH2CUpgrade: Bool = true, tls: TLSContext? = nil) {
        self.tls = tls
        self.fd = fd
        self.remoteAddress = remoteAddress
        self.listener = listener
        self.loop = loop
        self.queue = queue
        self.config = config
        self.handler = handler
        self.server = server
        self.bodyBudget = bodyBudget
        self.allowH2CUpgrade = allowH2CUpgrade
        let now = Clock.monotonicNanos()
        lastRead = now
        lastWrite = now
        phaseStart = now
    }

    /// Starts readiness notifications (sources, or the loop's poller). Call on `queue`.
    func start() {
        assertOnQueue(queue)
        _ = QueueToken.of(queue)
        let r: any ConnectionReadiness = switch config.eventMode {
        case .dispatchSources: DispatchSourceReadiness(connection: self)
        case .epollPerLoop: EpollReadiness(connection: self, loop: loop)
        }
        readiness = r
        if let tls {
            // TLS first; the HTTP engine is chosen by ALPN once the handshake is done.
            engine = try? TLSProtocolEngine(context: self, tls: tls, handler: handler, configuration: config)
        } else if !config.enableH2C {
            installEngine(http1: true)
        }
        guard (tls == nil || engine != nil), r.start() else {
            phase = .closed
            readiness = nil
            Glibc.close(fd)
            engine = nil
            server?.connectionClosed(self)
            return
        }
    }

    /// The readiness model's last word: the fd is closed; drop everything.
    func didClose() {
        assertOnQueue(queue)
        readiness = nil
        engine = nil
        server?.connectionClosed(self)
    }

    var tickInterval: DispatchTimeInterval { Self.tickInterval(config) }

    static func tickInterval(_ c: HTTPServerConfiguration) -> DispatchTimeInterval {
        var shortest = min(c.idleTimeout, c.headerReadTimeout, c.bodyReadTimeout, c.lingerTimeout)
        if c.minBodyRate > 0 { shortest = min(shortest, c.bodyRateWindow) }
        let seconds = min(1.0, max(0.01, shortest / 4))
        return .milliseconds(Int(seconds * 1000))
    }

    // MARK: ConnectionContext

    func outputAvailable() {
        assertOnQueue(queue)
        guard phase == .open else { return }
        if inReadHandler || isFlushing { return } // flushed when they finish
        flush()
        applyDisposition()
    }

    // MARK: engine selection

    private static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// The one place that creates engines, so the HTTP/2 hand-off is a single line to change.
    private func makeEngine(http1: Bool, upgrade: H2CUpgrade? = nil) throws -> any ProtocolEngine {
        if http1 {
            return HTTP1Engine(context: self, handler: handler, configuration: config, allowUpgrade: allowH2CUpgrade)
        }
        if let upgrade {
            return try HTTP2ServerEngine(context: self, handler: handler, configuration: config.resolvedHTTP2, upgrade: upgrade)
        }
        return HTTP2ServerEngine(context: self, handler: handler, configuration: config.resolvedHTTP2)
    }

    private func installEngine(http1: Bool) {
        engine = try? makeEngine(http1: http1)
    }

    /// Feeds bytes to the engine, choosing it first if needed (the prior-knowledge preface is
    /// 24 bytes and may arrive in pieces).
    private func deliver(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition {
        if let engine { return engine.receive(bytes) }
        let pre = Self.preface
        let have = sniffed.count
        let take = min(bytes.count, pre.count - have)
        var matches = true
        for k in 0..<take where bytes[k] != pre[have + k] { matches = false; break }
        if matches && have + take < pre.count {
            sniffed.append(contentsOf: bytes)
            return .open
        }
        installEngine(http1: !matches)
        guard let engine else { return .closeNow }
        if !sniffed.isEmpty {
            let first = sniffed
            sniffed = []
            let d = first.withUnsafeBytes { engine.receive($0) }
            if d == .closeNow { return d }
        }
        return engine.receive(bytes)
    }

    // MARK: reading

    /// The socket is readable (a readiness event or a scheduled read).
    func readable() {
        assertOnQueue(queue)
        switch phase {
        case .closed: return
        case .lingering: return discardInput()
        case .open: break
        }
        guard !readSuspended, !eofSeen, let readiness else { return }
        // A readiness event is a new turn: the engine may start `maxRequestsPerTurn` requests.
        if let engine, engine.beginTurn() == .closeNow { return close() }
        inReadHandler = true
        var drained = false
        var budget = config.readBudget
        var disposition = EngineDisposition.open
        let buffer = loop.readBuffer
        readLoop: while budget > 0 {
            let r: IOResult<Int>
            do {
                r = try syscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
            } catch {
                inReadHandler = false
                return close()
            }
            switch r {
            case .wouldBlock:
                drained = true
                break readLoop
            case .done(0):
                drained = true
                eofSeen = true
                pauseReading()
                disposition = engine?.peerClosed() ?? .closeNow
                break readLoop
            case .done(let n):
                lastRead = Clock.monotonicNanos()
                bytesRead &+= UInt64(n)
                budget -= n
                disposition = deliver(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if disposition != .open { break readLoop }
                // Edge-triggered TCP: a short read emptied the receive queue, and any byte
                // arriving later raises a new edge — skip the read that would say EAGAIN.
                if n < buffer.count && readiness.shortReadDrains {
                    drained = true
                    break readLoop
                }
            }
        }
        inReadHandler = false
        if disposition == .closeNow { return close() }
        flush()
        applyDisposition()
        // Stopped before EAGAIN and still reading → make sure reading goes on.
        if !drained && phase == .open && !readSuspended && !eofSeen { readiness.readStoppedEarly() }
    }

    private func pauseReading() {
        guard !readSuspended else { return }
        readSuspended = true
        readiness?.suspendReads()
    }

    private func resumeReading() {
        guard readSuspended, !eofSeen else { return }
        readSuspended = false
        readiness?.resumeReads()
    }

    /// Acts on what the engine wants now (after reading, writing or a late response).
    private func applyDisposition() {
        guard phase == .open else { return }
        guard let engine else {
            if eofSeen { close() }
            return
        }
        // The engine stopped after `maxRequestsPerTurn` requests: go on in a later block, after
        // the loop's other connections had their turn.
        if engine.wantsNewTurn && !turnScheduled {
            turnScheduled = true
            queue.async { [self] in
                turnScheduled = false
                guard phase == .open, let engine = self.engine else { return }
                if engine.beginTurn() == .closeNow { return close() }
                flush()
                applyDisposition()
            }
        }
        switch engine.disposition {
        case .open:
            if outputBacklogged { pauseReading() } else { resumeReading() }
        case .pauseReading:
            pauseReading()
        case .closeAfterFlush:
            pauseReading()
            closeWhenFlushed = true
            if !hasUnsentOutput { finishAndLinger() }
        case .closeNow:
            close()
        case .upgradeToHTTP2:
            pauseReading()
            upgradeWhenFlushed = true
            if !hasUnsentOutput { performUpgrade() }
        }
    }

    private func performUpgrade() {
        upgradeWhenFlushed = false
        guard let up = engine?.takeUpgrade() else { return close() }
        do {
            engine = try makeEngine(http1: false, upgrade: up)
        } catch {
            return close()
        }
        flush()
        applyDisposition()
    }

    // MARK: writing

    private var hasUnsentOutput: Bool { !out.isEmpty || (engine?.hasPendingOutput ?? false) }

    /// Writes pending output until done or the socket is full (then readiness calls `writable`).
    private func flush() {
        guard phase == .open, !isFlushing else { return }
        isFlushing = true
        defer { isFlushing = false }
        while true {
            let allSent: Bool
            do {
                allSent = try out.send(to: fd, refill: { dest in
                    engine?.drainOutput(into: &dest, limit: 1 << 20)
                }, sent: { n in
                    lastWrite = Clock.monotonicNanos()
                    sentSinceQueueCheck &+= n
                })
            } catch {
                isFlushing = false
                return close()
            }
            if allSent { readiness?.writesDone() } else { readiness?.waitForWritable() }
            guard !allSent || outputBacklogged || sentSinceQueueCheck >= backlogCheckBytes else { return }
            // The backlog cleared and the engine parsed again: send what that produced.
            guard measureBacklog(), allSent, engine?.hasPendingOutput == true else { return }
        }
    }

    /// How often (in bytes sent) the kernel's send queue is measured.
    private var backlogCheckBytes: Int { max(1, config.maxOutputBufferBytes / 4) }

    /// Measures what the peer has not received yet (our buffer and the kernel's send queue)
    /// and updates `outputBacklogged`, telling the engine when it changes. Returns true when
    /// the backlog just cleared (the engine may have parsed and answered more).
    private func measureBacklog() -> Bool {
        var kernel: Int32 = 0
        if ioctl(fd, UInt(TIOCOUTQ), &kernel) != 0 { kernel = 0 }
        let queued = Int(kernel) + out.count
        let was = outputBacklogged
        outputBacklogged = queued > config.maxOutputBufferBytes
        sentSinceQueueCheck = outputBacklogged ? 0 : queued
        guard was != outputBacklogged, phase == .open, let engine else { return false }
        _ = engine.outputBacklogChanged(outputBacklogged) // its disposition is acted on by the caller
        return was
    }

    /// The socket drained after a `send` hit EAGAIN.
    func writable() {
        assertOnQueue(queue)
        guard phase == .open else { return }
        flush()
        guard phase == .open, !hasUnsentOutput else { return }
        if closeWhenFlushed { return finishAndLinger() }
        if upgradeWhenFlushed { return performUpgrade() }
        applyDisposition()
    }

    // MARK: closing

    /// All output is sent and the engine wants to close: half-close our side, then read and
    /// drop what the peer still sends (up to `lingerTimeout`) so it sees our last response
    /// rather than a reset caused by unread data.
    private func finishAndLinger() {
        guard phase == .open else { return }
        if eofSeen { return close() }
        phase = .lingering
        Glibc.shutdown(fd, Int32(SHUT_WR))
        lingerDeadline = Clock.monotonicNanos() + UInt64(config.lingerTimeout * 1e9)
        readSuspended = false
        readiness?.resumeReads()
    }

    private func discardInput() {
        let buffer = loop.readBuffer
        var budget = config.readBudget
        while budget > 0 {
            guard let r = try? syscall("read", { Glibc.read(fd, buffer.baseAddress, buffer.count) }) else { return close() }
            switch r {
            case .wouldBlock: return
            case .done(0): return close()
            case .done(let n):
                budget -= n
                lingerDiscarded += n
                if lingerDiscarded > config.lingerMaxBytes { return close() }
            }
        }
        readiness?.readStoppedEarly() // budget spent before EAGAIN
    }

    /// Stops the readiness notifications and closes the fd (see `ConnectionReadiness.close`).
    func close() {
        assertOnQueue(queue)
        guard phase != .closed else { return }
        phase = .closed
        readiness?.close()
    }

    // MARK: timers and shutdown

    func tick() {
        assertOnQueue(queue)
        var now = Clock.monotonicNanos()
        switch phase {
        case .closed: return
        case .lingering:
            if now >= lingerDeadline { close() }
            return
        case .open: break
        }
        guard let engine else {
            if now - lastRead > seconds(config.headerReadTimeout) { close() }
            return
        }
        // Not reading (backpressure) and not writing: a peer that reset the connection meanwhile
        // is seen by no event, so ask the socket.
        if readSuspended || outputBacklogged, Socket.pendingError(fd) != 0 { return close() }
        // The peer may have taken output without our writing anything since (no EAGAIN, so
        // no write event): look again.
        if outputBacklogged && measureBacklog() {
            flush()
            applyDisposition()
            guard phase == .open else { return }
            now = Clock.monotonicNanos() // the flush may have written after `now`
        }
        let phaseNow = engine.readPhase ?? (engine.inFlightRequests == 0 && !hasUnsentOutput ? .idle : .busy)
        if phaseNow != lastPhase {
            lastPhase = phaseNow
            phaseStart = now
            rateWindowStart = now
            rateWindowBytes = bytesRead
        }
        var kind: TimeoutKind?
        switch phaseNow {
        case .idle:
            if now - max(max(lastRead, lastWrite), phaseStart) > seconds(config.idleTimeout) { kind = .idle }
        case .head:
            if now - phaseStart > seconds(config.headerReadTimeout) { kind = .headerRead }
        case .body:
            if now - lastRead > seconds(config.bodyReadTimeout) {
                kind = .bodyRead
            } else if config.minBodyRate > 0 {
                // Average rate over each window: a trickle of bytes does not keep a body (and
                // its share of the body budget) alive the way a plain between-reads timeout would.
                if readSuspended {
                    rateWindowStart = now // we are not reading: the peer is not to blame
                    rateWindowBytes = bytesRead
                } else if now - rateWindowStart >= seconds(config.bodyRateWindow) {
                    let elapsed = Double(now - rateWindowStart) / 1e9
                    let got = Double(bytesRead &- rateWindowBytes)
                    rateWindowStart = now
                    rateWindowBytes = bytesRead
                    if got < Double(config.minBodyRate) * elapsed {
                        let d = engine.bodyTooSlow()
                        if d == .closeNow { return close() }
                        flush()
                        applyDisposition()
                        return
                    }
                }
            }
        case .busy:
            // A peer that stops taking our output is as idle as one that sends nothing.
            if (hasUnsentOutput || outputBacklogged) && now - lastWrite > seconds(config.idleTimeout) { return close() }
        }
        guard let kind else { return }
        let d = engine.timeout(kind)
        if d == .closeNow { return close() }
        flush()
        applyDisposition()
    }

    private func seconds(_ s: Double) -> UInt64 { UInt64(s * 1e9) }

    /// Buffer capacity held by the connection and its engine (tests of buffer reuse). On `queue`.
    var retainedBufferBytes: Int { out.capacity + sniffed.capacity + (engine?.retainedBufferBytes ?? 0) }

    /// Graceful shutdown: the engine stops taking new requests and finishes the current ones.
    func beginShutdown() {
        assertOnQueue(queue)
        guard phase == .open else { return }
        guard let engine else { return close() }
        let d = engine.beginShutdown()
        if d == .closeNow { return close() }
        flush()
        applyDisposition()
    }
}
