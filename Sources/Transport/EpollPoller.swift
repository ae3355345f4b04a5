import Dispatch
#if canImport(Glibc)
import Glibc
#endif
internal import CShims

/// The per-loop readiness multiplexer of `HTTPEventMode.epollPerLoop`: one epoll instance,
/// a table of the loop's connections (the epoll `data` of a registration is a slot index plus
/// a generation), ONE read DispatchSource on the epoll fd and ONE repeating timer that ticks
/// every connection's timeouts.
///
/// Connections register their fd once, edge-triggered for input, output and peer half-close,
/// and never modify the registration: EPOLLOUT only produces an edge after a `send` hit
/// EAGAIN (the kernel wakes writers only then), so "write interest while output is pending"
/// is a flag in the connection, not a syscall. Edge triggering means a connection that stops
/// reading before EAGAIN (budget, pause) must schedule its own next read.
///
/// For Dispatch the epoll fd is level-triggered: while any registration is ready the source
/// fires again, so the handler may stop after a bounded batch.
///
/// Everything here runs on `queue` (the loop's serial queue; asserted in debug builds);
/// created lazily by the first connection of the loop. Server connections (`Connection`) and outbound client connections
/// (`ClientConnection`) share it through `PollTarget`.
final class EpollPoller: @unchecked Sendable {
    let fd: Int32
    private let queue: DispatchQueue
    private var source: DispatchSourceRead?
    private var timer: DispatchSourceTimer?
    private var slots: [(any PollTarget)?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private let datas: UnsafeMutablePointer<UInt64>
    private let events: UnsafeMutablePointer<UInt32>

    /// Events taken per `epoll_wait`, and `epoll_wait` calls per Dispatch event.
    static let batch = 64
    static let rounds = 4

    /// Live registrations (for tests).
    private(set) var registered = 0
    /// Period of the tick timer: the shortest any registration asked for.
    private var tickNanos: UInt64 = .max

    init(queue: DispatchQueue) throws(SystemCallError) {
        self.queue = queue
        fd = try syscallBlocking("epoll_create1") { tr_epoll_create() }
        datas = .allocate(capacity: Self.batch)
        events = .allocate(capacity: Self.batch)
    }

    deinit {
        datas.deallocate()
        events.deallocate()
    }

    /// Starts the epoll source and the tick timer. Call once, on `queue`.
    private func activate(tick: DispatchTimeInterval) {
        assertOnQueue(queue)
        let s = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        s.setEventHandler { [weak self] in self?.drain() }
        let epfd = fd
        s.setCancelHandler { Glibc.close(epfd) }
        source = s
        s.activate()

        let t = DispatchSource.makeTimerSource(queue: queue)
        tickNanos = tick.nanoseconds
        t.schedule(deadline: .now() + tick, repeating: tick, leeway: tick.quarter)
        t.setEventHandler { [weak self] in self?.tickAll() }
        t.activate()
        timer = t
    }

    /// Stops the source (which closes the epoll fd) and the timer. Connections still
    /// registered are not touched; call when the loop is going away.
    func stop() {
        timer?.cancel()
        source?.cancel()
        timer = nil
        source = nil
    }

    /// Adds `connection`'s fd; returns the token to pass to `remove`. On `queue`. The tick
    /// timer runs at the shortest `tick` any registration asked for (a client with sub-second
    /// timeouts may share the loop with a server ticking once a second).
    func add(_ connection: any PollTarget, tick: DispatchTimeInterval) throws(SystemCallError) -> UInt64 {
        assertOnQueue(queue)
        if source == nil {
            activate(tick: tick)
        } else if tick.nanoseconds < tickNanos, let timer {
            tickNanos = tick.nanoseconds
            timer.schedule(deadline: .now() + tick, repeating: tick, leeway: tick.quarter)
        }
        let slot: Int
        if let s = freeSlots.popLast() {
            slot = s
        } else {
            slot = slots.count
            slots.append(nil)
            generations.append(0)
        }
        let token = UInt64(generations[slot]) << 32 | UInt64(slot)
        do {
            _ = try syscallBlocking("epoll_ctl") { tr_epoll_add(fd, connection.fd, token) }
        } catch {
            freeSlots.append(slot)
            throw error
        }
        slots[slot] = connection
        registered += 1
        return token
    }

    /// Removes a registration (EPOLL_CTL_DEL) before its fd is closed. Events of this
    /// registration already fetched in the current batch are dropped by the generation check.
    func remove(token: UInt64, fd connectionFD: Int32) {
        assertOnQueue(queue)
        let slot = Int(token & 0xffff_ffff)
        guard slot < slots.count, UInt64(generations[slot]) == token >> 32, slots[slot] != nil else { return }
        _ = try? syscallBlocking("epoll_ctl") { tr_epoll_del(fd, connectionFD) }
        slots[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
        registered -= 1
    }

    /// The epoll fd is readable: run every ready connection, at most `batch × rounds` events.
    private func drain() {
        assertOnQueue(queue)
        for _ in 0..<Self.rounds {
            let n = tr_epoll_wait(fd, datas, events, Int32(Self.batch), 0)
            if n <= 0 { return } // 0: nothing ready; -1 (EINTR…): the source fires again
            for i in 0..<Int(n) {
                let token = datas[i]
                let slot = Int(token & 0xffff_ffff)
                guard slot < slots.count, UInt64(generations[slot]) == token >> 32,
                      let connection = slots[slot] else { continue }
                let mask = events[i]
                connection.pollEvent(readable: mask & TR_POLL_READABLE != 0, writable: mask & TR_POLL_WRITABLE != 0,
                                     hangup: mask & TR_POLL_HANGUP != 0)
            }
            if Int(n) < Self.batch { return }
        }
    }

    private func tickAll() {
        assertOnQueue(queue)
        let now = slots // connections may close (and leave the table) while ticking
        for case let c? in now { c.tick() }
    }
}

/// What `EpollPoller` drives: a non-blocking fd registered once, whose owner runs on the
/// poller's queue. Both calls happen on that queue.
protocol PollTarget: AnyObject {
    var fd: Int32 { get }
    /// Readiness edges of the fd (see `EpollPoller` for their meaning).
    func pollEvent(readable: Bool, writable: Bool, hangup: Bool)
    /// The poller's periodic timer: check timeouts.
    func tick()
}

extension DispatchTimeInterval {
    /// The interval in nanoseconds (`.never` → `UInt64.max`).
    var nanoseconds: UInt64 {
        switch self {
        case .seconds(let s): UInt64(max(0, s)) * 1_000_000_000
        case .milliseconds(let m): UInt64(max(0, m)) * 1_000_000
        case .microseconds(let u): UInt64(max(0, u)) * 1_000
        case .nanoseconds(let n): UInt64(max(0, n))
        case .never: .max
        @unknown default: .max
        }
    }

    /// A quarter of the interval (at least 1 ms), used as timer leeway.
    var quarter: DispatchTimeInterval {
        switch self {
        case .seconds(let s): .milliseconds(max(1, s * 250))
        case .milliseconds(let m): .milliseconds(max(1, m / 4))
        case .microseconds(let u): .microseconds(max(1000, u / 4))
        case .nanoseconds(let n): .nanoseconds(max(1_000_000, n / 4))
        case .never: .milliseconds(250)
        @unknown default: .milliseconds(250)
        }
    }
}
