// Over 500 lines: the two readiness models (Dispatch sources, per-loop epoll) share this file
// behind `usesEpoll` branches; issue 9 puts them behind one small protocol with two implementations.
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
internal import CShims

/// One accepted TCP connection: a non-blocking fd, its serial queue (targeting an event
/// loop), its readiness notifications and the protocol engine it drives.
///
/// Readiness comes in one of two ways (`HTTPServerConfiguration.eventMode`):
/// - `.dispatchSources`: a read and a write DispatchSource of its own, rules below;
/// - `.epollPerLoop`: the fd is registered (once, edge-triggered) in its loop's
///   `EpollPoller`, which calls `pollEvent`; the connection runs on the loop queue itself.
///   Edge triggering: whenever reading stops before EAGAIN (budget, pause, linger) the
///   connection schedules its own next read (`scheduleRead`). Closing is `EPOLL_CTL_DEL`
///   then `close(fd)`, at once, on the loop queue: no DispatchSource watches this fd, so
///   the "close only in the cancel handler" rule has nothing to wait for; the rest of the
///   teardown (dropping the engine, telling the server) runs in a later block, like a
///   cancel handler would.
///
/// Invariants with Dispatch sources (DESIGN.md, "Dispatch sources on Linux"):
/// - both sources are created and activated once, on `queue`, and never re-created (the
///   write source lazily, the first time the socket's send buffer fills);
/// - the write source is resumed only while output is pending;
/// - `close(fd)` happens only in the read source's cancel handler, which (if a write source
///   exists) is triggered from the write source's cancel handler, so both are cancelled
///   before the fd goes away.
final class Connection: ConnectionContext, PollTarget, @unchecked Sendable {
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
    /// This connection's listener honours `Upgrade: h2c`.
    private let allowH2CUpgrade: Bool

    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var timer: DispatchSourceTimer?

    /// `.epollPerLoop` state: the poller (nil in `.dispatchSources` mode), the registration
    /// token, whether a `send` hit EAGAIN (the next EPOLLOUT edge matters), and whether a
    /// read is already scheduled.
    private var poller: EpollPoller?
    private var pollToken: UInt64 = 0
    private var wantWrite = false
    private var readScheduled = false
    /// The poller reported EPOLLRDHUP/HUP/ERR: read until EOF or an error, since a short
    /// read no longer proves there is nothing more to learn.
    private var peerHangup = false
    private var usesEpoll: Bool { config.eventMode == .epollPerLoop }

    private var engine: (any ProtocolEngine)?
    /// Typed view of `engine` while it speaks HTTP/1.1 (phase for timeouts, h2c upgrade).
    private var h1: HTTP1Engine?
    /// Bytes read before the protocol is known (h2c prior-knowledge preface detection).
    private var sniffed: [UInt8] = []

    private enum Phase { case open, lingering, closed }
    private var phase: Phase = .open
    private var readSuspended = false
    /// A `beginTurn` block is queued (the engine yielded after `maxRequestsPerTurn` requests).
    private var turnScheduled = false
    private var writeResumed = false
    private var eofSeen = false
    private var closeWhenFlushed = false
    private var upgradeWhenFlushed = false
    private var inReadHandler = false
    private var isFlushing = false

    private var out: [UInt8] = []
    private var outOffset = 0

    private var lastRead: UInt64
    private var lastWrite: UInt64
    private var phaseStart: UInt64
    private var lastPhase: ReadPhase = .idle
    private var lingerDeadline: UInt64 = 0
    /// Bytes read so far, and the start of the current `minBodyRate` window (time, bytes).
    private var bytesRead: UInt64 = 0
    private var rateWindowStart: UInt64 = 0
    private var rateWindowBytes: UInt64 = 0

    init(fd: Int32, remoteAddress: String, listener: String, loop: EventLoop, queue: DispatchQueue,
         config: HTTPServerConfiguration, handler: any HTTPHandler, server: HTTPServer?,
         bodyBudget: BodyBudget = .unlimited, allowH2CUpgrade: Bool = true) {
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
        let now = monotonicNanos()
        lastRead = now
        lastWrite = now
        phaseStart = now
    }

