import Buffering
import Codecs
import Routing
import Spans

/// Turns the spans one backend receives from a batch into one queue record in that backend's
/// wire format, at ingest (so what is spilled and replayed after a restart needs no routing
/// or encoding again).
///
/// - zipkin: Zipkin v2 JSON (spans that arrived as Zipkin v2 JSON are copied as their original
///   bytes) or proto3 (`apiVersion: httpProto`); `traceId128bit: false` (Kuma's default) keeps
///   the low 64 bits of a 128-bit trace id, as Kuma's Envoy configuration does.
/// - datadog: v0.4 msgpack grouped into traces; `splitService` renames services per direction
///   (`web_INBOUND`, `web_OUTBOUND_db`), as Kuma does. The tracer's `Datadog-Meta-*` headers
///   travel with the record.
/// - tracerelay: Zipkin-origin spans as Zipkin v2 JSON with full ids, Datadog-origin spans as
///   Datadog v0.4 (nothing lost between relays); the request-level mesh tags travel as
///   `X-Tracerelay-Tags`.
/// - file: Zipkin v2 JSON lines.
/// MeshTrace literal tags (`addedTags`) are added to the spans they were decided for.
struct BackendEncoder: Sendable {
    let kind: BackendConfig.Kind
    let zipkinProto: Bool
    let keep128: Bool
    let splitService: Bool

    init(_ backend: BackendConfig) {
        kind = backend.kind
        zipkinProto = backend.kind == .zipkin && backend.apiVersion == "httpProto"
        keep128 = backend.kind != .zipkin || backend.traceId128bit
        splitService = backend.kind == .datadog && backend.splitService
    }

    /// The record for `routed` spans of `batch`.
    func encode(_ batch: SpanBatch, routed: [BatchRoutes.Routed], table: RoutingTable) -> Record {
        let needsRewrite = routed.contains { $0.addedTags != 0 }
            || (!keep128 && routed.contains { batch.spans[Int($0.span)].traceID.high != 0 })
            || splitService
        if !needsRewrite && routed.count == batch.count, let whole = wholeBody(batch) { return whole }
        var work = batch
        let indices: [Int]
        if needsRewrite {
            indices = rewrite(&work, routed: routed, table: table)
        } else {
            indices = routed.map { Int($0.span) }
        }
        var out: [UInt8] = []
        var meta: RecordMeta
        let ddOrigin = batch.metadata.format.isDatadog
        switch kind {
        case .zipkin:
            if zipkinProto {
                ZipkinProto3.encode(work, spans: indices, into: &out)
                meta = RecordMeta(format: .zipkinProto)
            } else {
                ZipkinJSONV2.encode(work, spans: indices, into: &out)
                meta = RecordMeta(format: .zipkinJSON)
            }
        case .datadog:
            meta = datadog(work, indices, &out)
        case .tracerelay:
            if ddOrigin {
                meta = datadog(work, indices, &out)
            } else {
                ZipkinJSONV2.encode(work, spans: indices, into: &out)
                meta = RecordMeta(format: .zipkinJSON)
            }
            meta.groupKey = relayGroupKey(batch, meta)
        case .file, .log, .discard:
            ZipkinJSONV2.encodeLines(work, spans: indices, into: &out)
            meta = RecordMeta(format: .ndjson)
        }
        return Record(bytes: out, spanCount: indices.count, metadata: meta.encoded())
    }

    /// When every span of the batch goes to this backend unchanged and the backend takes the
    /// batch's own format, the request body itself is the record: no encoding and no copy (the
    /// record shares the body's buffer). Zipkin v2 JSON qualifies when the body is exactly a
    /// list of the spans' original bytes (every span kept its `raw`); Datadog v0.4 always (the
    /// tracer wrote it for an agent).
    private func wholeBody(_ batch: SpanBatch) -> Record? {
        let body = batch.storage[0..<batch.bodyCount]
        switch (kind, batch.metadata.format) {
        case (.zipkin, .zipkinV2JSON) where !zipkinProto, (.tracerelay, .zipkinV2JSON):
            guard Self.bodyIsListOfRaws(batch) else { return nil }
            var meta = RecordMeta(format: .zipkinJSON)
            if kind == .tracerelay { meta.groupKey = relayGroupKey(batch, meta) }
            return Record(bytes: body, spanCount: batch.count, metadata: meta.encoded()[...])
        case (.datadog, .datadogV04), (.tracerelay, .datadogV04):
            guard let (traces, _) = MsgpackArray.split(body) else { return nil }
            var meta = RecordMeta(format: .datadogV04, traceCount: traces,
                                  groupKey: RecordMeta.groupKey(datadogHeaders(batch)))
            if kind == .tracerelay { meta.groupKey = relayGroupKey(batch, meta) }
            return Record(bytes: body, spanCount: batch.count, metadata: meta.encoded()[...])
        default:
            return nil
        }
    }

