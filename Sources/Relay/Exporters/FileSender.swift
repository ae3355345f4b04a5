import Basics
import Buffering
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The `file` backend: appends each payload (Zipkin v2 JSON lines) as one zstd frame to a
/// segment file under `directory`, rolled by size. Concatenated zstd frames are one valid zstd
/// stream, so `zstdcat spans-*.ndjson.zst` (or `tracerelay spill cat`) prints every span.
/// File names sort by creation: `spans-<unix ms>-<sequence>.ndjson.zst`. Writes run on a
/// serial queue of their own, never on a network loop. A segment is fsynced when it is closed.
final class FileSender: PayloadSender, @unchecked Sendable {
    let directory: String
    let maxFileBytes: Int
    private let io: DispatchQueue
    private let logger: Logger
    // On `io`:
    private var fd: Int32 = -1
    private var written = 0
    private var sequence = 0
    private var closed = false
    private let compressor = ZstdCompressor(level: 3)

    var target: String { directory }

    init(directory: String, maxFileBytes: Int, logger: Logger) throws(FileSenderError) {
        self.directory = directory
        self.maxFileBytes = maxFileBytes
        self.logger = logger
        self.io = DispatchQueue(label: "tracerelay.file.\(directory)")
        do { try PosixFileSystem().createDirectory(directory) } catch {
            throw FileSenderError(message: "cannot create \(directory): \(error)")
        }
    }

    func send(_ payload: Payload, completion: @escaping @Sendable (SendOutcome) -> Void) {
        io.async {
            completion(self.write(payload.body))
        }
    }

    private func write(_ body: [UInt8]) -> SendOutcome {
        if closed { return .retryable("file backend is shut down", retryAfter: nil) }
        let frame: [UInt8]
        do { frame = try compressor.compress(body) } catch { return .retryable("\(error)", retryAfter: nil) }
        if fd >= 0 && written + frame.count > maxFileBytes && written > 0 { closeSegment() }
        if fd < 0 {
            let millis = Clock.wallMillis()
            sequence += 1
            let seq = String(sequence)
            let name = "\(directory)/spans-\(millis)-\(String(repeating: "0", count: max(0, 6 - seq.count)) + seq).ndjson.zst"
            fd = open(name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 { return .retryable("cannot open \(name): \(String(cString: strerror(errno)))", retryAfter: nil) }
            written = 0
        }
        var off = 0
        while off < frame.count {
            let n = frame.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, frame.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let msg = String(cString: strerror(errno))
                // A partial frame is not valid zstd: start a new file next time.
                closeSegment()
                return .retryable("write failed: \(msg)", retryAfter: nil)
            }
            off += n
        }
        written += frame.count
        return .delivered
    }

    private func closeSegment() {
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
        fd = -1
    }

    func shutdown() {
        io.sync {
            closed = true
            closeSegment()
        }
    }
}

struct FileSenderError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