    /// Creates and activates the sources (or registers with the loop's poller). Call on `queue`.
    func start() {
        _ = QueueToken.of(queue)
        if usesEpoll { return startPolled() }
        let rs = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        rs.setEventHandler { [unowned self] in self.readable() }
        rs.setCancelHandler { [self] in
            Glibc.close(self.fd)
            self.readSource = nil
            self.writeSource = nil
            self.timer = nil
            self.engine = nil
            self.h1 = nil
            self.server?.connectionClosed(self)
        }
        readSource = rs
        rs.activate()

        let t = DispatchSource.makeTimerSource(queue: queue)
        let tick = Self.tickInterval(config)
        t.schedule(deadline: .now() + tick, repeating: tick, leeway: .milliseconds(Int(tick.toMilliseconds / 4 + 1)))
        t.setEventHandler { [unowned self] in self.tick() }
        t.activate()
        timer = t

        if !config.enableH2C { installEngine(http1: true) }
    }

    private func startPolled() {
        do {
            let p = try loop.poller()
            pollToken = try p.add(self, tick: Self.tickInterval(config))
            poller = p
        } catch {
            phase = .closed
            Glibc.close(fd)
            server?.connectionClosed(self)
            return
        }
        if !config.enableH2C { installEngine(http1: true) }
        // Bytes may have arrived before the registration: the edge for them was not seen.
        scheduleRead()
    }

    /// The loop's poller saw readiness (edge-triggered). On `queue`.
    func pollEvent(readable r: Bool, writable w: Bool, hangup: Bool) {
        if hangup { peerHangup = true }
        if w && wantWrite && phase == .open { writable() }
        if r && phase != .closed { readable() }
    }

    /// Runs `readable` in a later block of the queue (edge-triggered mode: no new edge will
    /// come for bytes already waiting).
    private func scheduleRead() {
        guard !readScheduled else { return }
        readScheduled = true
        queue.async { [self] in
            readScheduled = false
            readable()
        }
    }

    static func tickInterval(_ c: HTTPServerConfiguration) -> DispatchTimeInterval {
        var shortest = min(c.idleTimeout, c.headerReadTimeout, c.bodyReadTimeout, c.lingerTimeout)
        if c.minBodyRate > 0 { shortest = min(shortest, c.bodyRateWindow) }
        let seconds = min(1.0, max(0.01, shortest / 4))
        return .milliseconds(Int(seconds * 1000))
    }

    // MARK: ConnectionContext

    func outputAvailable() {
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
            let e = HTTP1Engine(context: self, handler: handler, configuration: config, allowUpgrade: allowH2CUpgrade)
            h1 = e
            return e
        }
        h1 = nil
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

