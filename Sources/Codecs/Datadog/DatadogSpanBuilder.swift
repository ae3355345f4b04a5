import Spans

/// Applies the Datadog → model rules for `meta` and `metrics` entries (see DatadogMapping.swift),
/// shared by every Datadog decoder so the formats cannot drift apart.
/// Keys and values arrive as `Str`s into the batch storage plus their bytes.
@usableFromInline
struct DDSpanBuilder {
    /// The `_dd.p.tid` found in the current chunk: (low trace id of its span, high bits).
    var chunkTid: (low: UInt64, high: UInt64)? = nil
    /// `_dd.p.tid` of the span being decoded (its trace id may come later in the map).
    var pendingTid: UInt64? = nil
    /// Whether a span of the current chunk carried `_sampling_priority_v1`.
    var chunkHasPriority = false

    @inline(__always)
    mutating func meta(key kb: UnsafeRawBufferPointer, _ key: Str, value vb: UnsafeRawBufferPointer, _ value: Str,
                       span: inout Span, batch: inout SpanBatch) {
        if key.isEmpty { return }
        switch kb.count {
        case 9:
            if DDKey.eq(kb, 0..<9, "span.kind") {
                span.kind = DDKey.parseKind(vb, 0..<vb.count)
                return
            }
            if DDKey.eq(kb, 0..<9, "_dd.p.tid") {
                if let hi = parseHex64(vb) { pendingTid = hi }
                return
            }
        case 12:
            if DDKey.eq(kb, 0..<12, "peer.service") { span.remoteEndpoint.serviceName = value }
        case 8:
            if DDKey.eq(kb, 0..<8, "out.host") { setAddress(vb, value, &span, overwrite: false) }
            else if DDKey.eq(kb, 0..<8, "out.port") { let p = DDKey.parsePort(vb, 0..<vb.count); if p != 0 { span.remoteEndpoint.port = p } }
        case 22:
            if DDKey.eq(kb, 0..<22, "network.destination.ip") { setAddress(vb, value, &span, overwrite: true) }
        case 24:
            if DDKey.eq(kb, 0..<24, "network.destination.port") { let p = DDKey.parsePort(vb, 0..<vb.count); if p != 0 { span.remoteEndpoint.port = p } }
        default: break
        }
        batch.tags.append(Tag(key: key, value: value))
    }

    @inline(__always)
    func setAddress(_ vb: UnsafeRawBufferPointer, _ value: Str, _ span: inout Span, overwrite: Bool) {
        switch DDKey.ipKind(vb, 0..<vb.count) {
        case .v4: if overwrite || span.remoteEndpoint.ipv4.isEmpty { span.remoteEndpoint.ipv4 = value }
        case .v6: if overwrite || span.remoteEndpoint.ipv6.isEmpty { span.remoteEndpoint.ipv6 = value }
        case .none: break
        }
    }

    @inline(__always)
    mutating func metric(key kb: UnsafeRawBufferPointer, _ key: Str, value: Double, span: inout Span, batch: inout SpanBatch) {
        if key.isEmpty { return }
        switch kb.count {
        case 21:
            if DDKey.eq(kb, 0..<21, "_sampling_priority_v1") {
                span.samplingPriority = Int8(clamping: Int(value.isFinite ? max(-128, min(127, value.rounded())) : 0))
                chunkHasPriority = true
                return
            }
        case 13:
            if DDKey.eq(kb, 0..<13, "_dd.top_level"), value == 1 { span.flags.insert(.topLevel) }
        case 8, 24:
            if DDKey.eq(kb, 0..<kb.count, "out.port") || DDKey.eq(kb, 0..<kb.count, "network.destination.port"),
               value >= 1, value <= 65535 { span.remoteEndpoint.port = UInt16(value) }
        default: break
        }
        batch.metrics.append(Metric(key: key, value: value))
    }

    /// Call once a span is complete (its trace id known).
    @inline(__always)
    mutating func endSpan(_ span: Span) {
        if let hi = pendingTid {
            pendingTid = nil
            if chunkTid == nil { chunkTid = (span.traceID.low, hi) }
        }
    }

    /// Completes the chunk `spans[from...]`: every span whose low id matches the `_dd.p.tid`
    /// carrier gets the 128-bit id, and every span gets the chunk's sampling priority (the
    /// v0.7 chunk field `priority` when given, else as the agent finds it: `DDChunk.priority`);
    /// then resets for the next chunk.
    @inline(__always)
    mutating func finishChunk(_ batch: inout SpanBatch, from: Int, priority: Int8? = nil) {
        if let tid = chunkTid {
            chunkTid = nil
            for i in from..<batch.spans.count where batch.spans[i].traceID.low == tid.low && batch.spans[i].traceID.high == 0 {
                batch.spans[i].traceID.high = tid.high
            }
        }
        if chunkHasPriority || priority != nil {
            chunkHasPriority = false
            DDChunk.applyPriority(&batch, from..<batch.spans.count, chunkPriority: priority)
        }
    }
}

/// Datadog's trace-chunk rules that span more than one span.
enum DDChunk {
    /// The chunk's sampling priority as the datadog-agent derives it (`setChunkAttributes`):
    /// the root span's `_sampling_priority_v1`, else the first span's (in order) that has one.
    /// The root is the last span without a parent (`traceutil.GetRoot`); when there is none,
    /// the first span whose parent is not in the chunk.
    static func priority(_ spans: [Span], _ indices: some BidirectionalCollection<Int>) -> Int8? {
        var first: Int8? = nil, uniform = true
        for i in indices {
            guard let p = spans[i].samplingPriority else { continue }
            if first == nil { first = p } else if p != first { uniform = false }
        }
        guard let first else { return nil }
        if uniform { return first } // the common case: whichever span is the root, this is its value
        var root: Int? = nil
        for i in indices.reversed() where spans[i].parentID == 0 { root = i; break }
        if root == nil {
            // A partial chunk: its root is the span whose parent is elsewhere (rare; allocates).
            var ids = Set<UInt64>()
            for i in indices { ids.insert(spans[i].id) }
            root = indices.first { !ids.contains(spans[$0].parentID) }
        }
        if let root, let p = spans[root].samplingPriority { return p }
        return first
    }

    /// Gives every span in `range` the chunk's priority: `chunkPriority` when set (and not the
    /// agent's "none", -128), else `priority(…)`. Spans keep theirs when the chunk has none.
    static func applyPriority(_ batch: inout SpanBatch, _ range: Range<Int>, chunkPriority: Int8?) {
        let p = chunkPriority.flatMap { $0 == Int8.min ? nil : $0 } ?? priority(batch.spans, range)
        guard let p else { return }
        for i in range { batch.spans[i].samplingPriority = p }
    }
}
