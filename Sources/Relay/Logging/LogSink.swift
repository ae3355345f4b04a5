import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif

/// Where log lines go: a file descriptor, written one whole line per `write` under a lock, so
/// lines from different threads never interleave (and a pipe reader never sees half a line of
/// one event glued to another).
public final class LogSink: Sendable {
    /// The file descriptor lines are written to (not owned: never closed here).
    public let fileDescriptor: Int32
    private let lock = Mutex<Void>(())

    public init(fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    /// Standard error, where `tracerelay serve` logs (standard output stays free for command output).
    public static let standardError = LogSink(fileDescriptor: 2)

    /// Whether a terminal reads this descriptor (then people read the lines: `LogFormat.text`).
    public var isTerminal: Bool { isatty(fileDescriptor) == 1 }

    /// Writes `line` (which carries its own newline). A failed write is dropped: logging must
    /// not stop the relay.
    public func write(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            lock.withLock { _ in
                var offset = 0
                while offset < bytes.count {
                    let n = systemWrite(fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
                }
            }
        }
    }
}
