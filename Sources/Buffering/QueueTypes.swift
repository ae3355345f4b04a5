import Synchronization

/// One encoded batch as the queue stores it: opaque bytes, how many spans they hold, and small
/// caller-defined metadata (e.g. the encoding; at most 65535 bytes).
///
/// `bytes` and `metadata` are slices: records read back from a spill frame share that frame's
/// decompressed buffer (one allocation per frame, not per record), so their indices need not
/// start at 0 — use `startIndex`, `withUnsafeBytes`, or `Array(bytes)`. A slice keeps its whole
/// frame buffer alive; the queue copies out a record it keeps for a retry (`nack`) so a straggler
/// does not pin a frame.
public struct Record: Sendable, Equatable {
    public var bytes: ArraySlice<UInt8>
    public var spanCount: Int
    public var metadata: ArraySlice<UInt8>

    public init(bytes: [UInt8], spanCount: Int, metadata: [UInt8] = []) {
        self.init(bytes: bytes[...], spanCount: spanCount, metadata: metadata[...])
    }

    public init(bytes: ArraySlice<UInt8>, spanCount: Int, metadata: ArraySlice<UInt8> = []) {
        precondition(metadata.count <= Int(UInt16.max), "record metadata is limited to 65535 bytes")
        self.bytes = bytes
        self.spanCount = spanCount
        self.metadata = metadata
    }

    var size: Int { bytes.count + metadata.count }

    /// This record with storage of its own (no shared frame buffer kept alive).
    func compacted() -> Record {
        var r = self
        r.bytes = ArraySlice(Array(bytes))
        r.metadata = metadata.isEmpty ? [] : ArraySlice(Array(metadata))
        return r
    }
}

/// A record handed to the exporter. Give it back with `ack` (done: sent, or dropped permanently)
/// or `nack` (retry later; it is delivered again before anything newer).
public struct Delivery: Sendable, Equatable {
    /// Per-backend sequence number (increasing in enqueue order).
    public let seq: UInt64
    public let record: Record
    /// How many times this record was handed out and returned with `nack` before (0 the first time).
    public let attempt: Int
    /// When the record was enqueued (unix ms): for maxAge and latency metrics.
    public let enqueuedAtMillis: UInt64
}

/// How much a crash may lose. See the module comment in SegmentFormat.swift.
public enum DurabilityMode: String, Sendable, CaseIterable {
    /// Memory only; graceful shutdown writes the memory tier to disk, a crash loses it.
    /// When the memory tier is full, `whenFull` applies.
    case memory
    /// As `memory`, plus: past the high watermark, or while the backend is down, batches go to
    /// segment files. A crash loses the memory tier and the unwritten part of the spill buffer
    /// (at most `spillLinger` old).
    case spill
    /// Every batch is appended to a segment and fsynced (group commit every
    /// `groupCommitInterval`) before its enqueue completes: kill -9 loses nothing acknowledged.
    case wal
}

/// What to do when a cap (memory in `memory` mode, disk otherwise) is reached.
public enum WhenFull: String, Sendable, CaseIterable {
    /// Refuse new batches: `enqueue` fails with `.full(retryAfter:)` (the ingest answers 429).
    case reject
    /// Delete the oldest segment (or, in `memory` mode, the oldest batches) and count the spans.
    case dropOldest
}

/// A disk budget shared by several backends' queues (the "total" cap). Thread-safe.
public final class DiskBudget: Sendable {
    public let limit: Int
    private let used = Mutex(0)

    public init(limit: Int) { self.limit = limit }

    public var usedBytes: Int { used.withLock { $0 } }
    func add(_ n: Int) { used.withLock { $0 += n } }
    func wouldExceed(_ n: Int) -> Bool { used.withLock { $0 + n > limit } }
}

