import Spans

/// Collects the reasons behind one routing decision (used only by `explain`).
final class ExplainTrace {
    var notes: [String] = []
    var candidates: [(MatchedPolicy, Bool, String)] = []
    func note(_ s: String) { notes.append(s) }
    func candidate(_ p: MatchedPolicy, matched: Bool, detail: String) { candidates.append((p, matched, detail)) }
}

/// A resource named in explanations: `{type: "TrafficTrace", name: "eu"}`.
public struct ResourceRef: Hashable, Sendable, CustomStringConvertible {
    public var type: String
    public var name: String
    public var description: String { "\(type) '\(name)'" }
}

/// Why a span with given tags goes where it goes: the `explain` command's answer.
public struct Explanation: Sendable {
    public struct Candidate: Hashable, Sendable {
        public var resource: ResourceRef
        public var matched: Bool
        public var detail: String
    }
    public var decision: RouteDecision
    /// The backend the span is sent to; nil when refused.
    public var backend: String?
    public var backendRegion: String?
    /// The backend the policies chose before region pinning.
    public var selectedBackend: String?
    public var matched: ResourceRef?
    /// The span's region (nil: unknown, not pinned).
    public var region: String?
    /// Refusal reason code, nil when routed.
    public var refused: String?
    public var sampled: Bool
    public var samplingReason: String
    public var addedTags: [TagPair]
    /// The mesh tags as resolved (request tags, span tags, service name).
    public var resolvedTags: [TagPair]
    public var candidates: [Candidate]
    public var notes: [String]
}

extension RoutingTable {
    public func describe(_ p: MatchedPolicy) -> ResourceRef {
        switch p {
        case .trafficTrace(let i): ResourceRef(type: "TrafficTrace", name: config.trafficTraces[i].name)
        case .meshTrace(let i): ResourceRef(type: "MeshTrace", name: config.meshTraces[i].name)
        case .meshDefault(let i): ResourceRef(type: "Mesh", name: config.meshes[i].name)
        }
    }

    /// Routes a span carrying `tags` (as span tags) and explains the decision.
    public func explain(tags: [TagPair], requestTags: [TagPair] = [], traceID: TraceID? = nil,
                        debug: Bool = false, samplingPriority: Int8? = nil) -> Explanation {
        var batch = SpanBatch(metadata: BatchMetadata(format: .constructed, requestTags: requestTags.map { ($0.key, $0.value) }))
        var span = Span(traceID: traceID ?? TraceID(low: 0), id: 1)
        span.tags = batch.addTags(tags.map { Tag(key: batch.intern($0.key), value: batch.intern($0.value)) })
        if debug { span.flags.insert(.debug) }
        span.samplingPriority = samplingPriority
        batch.spans.append(span)
        let trace = ExplainTrace()
        let ctx = RequestContext(table: self, metadata: batch.metadata)
        var resolved: [TagPair] = []
        let v: Verdict = ctx.withSlots { base in
            batch.storage.withUnsafeBytes { storage in
                batch.tags.withUnsafeBufferPointer { tagBuf in
                    withUnsafeTemporaryAllocation(of: Slot.self, capacity: keys.count) { slots in
                        withResolver { $0.resolve(span, storage: storage, tags: tagBuf, base: base, into: slots) }
                        for (i, k) in keys.enumerated() { if let s = slots[i].string { resolved.append(TagPair(k.name, s)) } }
                        return verdict(UnsafeBufferPointer(slots), trace: trace)
                    }
                }
            }
        }
        var d = decision(v, span: span)
        var samplingReason: String
        if d.backend == nil {
            samplingReason = "not sent: refused"
        } else if debug {
            samplingReason = "kept: Zipkin debug flag"
        } else if let p = samplingPriority, p >= 2 || p <= -1 {
            samplingReason = p >= 2 ? "kept: upstream sampling priority \(p) (≥ 2)" : "dropped: upstream sampling priority \(p) (≤ -1)"
        } else if v.threshold.all {
            samplingReason = "kept: sampling 100%"
        } else if traceID == nil {
            d.sampled = false
            samplingReason = "sampling \(fmt(percent(v.threshold)))%: no --trace-id given, decision depends on the trace id"
        } else {
            samplingReason = "\(d.sampled ? "kept" : "dropped"): trace-id hash \(hex16(RoutingTable.traceHash(traceID!))) \(d.sampled ? "<" : "≥") threshold \(hex16(v.threshold.below)) (sampling \(fmt(percent(v.threshold)))%)"
        }
        var regionName: String? = nil
        if let r = d.region {
            regionName = r >= 0 ? regionNames[r] : resolved.first { $0.key == "region" }?.value
        }
        return Explanation(
            decision: d,
            backend: d.backend.map { backends[$0].name },
            backendRegion: d.backend.flatMap { backends[$0].region },
            selectedBackend: d.selectedBackend.map { backends[$0].name },
            matched: d.matched.map(describe),
            region: regionName,
            refused: d.refusal?.rawValue,
            sampled: d.sampled,
            samplingReason: samplingReason,
            addedTags: tagSets[d.addedTags],
            resolvedTags: resolved,
            candidates: trace.candidates.map { Explanation.Candidate(resource: describe($0.0), matched: $0.1, detail: $0.2) },
            notes: trace.notes)
    }

