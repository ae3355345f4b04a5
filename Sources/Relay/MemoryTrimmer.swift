import Basics
import Dispatch
import Logging
import Synchronization
internal import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Gives memory back to the operating system after a burst.
///
/// glibc's allocator keeps freed memory in its arenas (one per thread that allocated, up to
/// 8 × cores): after a burst of large bodies or many closed connections, the relay's resident set
/// stays at its peak although the memory is free. Every `interval` this trimmer reads the
/// resident set from `/proc/self/statm`; when it has grown by `threshold` since the last trim it
/// calls `malloc_trim(0)`, which returns the free pages of every arena (`madvise(MADV_DONTNEED)`).
/// A trim that gives back little doubles the interval (up to 16×), so a relay whose working set
/// is simply large does not trim in vain. It runs on its own utility queue, never on an event loop.
public final class MemoryTrimmer: Sendable {
    public struct Settings: Sendable {
        public var interval: Duration = .seconds(5)
        /// Growth of the resident set since the last trim that makes a trim worth trying.
        public var threshold = 32 << 20
        public init() {}
    }

    /// What the trimmer did so far (for `/status` and tests).
    public struct Snapshot: Sendable, Equatable {
        public var trims = 0
        /// Bytes the trims took off the resident set, summed.
        public var releasedBytes = 0
        public var lastResidentBytes = 0
    }

    private struct State {
        var started = false
        var stopped = false
        /// Resident bytes right after the last trim (or at start).
        var baseline = 0
        /// Ticks to skip before trying again (backoff after trims that gave back little).
        var skip = 0
        var backoff = 1
        var snapshot = Snapshot()
    }

    private let settings: Settings
    private let queue = DispatchQueue(label: "tracerelay.memory-trimmer", qos: .utility)
    private let state = Mutex(State())
    private let logger: Logger
    /// Dispatch sources are thread-safe; resumed once by `start`, cancelled once by `stop`.
    private nonisolated(unsafe) let timer: DispatchSourceTimer

    public init(settings: Settings = Settings(), logger: Logger) {
        self.settings = settings
        self.logger = logger
        timer = DispatchSource.makeTimerSource(queue: queue)
    }

    public var snapshot: Snapshot { state.withLock { $0.snapshot } }

    public func start() {
        let t = timer
        let ms = Int(settings.interval.components.seconds * 1000) + Int(settings.interval.components.attoseconds / 1_000_000_000_000_000)
        t.schedule(deadline: .now() + .milliseconds(ms), repeating: .milliseconds(max(10, ms)), leeway: .milliseconds(max(1, ms / 10)))
        t.setEventHandler { [weak self] in self?.tick() }
        let rss = Self.residentBytes()
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            s.baseline = rss
            return !s.started && !s.stopped
        }
        if first { t.resume() }
    }

    public func stop() {
        let cancel = state.withLock { s -> Bool in
            defer { s.stopped = true }
            return !s.stopped
        }
        if cancel { timer.cancel() }
    }

    deinit {
        // A suspended source must be resumed before it is released.
        if !state.withLock({ $0.started }) { timer.resume() }
        timer.cancel()
    }

    /// One check; trims when the resident set grew past the threshold. Internal for tests.
    func tick() {
        let rss = Self.residentBytes()
        let go = state.withLock { s -> Bool in
            s.snapshot.lastResidentBytes = rss
            if s.skip > 0 { s.skip -= 1; return false }
            if rss < s.baseline { s.baseline = rss }
            return rss - s.baseline >= settings.threshold
        }
        guard go else { return }
        _ = tr_malloc_trim()
        let after = Self.residentBytes()
        let released = max(0, rss - after)
        state.withLock { s in
            s.baseline = after
            s.snapshot.trims += 1
            s.snapshot.releasedBytes += released
            s.snapshot.lastResidentBytes = after
            if released < settings.threshold / 4 {
                s.backoff = min(16, s.backoff * 2)
                s.skip = s.backoff - 1
            } else {
                s.backoff = 1
            }
        }
        logger.debug("memory trimmed", metadata: ["resident.before": "\(rss)", "resident.after": "\(after)"])
    }

    /// The resident set in bytes (`/proc/self/statm`, second field × page size); 0 if unreadable.
    public static func residentBytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        let fields = buf[0..<n].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
