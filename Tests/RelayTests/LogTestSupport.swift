import Foundation
import Logging
import Relay

/// A `LogSink` on a real temporary file, and what was written to it.
final class LogFile {
    let path: String
    let sink: LogSink
    private let fd: Int32

    init() {
        var template = Array((NSTemporaryDirectory() + "/tracerelay-logtest-XXXXXX").utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0, "mkstemp failed: errno \(errno)")
        path = String(cString: template)
        sink = LogSink(fileDescriptor: fd)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    var text: String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The lines written, split on "\n" only (the one line terminator the handlers promise).
    var lines: [String] {
        var parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    /// Every line parsed as a JSON object (nil where a line is not one).
    var objects: [[String: Any]?] {
        lines.map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    func logger(_ label: String = "test", format: LogFormat, level: Logger.Level = .trace) -> Logger {
        let sink = self.sink
        return Logger(label: label) { LogLineHandler(label: $0, format: format, level: level, sink: sink, metadataProvider: nil) }
    }
}