    /// Whether the body is `[raw0, raw1, …]` with only whitespace around the brackets and commas:
    /// then forwarding it whole forwards exactly the spans, each byte for byte.
    static func bodyIsListOfRaws(_ batch: SpanBatch) -> Bool {
        guard !batch.isEmpty else { return false }
        return batch.storage.withUnsafeBufferPointer { b -> Bool in
            @inline(__always) func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }
            var i = 0
            let end = batch.bodyCount
            while i < end, isSpace(b[i]) { i += 1 }
            guard i < end, b[i] == UInt8(ascii: "[") else { return false }
            i += 1
            for (k, s) in batch.spans.enumerated() {
                guard !s.raw.isEmpty else { return false }
                let start = Int(s.raw.offset)
                guard start >= i, start + Int(s.raw.count) <= end else { return false }
                var commas = 0
                while i < start {
                    if b[i] == UInt8(ascii: ",") { commas += 1 } else if !isSpace(b[i]) { return false }
                    i += 1
                }
                guard commas == (k == 0 ? 0 : 1) else { return false }
                i = start + Int(s.raw.count)
            }
            while i < end, isSpace(b[i]) { i += 1 }
            guard i < end, b[i] == UInt8(ascii: "]") else { return false }
            i += 1
            while i < end, isSpace(b[i]) { i += 1 }
            return i == end
        }
    }

    private func relayGroupKey(_ batch: SpanBatch, _ meta: RecordMeta) -> String {
        let tags = batch.metadata.requestTags.map { TagPair($0.key, $0.value) }
        var headers = meta.headers
        if !tags.isEmpty { headers.append((TracerelayTagsHeader.name, TracerelayTagsHeader.format(tags))) }
        return RecordMeta.groupKey(headers)
    }

    private func datadogHeaders(_ batch: SpanBatch) -> [(name: String, value: String)] {
        let headers = batch.metadata.forwardHeaders
        if !batch.metadata.format.isDatadog || !headers.contains(where: { $0.name.lowercased() == "datadog-meta-tracer-version" }) {
            return [("Datadog-Meta-Lang", "tracerelay"), ("Datadog-Meta-Tracer-Version", relayVersion)]
        }
        return headers
    }

    private func datadog(_ batch: SpanBatch, _ indices: [Int], _ out: inout [UInt8]) -> RecordMeta {
        DatadogV04.encode(batch, spans: indices, into: &out)
        let traces = MsgpackArray.split(out[...])?.0 ?? 0
        return RecordMeta(format: .datadogV04, traceCount: traces, groupKey: RecordMeta.groupKey(datadogHeaders(batch)))
    }

    /// Applies MeshTrace tags, 64-bit trace ids and split service names to the routed spans of
    /// a private copy of the batch; returns their indices. Rare (only configs that ask for it).
    private func rewrite(_ b: inout SpanBatch, routed: [BatchRoutes.Routed], table: RoutingTable) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(routed.count)
        for r in routed {
            let i = Int(r.span)
            var s = b.spans[i]
            var changed = false
            if !keep128 && s.traceID.high != 0 {
                s.traceID.high = 0
                changed = true
            }
            if r.addedTags != 0 {
                let added = table.tagSets[Int(r.addedTags)]
                let old = Array(b.tags(of: s))
                var list: [Tag] = []
                for t in old where !added.contains(where: { b.string(t.key) == $0.key }) { list.append(t) }
                for a in added { list.append(Tag(key: b.intern(a.key), value: b.intern(a.value))) }
                s.tags = b.addTags(list)
                changed = true
            }
            if splitService, !s.localEndpoint.serviceName.isEmpty {
                let service = b.string(s.localEndpoint.serviceName)
                switch s.kind {
                case .server, .consumer:
                    s.localEndpoint.serviceName = b.intern(service + "_INBOUND")
                    changed = true
                case .client, .producer:
                    let dest = b.string(s.remoteEndpoint.serviceName)
                    s.localEndpoint.serviceName = b.intern(service + "_OUTBOUND" + (dest.isEmpty ? "" : "_" + dest))
                    changed = true
                case .unspecified:
                    break
                }
            }
            if changed {
                s.raw = .empty
                b.spans[i] = s
            }
            out.append(i)
        }
        return out
    }
}

/// The relay's version, sent as `Datadog-Meta-Tracer-Version` and `User-Agent`.
public let relayVersion = "0.2.0"
