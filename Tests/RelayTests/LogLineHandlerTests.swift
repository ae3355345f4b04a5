import Foundation
import Logging
import Testing
import Relay

@Suite struct LogLineHandlerTests {
    /// A value from the wire that tries every way to end a line or confuse a reader.
    static let forged = "web\n2026-01-01T00:00:00.000Z critical tracerelay: FORGED\r\u{0}\u{1b}[31m\t\"quoted\" back\\slash"

    @Test func jsonLineHasEveryFieldAndTheMetadata() throws {
        let file = LogFile()
        var logger = file.logger("tracerelay.routing", format: .json)
        logger[metadataKey: "handler.key"] = "from the handler"
        logger.info("batch", metadata: ["backend": "zipkin", "spans": "\(42)",
                                        "nested": ["list": ["a", "b"], "n": "1"], "level": "shadowing"])
        let lines = file.lines
        try #require(lines.count == 1, "one event, one line: \(file.text)")
        let o = try #require(file.objects[0], "the line parses as a JSON object: \(lines[0])")
        #expect(o["level"] as? String == "info")
        #expect(o["message"] as? String == "batch")
        #expect(o["label"] as? String == "tracerelay.routing")
        #expect(o["source"] as? String == "RelayTests")
        #expect(o["backend"] as? String == "zipkin")
        #expect(o["spans"] as? String == "42")
        #expect(o["handler.key"] as? String == "from the handler")
        #expect(o["metadata.level"] as? String == "shadowing", "a metadata key never replaces a fixed field")
        let nested = try #require(o["nested"] as? [String: Any])
        #expect(nested["list"] as? [String] == ["a", "b"])
        #expect(nested["n"] as? String == "1")
        let time = try #require(o["time"] as? String)
        #expect(time.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "RFC 3339 with ms in UTC: \(time)")
        // The stamp is now (within a minute), read back with a second parser.
        let parsed = try #require(ISO8601DateFormatter.withMillis.date(from: time))
        #expect(abs(parsed.timeIntervalSinceNow) < 60)
    }

    @Test func jsonKeepsWireValuesOnOneLineAndExact() throws {
        let file = LogFile()
        let logger = file.logger(format: .json)
        logger.warning("refused \(Self.forged)", metadata: ["first.service": "\(Self.forged)", Self.forged: "key from the wire"])
        let lines = file.lines
        try #require(lines.count == 1, "a forged newline must not start a line: \(file.text.debugDescription)")
        #expect(!lines[0].unicodeScalars.contains { $0.value < 0x20 }, "no raw control character in the line")
        let o = try #require(file.objects[0], "still valid JSON: \(lines[0])")
        // JSON escaping is lossless: the reader gets the value exactly as it came.
        #expect(o["message"] as? String == "refused \(Self.forged)")
        #expect(o["first.service"] as? String == Self.forged)
        #expect(o[Self.forged] as? String == "key from the wire")
    }

    @Test func textEscapesWireValuesLikeLogSafe() throws {
        let file = LogFile()
        let logger = file.logger("tracerelay", format: .text)
        logger.error("refused \(Self.forged)", metadata: ["service": "\(Self.forged)", "spans": "3"])
        let lines = file.lines
        try #require(lines.count == 1, "a forged newline must not start a line: \(file.text.debugDescription)")
        let line = lines[0]
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" } && !line.contains("\t"))
        #expect(!line.contains("\nFORGED") && line.contains("web\\n2026-01-01T00:00:00.000Z critical tracerelay: FORGED\\r\\u0000\\u001b[31m\\t"))
        #expect(line.contains(" error "), "\(line)")
        #expect(line.contains("tracerelay: refused web\\n"), "\(line)")
        #expect(line.hasSuffix(" spans=3"), "metadata after the message, sorted: \(line)")
        #expect(line.contains(" service=web\\n"), "\(line)")
        #expect(line.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z error +tracerelay: .*/) != nil, "\(line)")
    }

