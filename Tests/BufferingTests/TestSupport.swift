import TestSupport
import Glibc
import Logging
@testable import Buffering

/// A fresh directory under /tmp, removed by `cleanup`.
func makeTempDirectory(_ tag: String = "buf") -> String {
    var template = Array("/tmp/tracerelay-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil, "mkdtemp failed")
    return String(cString: p!)
}

func removeTree(_ path: String) {
    let fs = PosixFileSystem()
    if let names = try? fs.listDirectory(path) {
        for n in names { removeTree(path + "/" + n) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

func testLogger() -> Logger {
    var l = Logger(label: "buffering-test", factory: { _ in SwiftLogNoOpLogHandler() })
    l.logLevel = .critical
    return l
}

func record(_ i: Int, size: Int = 40) -> Record {
    var text = "{\"traceId\":\"\(i)\",\"name\":\"span-\(i)\",\"tags\":{\"k\":\"v\"}}"
    while text.utf8.count < size { text += " " }
    return Record(bytes: Array(text.utf8), spanCount: i % 5 + 1, metadata: Array("m\(i % 3)".utf8))
}

func number(of r: Record) -> Int? {
    let s = String(decoding: r.bytes, as: UTF8.self)
    guard let a = s.range(of: "\"traceId\":\""), let b = s[a.upperBound...].firstIndex(of: "\"") else { return nil }
    return Int(s[a.upperBound..<b])
}

/// Enqueues and waits for the completion.
@discardableResult
func enqueueSync(_ q: BackendQueue, _ r: Record) -> QueueError? {
    let box = ResultBox()
    q.enqueue(r) { box.set($0) }
    if case .failure(let e) = box.wait() { return e }
    return nil
}

final class ResultBox: @unchecked Sendable {
    private var value: Result<Void, QueueError>?
    private let lock = NSLockish()
    func set(_ v: Result<Void, QueueError>) { lock.run { value = v } }
    func wait(timeout: Double = 10) -> Result<Void, QueueError> {
        let deadline = now() + timeout
        while now() < deadline {
            if let v = lock.run({ value }) { return v }
            usleep(200)
        }
        return .failure(.io("timeout waiting for completion"))
    }
}

final class NSLockish: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func run<T>(_ f: () -> T) -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return f()
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Takes deliveries until `count` have arrived or `timeout` passes; acks them unless told not to.
func drain(_ q: BackendQueue, count: Int, ack: Bool = true, timeout: Double = 10) -> [Delivery] {
    var out: [Delivery] = []
    let deadline = now() + timeout
    while out.count < count && now() < deadline {
        let d = q.next(maxBytes: 1)
        if d.isEmpty { usleep(500); continue }
        if ack { d.forEach(q.ack) }
        out += d
    }
    return out
}

/// Waits until the queue's periodic checkpoint (ledger, acknowledged segments, disk-full reset)
/// has run over the state as it is now: two ticks complete, so one started after this call.
func waitForCheckpoint(_ q: BackendQueue, timeout: Double = 10) -> Bool {
    let start = q.checkpointsForTesting()
    return eventually(timeout) { q.checkpointsForTesting() >= start + 2 }
}



func readFile(_ path: String) -> [UInt8] {
    let f = try! PosixFileSystem().open(path, create: false)
    defer { f.close() }
    var b = [UInt8](repeating: 0, count: try! f.size())
    _ = try! b.withUnsafeMutableBytes { try f.read(into: $0, at: 0) }
    return b
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let f = try! PosixFileSystem().open(path, create: true)
    defer { f.close() }
    try! f.truncate(to: 0)
    try! bytes.withUnsafeBytes { try f.write($0, at: 0) }
}

func segmentFiles(_ dir: String) -> [String] {
    ((try? PosixFileSystem().listDirectory(dir)) ?? []).filter { $0.hasSuffix(".seg") }.sorted().map { dir + "/" + $0 }
}

/// A file system that injects faults into the real one: ENOSPC/EIO on writes, torn writes
/// (part of a write lands, then the "process dies"), EIO on reads and bit flips on reads.
final class FaultyFileSystem: SpillFileSystem, @unchecked Sendable {
    private let base = PosixFileSystem()
    private let lock = NSLockish()
    private var _writeError: Int32? = nil
    private var _tornAfterBytes: Int? = nil
    private var _readError: Int32? = nil
    private var _flipReadOffset: Int? = nil
    private(set) var writesFailed = 0

    /// Every write fails with this errno (nil: writes succeed).
    var writeError: Int32? { get { lock.run { _writeError } } set { lock.run { _writeError = newValue } } }
    /// After this many more bytes, a write lands partially and then fails with EIO forever.
    var tornAfterBytes: Int? { get { lock.run { _tornAfterBytes } } set { lock.run { _tornAfterBytes = newValue } } }
    var readError: Int32? { get { lock.run { _readError } } set { lock.run { _readError = newValue } } }
    /// Reads covering this file offset of a segment see that byte flipped.
    var flipReadOffset: Int? { get { lock.run { _flipReadOffset } } set { lock.run { _flipReadOffset = newValue } } }

    func createDirectory(_ path: String) throws { try base.createDirectory(path) }
    func listDirectory(_ path: String) throws -> [String] { try base.listDirectory(path) }
    func rename(_ from: String, to: String) throws { try base.rename(from, to: to) }
    func remove(_ path: String) throws { try base.remove(path) }
    func syncDirectory(_ path: String) throws { try base.syncDirectory(path) }
    func open(_ path: String, create: Bool) throws -> any SpillFile {
        FaultyFile(inner: try base.open(path, create: create), fs: self, path: path)
    }

    /// Decides what happens to a write of `n` bytes: how many bytes land, and the error after.
    fileprivate func planWrite(_ n: Int) -> (Int, Int32?) {
        lock.run {
            if let e = _writeError { writesFailed += 1; return (0, e) }
            if let t = _tornAfterBytes {
                if t < n { _tornAfterBytes = 0; _writeError = EIO; writesFailed += 1; return (t, EIO) }
                _tornAfterBytes = t - n
            }
            return (n, nil)
        }
    }
}

final class FaultyFile: SpillFile {
    let inner: any SpillFile
    unowned let fs: FaultyFileSystem
    let path: String
    init(inner: any SpillFile, fs: FaultyFileSystem, path: String) { self.inner = inner; self.fs = fs; self.path = path }
    func size() throws -> Int { try inner.size() }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        let (n, err) = fs.planWrite(bytes.count)
        if n > 0 { try inner.write(UnsafeRawBufferPointer(rebasing: bytes[0..<n]), at: offset) }
        if let err { throw FileError("pwrite", path, errno: err) }
    }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        if let e = fs.readError, path.hasSuffix(".seg") { throw FileError("pread", path, errno: e) }
        let n = try inner.read(into: buffer, at: offset)
        if let flip = fs.flipReadOffset, path.hasSuffix(".seg"), flip >= offset, flip < offset + n {
            buffer[flip - offset] ^= 0x20
        }
        return n
    }
    func sync() throws { try inner.sync() }
    func truncate(to size: Int) throws { try inner.truncate(to: size) }
    func close() { inner.close() }
}