    private func readable() {
        switch phase {
        case .closed: return
        case .lingering: return discardInput()
        case .open: break
        }
        if usesEpoll && (readSuspended || eofSeen) { return } // edges while paused are ignored
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
                lastRead = monotonicNanos()
                bytesRead &+= UInt64(n)
                budget -= n
                disposition = deliver(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if disposition != .open { break readLoop }
                // Edge-triggered TCP: a short read emptied the receive queue, and any byte
                // arriving later raises a new edge — skip the read that would say EAGAIN.
                if usesEpoll && n < buffer.count && !peerHangup {
                    drained = true
                    break readLoop
                }
            }
        }
        inReadHandler = false
        if disposition == .closeNow { return close() }
        flush()
        applyDisposition()
        // Edge-triggered: stopped before EAGAIN and still reading → nobody else will call us.
        if usesEpoll && !drained && phase == .open && !readSuspended && !eofSeen { scheduleRead() }
    }

    private func pauseReading() {
        guard !readSuspended else { return }
        if usesEpoll { readSuspended = true; return } // edges are ignored while paused
        guard let rs = readSource else { return }
        rs.suspend()
        readSuspended = true
    }

    private func resumeReading() {
        guard readSuspended, !eofSeen else { return }
        if usesEpoll {
            readSuspended = false
            scheduleRead() // bytes that arrived while paused gave no new edge
            return
        }
        guard let rs = readSource else { return }
        rs.resume()
        readSuspended = false
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
            resumeReading()
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
        guard let up = h1?.takeUpgrade() else { return close() }
        do {
            engine = try makeEngine(http1: false, upgrade: up)
        } catch {
            return close()
        }
        flush()
        applyDisposition()
    }

    // MARK: writing

    private var hasUnsentOutput: Bool { outOffset < out.count || (engine?.hasPendingOutput ?? false) }

    /// Writes pending output until done or the socket is full (then the write source waits).
    private func flush() {
        guard phase == .open, !isFlushing else { return }
        isFlushing = true
        defer { isFlushing = false }
        while true {
            if outOffset == out.count {
                clearRetainingLittle(&out)
                outOffset = 0
                guard let engine, engine.hasPendingOutput else { break }
                engine.drainOutput(into: &out, limit: 1 << 20)
                if out.isEmpty { break }
            }
            let r: IOResult<Int>
            do {
                r = try out.withUnsafeBytes { p throws(SystemCallError) in
                    try syscall("send") { Glibc.send(fd, p.baseAddress! + outOffset, p.count - outOffset, Int32(MSG_NOSIGNAL)) }
                }
            } catch {
                isFlushing = false
                return close()
            }
            switch r {
            case .wouldBlock:
                armWriteSource()
                return
            case .done(let n):
                outOffset += n
                lastWrite = monotonicNanos()
            }
        }
        wantWrite = false
        if writeResumed { writeSource?.suspend(); writeResumed = false }
    }

    /// The socket is full: wait for it to drain. The write source is created the first time
    /// this happens (most connections never fill their send buffer, and an idle write source
    /// still costs epoll updates), then only resumed and suspended.
    private func armWriteSource() {
        if usesEpoll { wantWrite = true; return } // the next EPOLLOUT edge calls writable()
        if let ws = writeSource {
            if !writeResumed { ws.resume(); writeResumed = true }
            return
        }
        let ws = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        ws.setEventHandler { [unowned self] in self.writable() }
        // Cancel order: write source first, then the read source, whose handler closes the fd.
        ws.setCancelHandler { [self] in self.readSource?.cancel() }
        writeSource = ws
        writeResumed = true
        ws.activate()
    }

    private func writable() {
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
        lingerDeadline = monotonicNanos() + UInt64(config.lingerTimeout * 1e9)
        if usesEpoll {
            readSuspended = false
            scheduleRead()
            return
        }
        if readSuspended { readSource?.resume(); readSuspended = false }
    }

    private func discardInput() {
        let buffer = loop.readBuffer
        var budget = config.readBudget
        while budget > 0 {
            guard let r = try? syscall("read", { Glibc.read(fd, buffer.baseAddress, buffer.count) }) else { return close() }
            switch r {
            case .wouldBlock: return
            case .done(0): return close()
            case .done(let n): budget -= n
            }
        }
        if usesEpoll { scheduleRead() } // budget spent before EAGAIN
    }

    /// Cancels the sources; the fd is closed by the read source's cancel handler.
    func close() {
        guard phase != .closed else { return }
        phase = .closed
        if let poller {
            poller.remove(token: pollToken, fd: fd)
            Glibc.close(fd)
            queue.async { [self] in
                self.poller = nil
                engine = nil
                h1 = nil
                server?.connectionClosed(self)
            }
            return
        }
        timer?.cancel()
        if readSuspended { readSource?.resume(); readSuspended = false }
        if let ws = writeSource {
            if !writeResumed { ws.resume(); writeResumed = true }
            ws.cancel() // its cancel handler cancels the read source
        } else {
            readSource?.cancel()
        }
    }

    // MARK: timers and shutdown

    func tick() {
        let now = monotonicNanos()
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
        let phaseNow: ReadPhase
        if let h1 {
            phaseNow = h1.readPhase
        } else {
            phaseNow = engine.inFlightRequests == 0 && !hasUnsentOutput ? .idle : .busy
        }
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
            } else if config.minBodyRate > 0, let h1 {
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
                        let d = h1.bodyTooSlow()
                        if d == .closeNow { return close() }
                        flush()
                        applyDisposition()
                        return
                    }
                }
            }
        case .busy:
            // A peer that stops taking our output is as idle as one that sends nothing.
            if hasUnsentOutput && now - lastWrite > seconds(config.idleTimeout) { return close() }
        }
        guard let kind else { return }
        let d = engine.timeout(kind)
        if d == .closeNow { return close() }
        flush()
        applyDisposition()
    }

    private func seconds(_ s: Double) -> UInt64 { UInt64(s * 1e9) }

    /// Buffer capacity held by the connection and its engine (tests of buffer reuse). On `queue`.
    var retainedBufferBytes: Int { out.capacity + sniffed.capacity + (h1?.retainedBufferBytes ?? 0) }

    /// Graceful shutdown: the engine stops taking new requests and finishes the current ones.
    func beginShutdown() {
        guard phase == .open else { return }
        guard let engine else { return close() }
        let d = engine.beginShutdown()
        if d == .closeNow { return close() }
        flush()
        applyDisposition()
    }
}

extension DispatchTimeInterval {
    fileprivate var toMilliseconds: Int {
        switch self {
        case .seconds(let s): s * 1000
        case .milliseconds(let m): m
        case .microseconds(let u): u / 1000
        case .nanoseconds(let n): n / 1_000_000
        case .never: 1000
        @unknown default: 1000
        }
    }
}