    @Test(arguments: [LogFormat.json, .text])
    func levelsBelowTheHandlersAreNotWritten(format: LogFormat) throws {
        let file = LogFile()
        let logger = file.logger(format: format, level: .warning)
        for level in Logger.Level.allCases { logger.log(level: level, "at \(level.rawValue)") }
        let messages = format == .json
            ? file.objects.map { $0?["message"] as? String ?? "?" }
            : file.lines.map { $0.split(separator: ": ", maxSplits: 1).last.map(String.init) ?? "?" }
        #expect(messages == ["at warning", "at error", "at critical"], "\(file.lines)")
        if format == .json { #expect(file.objects.map { $0?["level"] as? String } == ["warning", "error", "critical"]) }
    }

    @Test func theErrorOfAnEventIsAField() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "disk on fire" } }
        let file = LogFile()
        let handler = LogLineHandler(label: "t", format: .json, sink: file.sink, metadataProvider: nil)
        let event = LogEvent(level: .error, message: "spill write failed", error: Broken(), metadata: nil,
                             source: "Buffering", file: #fileID, function: #function, line: #line)
        handler.log(event: event)
        let o = try #require(file.objects.first ?? nil)
        #expect(o["error"] as? String == "disk on fire")
        #expect(o["source"] as? String == "Buffering")
    }

    @Test func metadataProviderAndEventMerge() throws {
        let file = LogFile()
        let provider = Logger.MetadataProvider { ["trace.id": "abc", "backend": "provider"] }
        var handler = LogLineHandler(label: "t", format: .json, sink: file.sink, metadataProvider: provider)
        handler.metadata = ["backend": "handler", "region": "eu"]
        Logger(label: "t") { _ in handler }.info("x", metadata: ["backend": "event"])
        let o = try #require(file.objects.first ?? nil)
        #expect(o["backend"] as? String == "event", "the event wins over provider and handler")
        #expect(o["trace.id"] as? String == "abc")
        #expect(o["region"] as? String == "eu")
    }

    /// Lines from many threads at once arrive whole: each is one `write` under the sink's lock.
    @Test func concurrentLinesNeverInterleave() throws {
        let file = LogFile()
        let logger = file.logger(format: .json)
        let threads = 8, perThread = 300
        let payload = String(repeating: "x", count: 3000)  // lines larger than one pipe buffer unit
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<perThread { logger.info("line", metadata: ["t": "\(t)", "i": "\(i)", "payload": "\(payload)"]) }
        }
        let objects = file.objects
        #expect(objects.count == threads * perThread)
        #expect(objects.allSatisfy { $0 != nil }, "every line parses")
        let seen = Set(objects.compactMap { o in o.flatMap { "\($0["t"] as? String ?? "?")/\($0["i"] as? String ?? "?")" } })
        #expect(seen.count == threads * perThread, "no line lost or duplicated")
    }

    @Test func rfc3339MillisKnownInstants() {
        #expect(rfc3339Millis(0) == "1970-01-01T00:00:00.000Z")
        #expect(rfc3339Millis(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123Z")
        #expect(rfc3339Millis(951_782_400_999_999_999) == "2000-02-29T00:00:00.999Z")  // a leap day
        #expect(rfc3339Millis(-1) == "1969-12-31T23:59:59.999Z")
    }

    /// `auto` picks text for a terminal and JSON for a file or a pipe.
    @Test func automaticFormatFollowsTheSink() throws {
        let file = LogFile()
        #expect(LogFormat.automatic(for: file.sink) == .json)
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(LogFormat.automatic(for: LogSink(fileDescriptor: fds[1])) == .json)
        // A real pseudo-terminal: the master side of /dev/ptmx is a terminal device too.
        let terminal = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        try #require(terminal >= 0, "open /dev/ptmx: errno \(errno)")
        defer { close(terminal) }
        #expect(LogFormat.automatic(for: LogSink(fileDescriptor: terminal)) == .text)
    }
}

extension ISO8601DateFormatter {
    static var withMillis: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }
}