    private func percent(_ t: Threshold) -> Double {
        t.all ? 100 : (Double(t.below) / 18446744073709551616.0 * 100 * 1000).rounded() / 1000
    }

    /// One row of the routing table as `check` prints it.
    public struct Row: Hashable, Sendable {
        public var mesh: String
        public var resource: ResourceRef
        /// `kuma.io/service=web, kuma.io/zone=*` or `(default)`.
        public var selector: String
        /// The backend name, `(off)` when tracing is switched off, or `(none)`.
        public var backend: String
        public var region: String?
        public var sampling: Double
        /// A short note: precedence facts, fallback.
        public var note: String
    }

    /// The routing table in precedence order per mesh: MeshTraces (most specific first),
    /// TrafficTrace selectors (most specific first), then the Mesh default.
    public var rows: [Row] {
        var out: [Row] = []
        for (mi, m) in config.meshes.enumerated() {
            let mesh = meshes[mi]
            let mtsSorted = mesh.mts.sorted { mts[$0].rank > mts[$1].rank }
            for i in mtsSorted {
                let r = config.meshTraces[i]
                var sel: [String] = []
                if let n = r.targetName { sel.append("kuma.io/service=\(n)") }
                sel += r.targetTags.map(\.description)
                let b = mts[i].backend
                let pct = r.samplingOverall ?? (b >= 0 ? backends[b].sampling : 100)
                out.append(Row(mesh: m.name, resource: describe(.meshTrace(i)), selector: "targetRef \(r.targetKind.rawValue)" + (sel.isEmpty ? "" : " " + sel.joined(separator: ", ")),
                               backend: b >= 0 ? backends[b].name : "(off)", region: b >= 0 ? backends[b].region : nil, sampling: pct,
                               note: r.literalTags.isEmpty ? "" : "adds " + r.literalTags.map(\.description).joined(separator: ", ")))
            }
            var ttRows: [(Row, Int, Int, Int64?, Int)] = []
            for i in mesh.tts {
                let t = config.trafficTraces[i]
                let b = tts[i].backend >= 0 ? tts[i].backend : mesh.defaultBackend
                for (si, sel) in t.selectors.enumerated() {
                    let row = Row(mesh: m.name, resource: describe(.trafficTrace(i)), selector: sel.map(\.description).joined(separator: ", "),
                                  backend: b >= 0 ? backends[b].name : "(none)", region: b >= 0 ? backends[b].region : nil,
                                  sampling: b >= 0 ? backends[b].sampling : 0, note: t.backend == nil ? "default backend" : "")
                    ttRows.append((row, sel.count, tts[i].exact[si], t.modificationTime, t.document))
                }
            }
            ttRows.sort { a, b in
                if (a.1, a.2) != (b.1, b.2) { return (a.1, a.2) > (b.1, b.2) }
                if let x = a.3, let y = b.3, x != y { return x > y }
                return a.4 > b.4
            }
            out += ttRows.map(\.0)
            let d = mesh.defaultBackend
            out.append(Row(mesh: m.name, resource: describe(.meshDefault(mi)), selector: "(no policy matched)",
                           backend: d >= 0 ? backends[d].name : "(none)", region: d >= 0 ? backends[d].region : nil,
                           sampling: d >= 0 ? backends[d].sampling : 0, note: "defaultBackend"))
        }
        return out
    }
}