/// Settings of one backend's queue; every limit has a documented default.
public struct QueueConfiguration: Sendable {
    /// Backend name: segments live in `<directory>/<backend>/`.
    public var backend: String
    /// The spill directory (`spill.directory`).
    public var directory: String
    public var durability: DurabilityMode = .spill
    /// Memory tier size in bytes (default 64 MiB).
    public var memoryBytes: Int = 64 << 20
    /// Fraction of `memoryBytes` past which `spill` mode writes to disk (default 0.9).
    public var highWatermark: Double = 0.9
    /// Segment roll size (default 64 MiB).
    public var segmentBytes: Int = 64 << 20
    /// Input bytes per compressed frame the writer aims for (default 1 MiB).
    public var frameBytes: Int = 1 << 20
    /// zstd level (default 1).
    public var compressionLevel: Int32 = 1
    /// Disk cap for this backend (default 1 GiB).
    public var maxDiskBytes: Int = 1 << 30
    /// Optional cap shared with other backends.
    public var totalDiskBudget: DiskBudget? = nil
    /// Segments older than this are dropped (nil: no limit; default nil).
    public var maxAgeSeconds: Double? = nil
    public var whenFull: WhenFull = .reject
    /// `wal` group commit interval (default 10 ms).
    public var groupCommitInterval: Double = 0.010
    /// `spill`: write a partial frame when the oldest unwritten batch is this old (default 1 s).
    public var spillLinger: Double = 1.0
    /// How often the ledger is written and acknowledged segments are deleted (default 200 ms).
    public var checkpointInterval: Double = 0.2
    /// `spill`: past this many unwritten bytes, enqueue completions wait for the write (default 4 MiB);
    /// past twice as many (`wal`: twice as many plus a frame), enqueue fails with `.full(retryAfter: 1)`.
    /// Memory in use stays within `memoryBytes` + 2 × this + about two frames read back, plus, for
    /// records read back that the exporter still holds unacknowledged, the rest of their frame
    /// (records share their frame's buffer; a nacked record is copied out, so only records in
    /// flight pin a frame: at most one frame per in-flight record, usually far less as they are
    /// taken in order).
    public var maxUnwrittenBytes: Int = 4 << 20

    public init(backend: String, directory: String, durability: DurabilityMode = .spill) {
        self.backend = backend
        self.directory = directory
        self.durability = durability
    }

    /// The directory holding this backend's segments.
    public var backendDirectory: String { directory + "/" + backend }
}

/// Why `enqueue` failed.
public enum QueueError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The cap is reached and `whenFull` is `reject`: answer 429 with `Retry-After: retryAfter` (seconds).
    case full(retryAfter: Int)
    /// The write failed (`wal` mode): the batch was not accepted.
    case io(String)
    /// The queue was shut down.
    case shutdown

    public var description: String {
        switch self {
        case .full(let s): "queue full, retry after \(s) s"
        case .io(let m): "spill write failed: \(m)"
        case .shutdown: "queue is shut down"
        }
    }
}

/// Why spans were dropped.
public enum DropReason: String, Sendable, CaseIterable {
    /// `dropOldest` in `memory` mode.
    case memoryFull
    /// Disk cap or ENOSPC (`dropOldest`, or a spill write that failed after it was accepted).
    case diskFull
    /// A segment older than `maxAgeSeconds`.
    case maxAge
    /// A frame whose checksum or content did not verify.
    case corrupt
    /// A spill write failed with an I/O error other than disk full.
    case ioError
}

/// Counters and gauges of one queue, for metrics.
public struct QueueStats: Sendable, Equatable {
    public var memoryBytes = 0
    public var diskBytes = 0
    public var segments = 0
    /// Records waiting or in flight (memory + disk, estimated for disk from frame headers).
    public var records = 0
    public var inFlight = 0
    public var enqueuedRecords = 0
    public var enqueuedSpans = 0
    public var ackedRecords = 0
    public var rejectedRecords = 0
    public var droppedSpans: [DropReason: Int] = [:]
    public var corruptFrames = 0
    public var corruptSegments = 0
    public var writeErrors = 0
    /// Age in seconds of the oldest pending record (0 when empty).
    public var oldestAgeSeconds: Double = 0
    /// Age in seconds of the oldest spill segment that still holds unsent records (0 when none).
    public var oldestSpilledAgeSeconds: Double = 0
}
