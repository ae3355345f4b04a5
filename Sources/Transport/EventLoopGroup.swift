import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One event loop: a serial queue plus the scratch buffer every socket read on it uses.
/// Connection queues target `queue`, so everything that runs for this loop is serialized and
/// the single read buffer can be shared by all its connections.
final class EventLoop: @unchecked Sendable {
    let queue: DispatchQueue
    let index: Int
    /// Scratch space for `read(2)`, shared by every socket of the loop: only touched from
    /// blocks running on `queue` (or a queue targeting it), which debug builds assert.
    var readBuffer: UnsafeMutableRawBufferPointer {
        assertOnQueue(queue)
        return sharedReadBuffer
    }
    private let sharedReadBuffer: UnsafeMutableRawBufferPointer

    init(index: Int, readBufferSize: Int) {
        self.index = index
        self.queue = DispatchQueue(label: "tracerelay.loop.\(index)", qos: .userInitiated)
        self.sharedReadBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
    }

    /// The loop's epoll poller (`HTTPEventMode.epollPerLoop`), created by the first
    /// connection that asks; only touched on `queue`.
    private var epoll: EpollPoller?

    /// The poller, creating it if needed. Call on `queue`.
    func poller() throws(SystemCallError) -> EpollPoller {
        assertOnQueue(queue)
        if let epoll { return epoll }
        let p = try EpollPoller(queue: queue)
        epoll = p
        return p
    }

    deinit {
        epoll?.stop()
        sharedReadBuffer.deallocate()
    }
}

/// N serial queues (default: one per core). Each connection gets its own serial queue that
/// *targets* one of them, picked round-robin, so no connection queue lands in Dispatch's
/// overcommit pool and the work spreads across cores.
///
/// Cost model (measured with perf on Linux, libdispatch's epoll backend): every read event
/// is a round trip through Dispatch's manager thread — after the handler returns, the source
/// is re-armed by the manager (eventfd wake-up + `epoll_ctl`), and the next event is handed
/// from the manager to a worker thread. That, not parsing, dominates a small keep-alive
/// request, which is why handlers should do all they can per event (read until EAGAIN, serve
/// every pipelined request, write once). `HTTPEventMode.epollPerLoop` (the default) pays
/// that round trip once per batch of ready connections instead: each loop's `EpollPoller`
/// is the only Dispatch source the loop's connections need.
public final class EventLoopGroup: Sendable {
    let loops: [EventLoop]
    private let next = Atomic<Int>(0)

    /// - Parameters:
    ///   - loopCount: number of loops; `nil` → number of online cores.
    ///   - readBufferSize: bytes read per `read(2)` call (shared per loop).
    public init(loopCount: Int? = nil, readBufferSize: Int = 128 * 1024) {
        let n = max(1, loopCount ?? Self.coreCount)
        loops = (0..<n).map { EventLoop(index: $0, readBufferSize: readBufferSize) }
    }

    /// Number of loops.
    public var count: Int { loops.count }

    /// The next loop, round-robin.
    func nextLoop() -> EventLoop {
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[(i & Int.max) % loops.count]
    }

    /// The queue for one connection on the next loop: a new serial queue targeting the loop's
    /// queue, or (when `dedicated` is false) the loop's queue itself, which saves one level
    /// of queue hand-off per event.
    func makeConnectionQueue(label: String, dedicated: Bool = true) -> (EventLoop, DispatchQueue) {
        let loop = nextLoop()
        if !dedicated { return (loop, loop.queue) }
        return (loop, DispatchQueue(label: label, target: loop.queue))
    }

    /// Online processor count (at least 1).
    public static var coreCount: Int {
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? Int(n) : 1
    }
}

/// Marks a queue so code can ask cheaply "am I running on it?" — used by engines when a
/// handler answers synchronously (no hop needed) or from another thread (hop).
final class QueueToken: Sendable {
    static let key = DispatchSpecificKey<QueueToken>()

    /// The token of `queue`, installing one if it has none.
    static func of(_ queue: DispatchQueue) -> QueueToken {
        if let t = queue.getSpecific(key: key) { return t }
        let t = QueueToken()
        queue.setSpecific(key: key, value: t)
        return t
    }

    /// Whether the current thread runs a block of the queue this token marks.
    @inline(__always)
    var isCurrent: Bool { DispatchQueue.getSpecific(key: QueueToken.key) === self }
}

/// Asserts that the caller runs on `queue` (or a queue targeting it): the confinement rule of
/// the queue-confined types (`Connection`, the engines, `EpollPoller`, the loop's read buffer,
/// listeners, `ClientConnection`). Debug builds only — tests run them; release builds pay
/// nothing.
@inline(__always)
func assertOnQueue(_ queue: DispatchQueue) {
    #if DEBUG
    dispatchPrecondition(condition: .onQueue(queue))
    #endif
}
