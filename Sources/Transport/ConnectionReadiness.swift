import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// How a server `Connection` learns that its socket is ready, and how it stops and resumes
/// listening (`HTTPServerConfiguration.eventMode`). Both models are live: `.epollPerLoop` is
/// the default (the relay), `.dispatchSources` stays selectable and is exercised by the socket
/// tests and Benchmarks/transport-echo. Every call happens on the connection's queue.
protocol ConnectionReadiness: AnyObject {
    /// Starts delivering readiness and ticks to the connection. False: it could not (the
    /// connection then closes the fd itself).
    func start() -> Bool
    /// A short read proves the receive queue empty (edge-triggered): the next bytes raise a
    /// new event, so reading stops without waiting for EAGAIN.
    var shortReadDrains: Bool { get }
    /// Reading stopped before EAGAIN (budget spent, or input was pending while paused):
    /// make sure `readable` runs again.
    func readStoppedEarly()
    func suspendReads()
    func resumeReads()
    /// A `send` hit EAGAIN: call `writable` once the socket drains.
    func waitForWritable()
    /// Every byte is sent: no write readiness wanted.
    func writesDone()
    /// Stops watching and closes the fd; `Connection.didClose` runs once afterwards, in a
    /// later block of the queue.
    func close()
}

/// `.dispatchSources`: one read DispatchSource and one timer per connection, plus a write
/// source created the first time the send buffer fills. Invariants (DESIGN.md, "Dispatch
/// sources on Linux"):
/// - the sources are created and activated once, on the queue, and never re-created;
/// - the write source is resumed only while output is pending; suspend/resume stay balanced;
/// - `close(fd)` happens only in the read source's cancel handler, which (if a write source
///   exists) is triggered from the write source's cancel handler, so both are cancelled
///   before the fd goes away.
final class DispatchSourceReadiness: ConnectionReadiness, @unchecked Sendable {
    private unowned let connection: Connection
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var timer: DispatchSourceTimer?
    private var readsSuspended = false
    private var writeResumed = false

    init(connection: Connection) { self.connection = connection }

    func start() -> Bool {
        let c = connection
        let rs = DispatchSource.makeReadSource(fileDescriptor: c.fd, queue: c.queue)
        rs.setEventHandler { [unowned c] in c.readable() }
        rs.setCancelHandler { [self, c] in
            Glibc.close(c.fd)
            readSource = nil
            writeSource = nil
            timer = nil
            c.didClose()
        }
        readSource = rs
        rs.activate()

        let t = DispatchSource.makeTimerSource(queue: c.queue)
        let tick = c.tickInterval
        t.schedule(deadline: .now() + tick, repeating: tick, leeway: tick.quarter)
        t.setEventHandler { [unowned c] in c.tick() }
        t.activate()
        timer = t
        return true
    }

    var shortReadDrains: Bool { false }

    func readStoppedEarly() {} // level-triggered: the source fires again

    func suspendReads() {
        guard !readsSuspended, let rs = readSource else { return }
        rs.suspend()
        readsSuspended = true
    }

    func resumeReads() {
        guard readsSuspended, let rs = readSource else { return }
        rs.resume()
        readsSuspended = false
    }

    /// The write source is created the first time the socket fills (most connections never
    /// fill their send buffer, and an idle write source still costs epoll updates), then only
    /// resumed and suspended.
    func waitForWritable() {
        if let ws = writeSource {
            if !writeResumed { ws.resume(); writeResumed = true }
            return
        }
        let c = connection
        let ws = DispatchSource.makeWriteSource(fileDescriptor: c.fd, queue: c.queue)
        ws.setEventHandler { [unowned c] in c.writable() }
        // Cancel order: write source first, then the read source, whose handler closes the fd.
        ws.setCancelHandler { [self] in readSource?.cancel() }
        writeSource = ws
        writeResumed = true
        ws.activate()
    }

    func writesDone() {
        if writeResumed { writeSource?.suspend(); writeResumed = false }
    }

    func close() {
        timer?.cancel()
        resumeReads()
        if let ws = writeSource {
            if !writeResumed { ws.resume(); writeResumed = true }
            ws.cancel() // its cancel handler cancels the read source
        } else {
            readSource?.cancel()
        }
    }
}

/// `.epollPerLoop`: the fd is registered once, edge-triggered, in the loop's `EpollPoller`,
/// which calls `pollEvent` and `tick` on the loop queue. Whenever reading stops before EAGAIN
/// (budget, pause, linger) the next read is scheduled here, since no new edge will come for
/// bytes already waiting. Closing is `EPOLL_CTL_DEL` then `close(fd)`, at once: no
/// DispatchSource watches the fd, so the "close only in the cancel handler" rule has nothing
/// to wait for; `didClose` runs in a later block, like a cancel handler would.
final class EpollReadiness: ConnectionReadiness, PollTarget, @unchecked Sendable {
    /// Strong: the poller's table and scheduled blocks reach the connection through here;
    /// the connection drops its readiness in `didClose`, which ends the cycle.
    private let connection: Connection
    private let loop: EventLoop
    private var poller: EpollPoller?
    private var pollToken: UInt64 = 0
    /// A `send` hit EAGAIN: the next EPOLLOUT edge matters.
    private var wantWrite = false
    private var readScheduled = false
    private var readsSuspended = false
    /// The poller reported EPOLLRDHUP/HUP/ERR: read until EOF or an error, since a short
    /// read no longer proves there is nothing more to learn.
    private var peerHangup = false

    init(connection: Connection, loop: EventLoop) {
        self.connection = connection
        self.loop = loop
    }

    var fd: Int32 { connection.fd }

    func start() -> Bool {
        do {
            let p = try loop.poller()
            pollToken = try p.add(self, tick: connection.tickInterval)
            poller = p
        } catch {
            return false
        }
        // Bytes may have arrived before the registration: the edge for them was not seen.
        scheduleRead()
        return true
    }

    // MARK: PollTarget

    func pollEvent(readable r: Bool, writable w: Bool, hangup: Bool) {
        if hangup { peerHangup = true }
        if w && wantWrite { connection.writable() }
        if r && !readsSuspended { connection.readable() } // edges while paused are ignored
    }

    func tick() { connection.tick() }

    // MARK: ConnectionReadiness

    var shortReadDrains: Bool { !peerHangup }

    func readStoppedEarly() { scheduleRead() }

    func suspendReads() { readsSuspended = true }

    func resumeReads() {
        guard readsSuspended else { return }
        readsSuspended = false
        scheduleRead() // bytes that arrived while paused gave no new edge
    }

    func waitForWritable() { wantWrite = true }

    func writesDone() { wantWrite = false }

    func close() {
        if let poller {
            poller.remove(token: pollToken, fd: connection.fd)
            self.poller = nil
        }
        Glibc.close(connection.fd)
        connection.queue.async { [connection] in connection.didClose() }
    }

    /// Runs `readable` in a later block of the queue.
    private func scheduleRead() {
        guard !readScheduled else { return }
        readScheduled = true
        connection.queue.async { [self] in
            readScheduled = false
            if !readsSuspended { connection.readable() }
        }
    }
}
