import TestSupport
import Codecs
import Dispatch
import Foundation
import Logging
import Routing
import Spans
import Synchronization
import Testing
import Transport
@testable import Relay

/// Issue 10, items 1 and 8: the span cap, the memory budget, the decode pool and log escaping.
/// The process-level checks (the gzip bomb's RSS, a well-behaved client's latency, the relay's
/// stderr) are in Tests/e2e/test_hostile_ingest.py.
@Suite struct HostileIngestTests {
    static func spans(_ n: Int, service: String = "web") -> SpanBatch {
        var batch = SpanBatch()
        for i in 0..<n {
            var span = Span(traceID: TraceID(low: UInt64(i + 1)), id: UInt64(i + 1))
            span.name = batch.intern("op")
            span.localEndpoint.serviceName = batch.intern(service)
            batch.spans.append(span)
        }
        return batch
    }

    static func tinyZipkin(_ n: Int) -> [UInt8] {
        Array(("[" + Array(repeating: #"{"traceId":"1","id":"1"}"#, count: n).joined(separator: ",") + "]").utf8)
    }

    static func config(maxSpans: Int) -> IngestConfiguration {
        var c = IngestConfiguration()
        c.maxSpansPerRequest = maxSpans
        return c
    }

    // MARK: item 1a — spans per request

    @Test func zipkinOverTheSpanCapIs413WithAReason() {
        let h = IngestHarness(configuration: Self.config(maxSpans: 100))
        // Small bodies are never counted (they cannot hold more than the cap)…
        #expect(h.send("/api/v2/spans", body: Self.tinyZipkin(60)).status == 202)
        // …larger ones are, before decoding, plain or compressed (counted while inflating).
        let r = h.send("/api/v2/spans", body: Self.tinyZipkin(101))
        #expect(r.status == 413)
        #expect(text(r).contains("\"error\":\"too_many_spans\""))
        let gz = GzipCompressor(level: 1).compress(Self.tinyZipkin(5000))
        let g = h.send("/api/v2/spans", body: gz, headers: [("Content-Encoding", "gzip")])
        #expect(g.status == 413)
        #expect(text(g).contains("too_many_spans"))
        #expect(h.send("/api/v2/spans", body: GzipCompressor(level: 1).compress(Self.tinyZipkin(100)), headers: [("Content-Encoding", "gzip")]).status == 202)
        #expect(h.capture.batches.map(\.count) == [60, 100])
        #expect(h.stats.snapshot["zipkin_v2_json"]?.tooManySpans == 2)
        #expect(h.stats.snapshot["zipkin_v2_json"]?.rejectedRequests == 2)
    }

    @Test func datadogOverTheSpanCapGetsTheAgentsAnswer() {
        let h = IngestHarness(configuration: Self.config(maxSpans: 50))
        var body: [UInt8] = []
        DatadogV04.encode(Self.spans(200), into: &body)
        // Like the agent: 200 (the drop counted) unless the tracer asked for real statuses.
        let hidden = h.send("/v0.4/traces", method: "PUT", body: body, headers: [("Content-Type", "application/msgpack")])
        #expect(hidden.status == 200)
        #expect(text(hidden).contains("rate_by_service"))
        let real = h.send("/v0.4/traces", method: "PUT", body: body,
                          headers: [("Content-Type", "application/msgpack"), ("Datadog-Send-Real-Http-Status", "yes")])
        #expect(real.status == 413)
        #expect(text(real).contains("too_many_spans"))
        // Compressed: counted while inflating.
        var big: [UInt8] = []
        DatadogV04.encode(Self.spans(20_000), into: &big)
        let gz = h.send("/v0.4/traces", method: "PUT", body: GzipCompressor(level: 1).compress(big),
                        headers: [("Content-Type", "application/msgpack"), ("Content-Encoding", "gzip"), ("Datadog-Send-Real-Http-Status", "1")])
        #expect(gz.status == 413)
        let gz7 = h.send("/v0.7/traces", method: "PUT", body: GzipCompressor(level: 1).compress(Self.v07Payload(chunks: [10_000, 10_000])),
                         headers: [("Content-Type", "application/msgpack"), ("Content-Encoding", "gzip"), ("Datadog-Send-Real-Http-Status", "1")])
        #expect(gz7.status == 413)
        #expect(text(gz7).contains("too_many_spans"))
        #expect(h.capture.batchCount == 0)
        let s = h.stats.snapshot["datadog_v04"]
        #expect(s?.tooManySpans == 3)
        #expect(s?.droppedSpans == 51)
    }

    @Test func streamingCountersResumeAcrossPrefixes() {
        let batch = Self.spans(300)
        var v04: [UInt8] = [], v2: [UInt8] = [], proto: [UInt8] = []
        DatadogV04.encode(batch, into: &v04)
        ZipkinJSONV2.encode(batch, into: &v2)
        ZipkinProto3.encode(batch, into: &proto)
        // v0.5: [strings, [[span-array × 300]]]
        var v05: [UInt8] = []
        MessagePackWriter.writeArrayHeader(2, into: &v05)
        MessagePackWriter.writeArrayHeader(2, into: &v05)
        MessagePackWriter.writeString("web", into: &v05)
        MessagePackWriter.writeString("op", into: &v05)
        MessagePackWriter.writeArrayHeader(1, into: &v05)
        MessagePackWriter.writeArrayHeader(300, into: &v05)
        for _ in 0..<300 {
            MessagePackWriter.writeArrayHeader(12, into: &v05)
            for _ in 0..<12 { MessagePackWriter.writeUInt(1, into: &v05) }
        }
        let v07 = Self.v07Payload(chunks: [100, 150, 50])
        for (decoder, body) in [(IngestEndpoints.Decoder.datadogV04, v04), (.zipkinV2JSON, v2), (.zipkinV2Proto, proto), (.datadogV05, v05), (.datadogV07, v07)] {
            // Prefixes that grow by 1…97 bytes in a fixed, irregular pattern, cutting every kind of element.
            let c = StreamingSpanCounter(decoder)!
            var ok = true
            body.withUnsafeBytes { raw in
                var end = 0, step = 0
                while end < raw.count {
                    step += 1
                    end = min(raw.count, end + (step &* 37) % 97 + 1)
                    ok = ok && c.feed(UnsafeRawBufferPointer(rebasing: raw[..<end]), max: 299)
                }
            }
            #expect(!ok && c.over, "\(decoder)")
            // Exactly at the cap, fed byte by byte: never over.
            let d = StreamingSpanCounter(decoder)!
            var fine = true
            body.withUnsafeBytes { raw in
                for end in 1...raw.count { fine = fine && d.feed(UnsafeRawBufferPointer(rebasing: raw[..<end]), max: 300) }
            }
            #expect(fine && !d.over, "\(decoder)")
        }
    }

    /// A v0.7 tracer payload: `{env, chunks: [{priority, tags, spans: [span × n]}, …], hostname}`.
    static func v07Payload(chunks: [Int]) -> [UInt8] {
        var v07: [UInt8] = []
        MessagePackWriter.writeMapHeader(3, into: &v07)
        MessagePackWriter.writeString("env", into: &v07)
        MessagePackWriter.writeString("prod", into: &v07)
        MessagePackWriter.writeString("chunks", into: &v07)
        MessagePackWriter.writeArrayHeader(chunks.count, into: &v07)
        for n in chunks {
            MessagePackWriter.writeMapHeader(3, into: &v07)
            MessagePackWriter.writeString("priority", into: &v07)
            MessagePackWriter.writeInt(1, into: &v07)
            MessagePackWriter.writeString("tags", into: &v07)
            MessagePackWriter.writeMapHeader(1, into: &v07)
            MessagePackWriter.writeString("_dd.p.dm", into: &v07)
            MessagePackWriter.writeString("-0", into: &v07)
            MessagePackWriter.writeString("spans", into: &v07)
            MessagePackWriter.writeArrayHeader(n, into: &v07)
            for i in 0..<n {
                MessagePackWriter.writeMapHeader(2, into: &v07)
                MessagePackWriter.writeString("trace_id", into: &v07)
                MessagePackWriter.writeUInt(UInt64(i + 1), into: &v07)
                MessagePackWriter.writeString("span_id", into: &v07)
                MessagePackWriter.writeUInt(UInt64(i + 1), into: &v07)
            }
        }
        MessagePackWriter.writeString("hostname", into: &v07)
        MessagePackWriter.writeString("node-1", into: &v07)
        return v07
    }

    @Test func spanCounterMatchesTheDecodersOnEveryFormat() throws {
        let batch = Self.spans(300)
        var v2: [UInt8] = [], proto: [UInt8] = [], v04: [UInt8] = []
        ZipkinJSONV2.encode(batch, into: &v2)
        ZipkinProto3.encode(batch, into: &proto)
        DatadogV04.encode(batch, into: &v04)
        typealias D = IngestEndpoints.Decoder
        #expect(D.zipkinV2JSON.countSpans(v2, max: 1000) == 300)
        #expect(D.zipkinV2Proto.countSpans(proto, max: 1000) == 300)
        #expect(D.datadogV04.countSpans(v04, max: 1000) == 300)
        #expect(D.zipkinV2JSON.countSpans(v2, max: 10) == 11)  // stops just past the cap
        // Braces inside strings are not spans; v0.3 JSON nests spans one level deeper.
        #expect(D.zipkinV2JSON.countSpans(Array(#"[{"traceId":"1","id":"1","name":"{\"{"}]"#.utf8), max: 10) == 1)
        #expect(D.datadogV03JSON.countSpans(Array(#"[[{"trace_id":1,"span_id":1,"meta":{"a":"{"}},{"trace_id":1,"span_id":2}]]"#.utf8), max: 10) == 2)
        // v0.7: {chunks: [{spans: [..]}]}
        var v07: [UInt8] = []
        MessagePackWriter.writeMapHeader(2, into: &v07)
        MessagePackWriter.writeString("env", into: &v07)
        MessagePackWriter.writeString("prod", into: &v07)
        MessagePackWriter.writeString("chunks", into: &v07)
        MessagePackWriter.writeArrayHeader(2, into: &v07)
        for n in [3, 4] {
            MessagePackWriter.writeMapHeader(2, into: &v07)
            MessagePackWriter.writeString("priority", into: &v07)
            MessagePackWriter.writeInt(1, into: &v07)
            MessagePackWriter.writeString("spans", into: &v07)
            MessagePackWriter.writeArrayHeader(n, into: &v07)
            for _ in 0..<n { MessagePackWriter.writeMapHeader(0, into: &v07) }
        }
        #expect(D.datadogV07.countSpans(v07, max: 100) == 7)
        // v0.5: [strings, [[span-array, …]]]
        var v05: [UInt8] = []
        MessagePackWriter.writeArrayHeader(2, into: &v05)
        MessagePackWriter.writeArrayHeader(1, into: &v05)
        MessagePackWriter.writeString("web", into: &v05)
        MessagePackWriter.writeArrayHeader(1, into: &v05)
        MessagePackWriter.writeArrayHeader(5, into: &v05)
        for _ in 0..<5 {
            MessagePackWriter.writeArrayHeader(12, into: &v05)
            for _ in 0..<12 { MessagePackWriter.writeUInt(0, into: &v05) }
        }
        #expect(D.datadogV05.countSpans(v05, max: 100) == 5)
    }

    // MARK: item 1b — the memory budget

    @Test func overTheMemoryBudgetIs503WithRetryAfterAndCounted() {
        var c = IngestConfiguration()
        c.memoryBudget = MemoryBudget(limit: 4096)
        let h = IngestHarness(configuration: c)
        let r = h.send("/api/v2/spans", body: Self.tinyZipkin(50))
        #expect(r.status == 503)
        #expect(r.headers.contains { $0.name == "Retry-After" && $0.value == "1" })
        #expect(text(r).contains("\"error\":\"overloaded\""))
        #expect(c.memoryBudget.refused == 1)
        #expect(h.stats.snapshot["zipkin_v2_json"]?.overloaded == 1)
        #expect(h.capture.batchCount == 0)
    }

    @Test func theBudgetIsHeldUntilTheConsumerAnswersThenReleased() throws {
        var c = IngestConfiguration()
        c.memoryBudget = MemoryBudget(limit: 64 << 20)
        let gate = GateConsumer()
        let h = IngestHarness(configuration: c, consumer: gate)
        let answered = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = h.send("/api/v2/spans", body: GzipCompressor(level: 1).compress(Self.tinyZipkin(20)), headers: [("Content-Encoding", "gzip")])
            answered.signal()
        }
        #expect(eventually { gate.waiting > 0 })
        // Held while the consumer has the batch: the body plus its spans (not the pre-inflate bound).
        let held = c.memoryBudget.inUse
        #expect(held > 0 && held < 1 << 20)
        gate.open()
        answered.wait()
        #expect(c.memoryBudget.inUse == 0)
    }

    @Test func memoryReservationsResizeAndReleaseOnce() throws {
        let b = MemoryBudget(limit: 1000)
        let r = try #require(b.reserve(600))
        #expect(b.reserve(500) == nil)
        #expect(r.resize(to: 900))
        #expect(!r.resize(to: 1100))
        #expect(b.inUse == 900)
        #expect(r.resize(to: 100))
        r.release()
        r.release()
        #expect(b.inUse == 0)
        #expect(b.refused == 2)
        #expect(MemoryBudget.machineDefault <= 2 << 30)
    }

    // MARK: item 1c — the decode pool

    @Test func largeBodiesAreDecodedOnThePoolAndAFullPoolIs503() {
        var c = IngestConfiguration()
        c.offloadPlainBytes = 512
        c.decodePool = DecodePool(workers: 1, maxQueued: 1)
        let h = IngestHarness(configuration: c)
        // Through the pool, same answer and batch as inline.
        #expect(h.send("/api/v2/spans", body: Self.tinyZipkin(40)).status == 202)
        #expect(h.capture.batches.last?.count == 40)
        // Occupy the only slot (once the first job has left it): the next large body is refused at once.
        #expect(eventually { c.decodePool.queued == 0 })
        let release = DispatchSemaphore(value: 0)
        #expect(c.decodePool.submit { release.wait() })
        let r = h.send("/api/v2/spans", body: Self.tinyZipkin(40))
        release.signal()
        #expect(r.status == 503)
        #expect(r.headers.contains { $0.name == "Retry-After" })
        #expect(c.decodePool.refused == 1)
        // Small bodies never wait for the pool.
        #expect(h.send("/api/v2/spans", body: Array(zipkinSpan.utf8)).status == 202)
    }

    @Test func aSmallCompressedBodyThatInflatesPastTheInlineCapMovesToThePool() {
        var c = IngestConfiguration()
        c.offloadCompressedBytes = 1024
        let h = IngestHarness(configuration: c)
        let body = GzipCompressor(level: 1).compress(Self.tinyZipkin(2000))  // ~50 KB inflated, far less on the wire
        #expect(body.count < 1024)
        #expect(h.send("/api/v2/spans", body: body, headers: [("Content-Encoding", "gzip")]).status == 202)
        #expect(h.capture.batches.last?.count == 2000)
    }

    /// The issue's bomb, scaled to 1/16 so the suite stays fast, over real sockets: refused with
    /// 413 before its spans are built, while a small request on another connection is answered.
    @Test func aGzipBombOfTinySpansIsRefusedOverRealSockets() throws {
        let relay = try TestRelay(Self.logYAML)
        defer { relay.stop() }
        let bomb = GzipCompressor(level: 1).compress(Self.tinyZipkin(4_194_294 / 16))
        let started = Date()
        let (status, _, body) = try relay.post("/api/v2/spans", bomb, headers: [("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
        #expect(status == 413)
        #expect(body.contains("too_many_spans"))
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(try relay.post("/api/v2/spans", Array(zipkinSpan.utf8)).0 == 202)
        #expect(relay.service.ingestStats.snapshot["zipkin_v2_json"]?.tooManySpans == 1)
    }

    static let logYAML = """
    type: Mesh
    name: default
    tracing:
      defaultBackend: out
      backends:
      - name: out
        type: discard
    """

    // MARK: item 8 — log injection

    static let forged = "web\n2026-01-01T00:00:00 critical tracerelay: FORGED"

    @Test func logSafeEscapesControlCharactersAndNothingElse() {
        #expect(logSafe("web") == "web")
        #expect(logSafe("café ¢ 東京") == "café ¢ 東京")
        #expect(logSafe("a\nb\rc\td\u{1}e\u{7f}f\u{85}g\u{2028}h") == #"a\nb\rc\td\u0001e\u007ff\u0085g\u2028h"#)
        #expect(logSafe(logSafe(Self.forged)) == logSafe(Self.forged))
        #expect(!logSafe(Self.forged).contains("\n"))
    }

    /// The relay's own log handler, in both formats, writes the batch line of a `log` backend
    /// as one line whatever the span's service name holds (the call site passes it raw).
    @Test(arguments: [LogFormat.text, .json]) func aForgedServiceNameMakesOneLogLine(format: LogFormat) throws {
        let file = LogFile()
        let logger = Logger(label: "tracerelay") { LogLineHandler(label: $0, format: format, sink: file.sink, metadataProvider: nil) }
        let table = try RoutingTable(RelayConfig.embeddedDefault)  // a `log` backend: a line per batch
        let consumer = RoutingConsumer(table: table, targets: Array(repeating: nil, count: table.backends.count), logger: logger)
        let h = IngestHarness(configuration: IngestConfiguration(), consumer: consumer)
        let span = #"[{"traceId":"1","id":"1","localEndpoint":{"serviceName":"web\n2026-01-01T00:00:00 critical tracerelay: FORGED"}}]"#
        #expect(h.send("/api/v2/spans", body: Array(span.utf8)).status == 202)
        let lines = file.lines
        #expect(lines.count == 1, "\(lines)")
        #expect(!lines.contains { $0.hasPrefix("2026-01-01T00:00:00 critical") })
        if format == .json {
            let object = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
            #expect(object?["first.service"] as? String == Self.forged, "the exact value, escaped once")
        } else {
            #expect(lines[0].contains(#"web\n2026-01-01T00:00:00 critical tracerelay: FORGED"#))
        }
    }

    /// Messages and metadata (nested too) are escaped by the relay's handler, in both formats:
    /// a call site passes wire values as they are.
    @Test(arguments: [LogFormat.text, .json]) func theHandlerEscapesMessagesAndMetadata(format: LogFormat) {
        let file = LogFile()
        let logger = Logger(label: "tracerelay") { LogLineHandler(label: $0, format: format, sink: file.sink, metadataProvider: nil) }
        logger.error("backend answered \(Self.forged)", metadata: ["answer": "\(Self.forged)", "list": .array([.string(Self.forged)])])
        #expect(file.lines.count == 1, "\(file.text)")
    }
}

/// Holds every batch until `open()`: the consumer's answer is what releases the budget.
final class GateConsumer: SpanConsumer, Sendable {
    private let state = Mutex<(open: Bool, pending: [@Sendable (Result<Void, ConsumeError>) -> Void])>((false, []))
    var waiting: Int { state.withLock { $0.pending.count } }
    func consume(_ batch: SpanBatch, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
        let now: Bool = state.withLock { s in
            if s.open { return true }
            s.pending.append(completion)
            return false
        }
        if now { completion(.success(())) }
    }
    func open() {
        let pending = state.withLock { s in s.open = true; defer { s.pending = [] }; return s.pending }
        for c in pending { c(.success(())) }
    }
}
