import TestSupport
import Testing
import Spans
@testable import Codecs


/// Randomized robustness: mutated and truncated copies of a valid body must either fail with
/// a `DecodeError` that says what and where, or decode to a valid batch that also satisfies the
/// caller's property (a round trip, typically). Failures name the seed and round to replay.
enum Fuzz {
    /// Bytes that make JSON and msgpack parsers take unusual paths.
    static let interesting: [UInt8] = Array(#"{}[],:"\0123456789abcdefABCDEFeE+-.tfnul "#.utf8)
        + [0x00, 0x01, 0x08, 0x0A, 0x7F, 0x80, 0xFF, 0xc0, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0x90, 0x80, 0xa0]

    /// Runs `rounds` mutations of `valid` through `decode`; returns how many decoded and how
    /// many were refused. `property` returns a description of what is wrong, or nil.
    @discardableResult
    static func run(_ valid: [UInt8], rounds: Int, seed: UInt64,
                    sourceLocation: SourceLocation = #_sourceLocation,
                    decode: ([UInt8]) throws(DecodeError) -> SpanBatch,
                    property: (SpanBatch) -> String? = { _ in nil }) -> (ok: Int, failed: Int) {
        var rng = SplitMix64(seed: seed)
        var ok = 0, failed = 0
        for round in 0..<rounds {
            let b = mutate(valid, round: round, &rng)
            do throws(DecodeError) {
                let batch = try decode(b)
                ok += 1
                if let problem = Self.invalid(batch) ?? property(batch) {
                    Issue.record("seed \(seed) round \(round): \(problem)", sourceLocation: sourceLocation)
                    return (ok, failed)
                }
            } catch {
                failed += 1
                if error.message.isEmpty || (error.offset.map { $0 < 0 || $0 > b.count } ?? false) {
                    Issue.record("seed \(seed) round \(round): unhelpful error \(error)", sourceLocation: sourceLocation)
                    return (ok, failed)
                }
            }
        }
        return (ok, failed)
    }

    /// One mutation: a truncation, byte replacements, an inserted run of parser-significant
    /// bytes, or a removed run.
    static func mutate(_ valid: [UInt8], round: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var b = valid
        guard !b.isEmpty else { return b }
        switch round % 4 {
        case 0:
            b.removeLast(Int.random(in: 1...b.count, using: &rng))
        case 1:
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = Bool.random(using: &rng)
                    ? interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
        case 2:
            let run = (0..<Int.random(in: 1...6, using: &rng)).map { _ in interesting.randomElement(using: &rng)! }
            b.insert(contentsOf: run, at: Int.random(in: 0...b.count, using: &rng))
        default:
            let at = Int.random(in: 0..<b.count, using: &rng)
            b.removeSubrange(at..<min(b.count, at + Int.random(in: 1...16, using: &rng)))
        }
        return b
    }

    /// What makes a batch unusable downstream: zero ids, text outside the storage, list
    /// ranges outside the batch's arrays, `raw` outside the body. Nil when valid.
    static func invalid(_ batch: SpanBatch) -> String? {
        func inStorage(_ s: Str) -> Bool { Int(s.offset) + Int(s.count) <= batch.storage.count }
        func inStorage(_ e: Endpoint) -> Bool { inStorage(e.serviceName) && inStorage(e.ipv4) && inStorage(e.ipv6) }
        for (i, s) in batch.spans.enumerated() {
            if s.traceID.isZero || s.id == 0 { return "span \(i) has a zero id" }
            if !(inStorage(s.name) && inStorage(s.resource) && inStorage(s.type) && inStorage(s.localEndpoint) && inStorage(s.remoteEndpoint)) {
                return "span \(i) has text outside the storage"
            }
            if Int(s.raw.offset) + Int(s.raw.count) > batch.bodyCount { return "span \(i) raw is outside the body" }
            if Int(s.tags.upperBound) > batch.tags.count || Int(s.annotations.upperBound) > batch.annotations.count
                || Int(s.metrics.upperBound) > batch.metrics.count {
                return "span \(i) lists are outside the batch"
            }
            for t in batch.tags(of: s) where !(inStorage(t.key) && inStorage(t.value)) { return "span \(i) tag text outside the storage" }
            for a in batch.annotations(of: s) where !inStorage(a.value) { return "span \(i) annotation outside the storage" }
            for m in batch.metrics(of: s) where !inStorage(m.key) { return "span \(i) metric outside the storage" }
        }
        return nil
    }

    /// Property for Zipkin decoders: re-encoding as v2 JSON and decoding that gives the same
    /// spans (`SpanBatch.meaning`).
    static func zipkinRoundTrip(_ batch: SpanBatch) -> String? {
        var b = batch
        b.metadata.format = .constructed // force real encoding, not raw copies
        var out: [UInt8] = []
        ZipkinJSONV2.encode(b, into: &out)
        do throws(DecodeError) {
            let again = try ZipkinJSONV2.decode(out, metadata: BatchMetadata(format: .zipkinV2JSON))
            if again.meaning() != batch.meaning() {
                return "v2 JSON round trip changed the spans:\n\(batch.meaning())\n\(again.meaning())"
            }
            return nil
        } catch {
            return "its own v2 JSON encoding does not decode: \(error)"
        }
    }

    /// Property for Datadog decoders: re-encoding as v0.4 and decoding that keeps every span's
    /// identity, timing, error flag and tags (translation adds tags only for Zipkin origins).
    static func datadogRoundTrip(_ batch: SpanBatch) -> String? {
        var out: [UInt8] = []
        DatadogV04.encode(batch, into: &out)
        do throws(DecodeError) {
            let again = try DatadogV04.decode(out, metadata: BatchMetadata(format: .datadogV04))
            func key(_ b: SpanBatch) -> [String] {
                b.spans.map { s in
                    "\(s.traceID) \(s.id) \(s.parentID) \(s.startNanos) \(s.durationNanos) \(s.isError) "
                        + b.tags(of: s).filter { !["error", "error.msg", "span.type"].contains(b.string($0.key)) }.map { b.string($0.key) + "=" + b.string($0.value) }.sorted().joined(separator: ",")
                }.sorted()
            }
            // Spans whose service or name was empty gain the agent's defaults; compare the rest.
            let before = key(batch), after = key(again)
            if before.count != after.count { return "v0.4 round trip changed the span count \(before.count) → \(after.count)" }
            if before != after { return "v0.4 round trip changed the spans:\n\(before)\n\(after)" }
            return nil
        } catch {
            return "its own v0.4 encoding does not decode: \(error)"
        }
    }
}
