import TestSupport
import Testing
@testable import Transport

/// `HTTP1RequestParser` without an engine or a socket: bytes in, events out.
@Suite struct HTTP1RequestParserTests {
    /// Records what the parser reports, as comparable text.
    final class Recorder: HTTP1RequestParserDelegate {
        var events: [String] = []
        func parserMayStartRequest() -> Bool { true }
        func parserBodyStarted(_ head: HTTP1RequestHead) { events.append("body \(head.method) \(head.path)") }
        func parserRequest(_ head: HTTP1RequestHead, body: [UInt8]) {
            events.append("request \(head.method) \(head.path)?\(head.query) \(String(decoding: body, as: UTF8.self))")
        }
        func parserFailed(_ error: HTTP1RequestError) { events.append("error \(error.status) \(error.code)") }
    }

    static let stream = "\r\nGET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
        + "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        + "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
        + "GET /d HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n"

    static let expected = [
        "request GET /a?x=1 ", "body POST /b", "request POST /b? hello", "body POST /c", "request POST /c? abcde",
        "error 400 bad_content_length",
    ]

    /// Feeds `bytes` in the given pieces, the way an engine does (parse when nothing is
    /// buffered, else buffer and parse the buffer).
    static func run(_ bytes: [UInt8], pieces: [Int]) -> [String] {
        let recorder = Recorder()
        let parser = HTTP1RequestParser(config: HTTPServerConfiguration(), budget: .unlimited, allowUpgrade: false)
        parser.delegate = recorder
        var at = 0
        for n in pieces where at < bytes.count {
            let piece = Array(bytes[at..<min(bytes.count, at + n)])
            at += piece.count
            piece.withUnsafeBytes { p in
                if parser.hasBufferedInput {
                    parser.buffer(p)
                    parser.parseBuffered()
                } else {
                    parser.parse(p)
                }
            }
        }
        return withExtendedLifetime(recorder) { recorder.events }
    }

    @Test func wholeStreamGivesHeadsBodiesAndTheError() {
        let bytes = Array(Self.stream.utf8)
        #expect(Self.run(bytes, pieces: [bytes.count]) == Self.expected)
    }

    @Test(arguments: [1, 2, 3, 7, 64]) func fixedSplitsAgreeWithWholeFeeding(size: Int) {
        let bytes = Array(Self.stream.utf8)
        #expect(Self.run(bytes, pieces: Array(repeating: size, count: bytes.count / size + 1)) == Self.expected)
    }

    @Test func randomSplitsAgreeWithWholeFeeding() {
        let bytes = Array(Self.stream.utf8)
        var failure: String?
        for seed in UInt64(1)...200 where failure == nil {
            var rng = SplitMix64(seed: seed)
            var pieces: [Int] = []
            var total = 0
            while total < bytes.count {
                let n = Int(rng.next() % 40) + 1
                pieces.append(n)
                total += n
            }
            let events = Self.run(bytes, pieces: pieces)
            if events != Self.expected { failure = "seed \(seed): pieces \(pieces) gave \(events)" }
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    @Test func stopDropsTheHalfReadBodyAndItsReservation() {
        let budget = BodyBudget(limit: 1 << 30)
        let recorder = Recorder()
        let parser = HTTP1RequestParser(config: HTTPServerConfiguration(), budget: budget, allowUpgrade: false)
        parser.delegate = recorder
        Array("POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789".utf8).withUnsafeBytes { parser.parse($0) }
        #expect(parser.progress == .body)
        #expect(budget.used == 100)
        parser.stop()
        #expect(parser.progress == .done)
        #expect(budget.used == 0)
        #expect(recorder.events == ["body POST /b"])
    }
}
