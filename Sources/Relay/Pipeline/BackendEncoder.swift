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

    static func isDatadog(_ f: SpanFormat) -> Bool {
        switch f {
        case .datadogV03JSON, .datadogV04, .datadogV05, .datadogV07: true
        default: false
        }
    }

    /// The record for `routed` spans of `batch`.
    func encode(_ batch: SpanBatch, routed: [BatchRoutes.Routed], table: RoutingTable) -> Record {
        let needsRewrite = routed.contains { $0.addedTags != 0 }
            || (!keep128 && routed.contains { batch.spans[Int($0.span)].traceID.high != 0 })
            || splitService
        var work = batch
        let indices: [Int]
        if needsRewrite {
            indices = rewrite(&work, routed: routed, table: table)
        } else {
            indices = routed.map { Int($0.span) }
        }
        var out: [UInt8] = []
        var meta: RecordMeta
        let ddOrigin = Self.isDatadog(batch.metadata.format)
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
            let tags = batch.metadata.requestTags.map { TagPair($0.key, $0.value) }
            var headers = meta.headers
            if !tags.isEmpty { headers.append((TracerelayTagsHeader.name, TracerelayTagsHeader.format(tags))) }
            meta.groupKey = RecordMeta.groupKey(headers)
        case .file, .log, .discard:
            ZipkinJSONV2.encodeLines(work, spans: indices, into: &out)
            meta = RecordMeta(format: .ndjson)
        }
        return Record(bytes: out, spanCount: indices.count, metadata: meta.encoded())
    }

    private func datadog(_ batch: SpanBatch, _ indices: [Int], _ out: inout [UInt8]) -> RecordMeta {
        DatadogV04.encode(batch, spans: indices, into: &out)
        let traces = MsgpackArray.split(out[...])?.0 ?? 0
        var headers = batch.metadata.forwardHeaders
        if !Self.isDatadog(batch.metadata.format) || !headers.contains(where: { $0.name.lowercased() == "datadog-meta-tracer-version" }) {
            headers = [("Datadog-Meta-Lang", "tracerelay"), ("Datadog-Meta-Tracer-Version", relayVersion)]
        }
        return RecordMeta(format: .datadogV04, traceCount: traces, groupKey: RecordMeta.groupKey(headers))
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
