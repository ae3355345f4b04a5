import Spans

/// Writes spans as Datadog v0.4 span maps, translating spans of other origins as described in
/// DatadogMapping.swift. Works on the batch's bytes directly; the only allocations are the
/// trace grouping (one dictionary and index arrays per call) and the output's growth.
enum DDEncoder {
    typealias W = MessagePackWriter

    /// Span indices grouped by full trace id, groups and members in order of first appearance:
    /// `order[starts[g]..<starts[g+1]]` are group g's spans. A fixed number of allocations.
    static func groupByTrace(_ batch: SpanBatch, spans: [Int]?) -> (order: [Int], starts: [Int]) {
        let n = spans?.count ?? batch.spans.count
        @inline(__always) func index(_ k: Int) -> Int { spans?[k] ?? k }
        var groupOf: [TraceID: Int] = [:]
        groupOf.reserveCapacity(min(n, 1024))
        var group = [Int](repeating: 0, count: n)
        var sizes: [Int] = []
        for k in 0..<n {
            let id = batch.spans[index(k)].traceID
            if let g = groupOf[id] { group[k] = g; sizes[g] += 1 }
            else { group[k] = sizes.count; groupOf[id] = sizes.count; sizes.append(1) }
        }
        var starts = [Int](repeating: 0, count: sizes.count + 1)
        for g in 0..<sizes.count { starts[g + 1] = starts[g] + sizes[g] }
        var fill = starts
        var order = [Int](repeating: 0, count: n)
        for k in 0..<n { order[fill[group[k]]] = index(k); fill[group[k]] += 1 }
        return (order, starts)
    }

    static func encodeV04(_ batch: SpanBatch, spans: [Int]?, into out: inout [UInt8]) {
        let (order, starts) = groupByTrace(batch, spans: spans)
        let ddOrigin = batch.metadata.format.isDatadog
        out.reserveCapacity(out.count + order.count * 400)
        W.writeArrayHeader(starts.count - 1, into: &out)
        batch.storage.withUnsafeBytes { storage in
            let ctx = Ctx(batch: batch, storage: storage, ddOrigin: ddOrigin)
            for g in 0..<(starts.count - 1) {
                let chunk = order[starts[g]..<starts[g + 1]]
                W.writeArrayHeader(chunk.count, into: &out)
                // The chunk's sampling priority goes once, on its root (where the agent looks
                // first), else on its first span (the agent then takes any span's).
                let priority = DDChunk.priority(batch.spans, chunk)
                let carrier = priority == nil ? -1 : (chunk.last(where: { batch.spans[$0].parentID == 0 }) ?? chunk.first!)
                for k in chunk.indices {
                    let i = order[k]
                    ctx.writeSpan(batch.spans[i], firstOfChunk: k == starts[g], priority: i == carrier ? priority : nil, into: &out)
                }
            }
        }
    }

    /// Per-call context: the batch and a pointer to its storage.
    struct Ctx {
        let batch: SpanBatch
        let storage: UnsafeRawBufferPointer
        let ddOrigin: Bool

        func bytes(_ s: Str) -> UnsafeRawBufferPointer {
            s.isEmpty ? UnsafeRawBufferPointer(start: nil, count: 0)
                : UnsafeRawBufferPointer(rebasing: storage[Int(s.offset)..<Int(s.offset) + Int(s.count)])
        }

        func eq(_ s: Str, _ lit: StaticString) -> Bool {
            s.count == lit.utf8CodeUnitCount && (s.count == 0 || DDKey.eq(storage, Int(s.offset)..<Int(s.offset + s.count), lit))
        }

        func tag(_ span: Span, _ key: StaticString) -> Str? {
            for i in Int(span.tags.lowerBound)..<Int(span.tags.upperBound) where eq(batch.tags[i].key, key) {
                return batch.tags[i].value
            }
            return nil
        }

        func hasMetric(_ span: Span, _ key: StaticString) -> Bool {
            for i in Int(span.metrics.lowerBound)..<Int(span.metrics.upperBound) where eq(batch.metrics[i].key, key) { return true }
            return false
        }

        func writeStr(_ s: Str, into out: inout [UInt8]) { W.writeString(bytes(s), into: &out) }

        /// Writes `a + " " + b` as one string.
        func writeJoined(_ a: Str, _ b: Str, into out: inout [UInt8]) {
            W.writeStringHeader(Int(a.count) + 1 + Int(b.count), into: &out)
            out.append(contentsOf: bytes(a)); out.append(0x20); out.append(contentsOf: bytes(b))
        }

        func writeResource(_ span: Span, into out: inout [UInt8]) {
            if !span.resource.isEmpty { writeStr(span.resource, into: &out); return }
            if !ddOrigin {
                if let m = tag(span, "http.request.method") ?? tag(span, "http.method"), !m.isEmpty {
                    if span.kind == .server, let route = tag(span, "http.route"), !route.isEmpty {
                        writeJoined(m, route, into: &out)
                    } else { writeStr(m, into: &out) }
                    return
                }
                if let op = tag(span, "messaging.operation"), !op.isEmpty {
                    if let d = tag(span, "messaging.destination") ?? tag(span, "messaging.destination.name"), !d.isEmpty {
                        writeJoined(op, d, into: &out)
                    } else { writeStr(op, into: &out) }
                    return
                }
                if let m = tag(span, "rpc.method"), !m.isEmpty {
                    if let s = tag(span, "rpc.service"), !s.isEmpty { writeJoined(m, s, into: &out) } else { writeStr(m, into: &out) }
                    return
                }
                if tag(span, "db.system") != nil, let q = tag(span, "db.statement") ?? tag(span, "db.query.text"), !q.isEmpty {
                    writeStr(q, into: &out); return
                }
            }
            writeName(span, into: &out)
        }

        func writeName(_ span: Span, into out: inout [UInt8]) {
            if span.name.isEmpty { W.writeString("unnamed_operation", into: &out) } else { writeStr(span.name, into: &out) }
        }

        /// The span type, or nil to omit it.
        func writeType(_ span: Span, into out: inout [UInt8]) -> Bool {
            if !span.type.isEmpty { W.writeString("type", into: &out); writeStr(span.type, into: &out); return true }
            if let t = tag(span, "span.type"), !t.isEmpty { W.writeString("type", into: &out); writeStr(t, into: &out); return true }
            if ddOrigin { return false }
            W.writeString("type", into: &out)
            switch span.kind {
            case .server: W.writeString("web", into: &out)
            case .client:
                if let db = tag(span, "db.system") {
                    let s = bytes(db)
                    let r = 0..<s.count
                    if DDKey.eq(s, r, "redis") { W.writeString("redis", into: &out) }
                    else if DDKey.eq(s, r, "memcached") { W.writeString("memcached", into: &out) }
                    else if DDKey.eq(s, r, "mongodb") { W.writeString("mongodb", into: &out) }
                    else if DDKey.eq(s, r, "elasticsearch") { W.writeString("elasticsearch", into: &out) }
                    else if DDKey.eq(s, r, "opensearch") { W.writeString("opensearch", into: &out) }
                    else if DDKey.eq(s, r, "postgresql") || DDKey.eq(s, r, "mysql") || DDKey.eq(s, r, "mssql")
                        || DDKey.eq(s, r, "oracle") || DDKey.eq(s, r, "mariadb") || DDKey.eq(s, r, "sqlite")
                        || DDKey.eq(s, r, "db2") || DDKey.eq(s, r, "cockroachdb") || DDKey.eq(s, r, "other_sql") {
                        W.writeString("sql", into: &out)
                    } else { W.writeString("db", into: &out) }
                } else { W.writeString("http", into: &out) }
            default: W.writeString("custom", into: &out)
            }
            return true
        }

        /// Writes one span map; `priority` is the chunk's sampling priority when this span carries it.
        func writeSpan(_ span: Span, firstOfChunk: Bool, priority: Int8?, into out: inout [UInt8]) {
            let errorTag = tag(span, "error")
            let isError = span.isError || errorTag != nil
            // Header: 10 fixed fields + type + meta + metrics; the count is patched at the end.
            let headerAt = out.count
            out.append(0x80)
            var fields = 0
            W.writeString("trace_id", into: &out); W.writeUInt(span.traceID.low, into: &out)
            W.writeString("span_id", into: &out); W.writeUInt(span.id, into: &out)
            W.writeString("parent_id", into: &out); W.writeUInt(span.parentID, into: &out)
            W.writeString("name", into: &out); writeName(span, into: &out)
            W.writeString("service", into: &out)
            if span.localEndpoint.serviceName.isEmpty { W.writeString("unnamed-service", into: &out) }
            else { writeStr(span.localEndpoint.serviceName, into: &out) }
            W.writeString("resource", into: &out); writeResource(span, into: &out)
            W.writeString("start", into: &out); W.writeInt(span.startNanos, into: &out)
            W.writeString("duration", into: &out); W.writeInt(span.durationNanos, into: &out)
            W.writeString("error", into: &out); W.writeUInt(isError ? 1 : 0, into: &out)
            fields = 9
            if writeType(span, into: &out) { fields += 1 }

            // meta
            let metaKeyAt = out.count
            W.writeString("meta", into: &out)
            let metaHeaderAt = out.count
            out.append(contentsOf: [0xdf, 0, 0, 0, 0])
            var meta = 0
            var links: [UInt8] = [], linkCount = 0
            for i in Int(span.tags.lowerBound)..<Int(span.tags.upperBound) {
                let t = batch.tags[i]
                if t.key.isEmpty || eq(t.key, "span.kind") || eq(t.key, "_dd.p.tid") || eq(t.key, "error") { continue }
                // Links travel as the `_dd.span_links` tag; v0.4 has a native field for them.
                if eq(t.key, DDSpanLinks.tagKey), let n = DDSpanLinks.appendNative(json: bytes(t.value), into: &links) {
                    linkCount += n
                    continue
                }
                if eq(t.key, "span.type") && !span.type.isEmpty { continue }
                writeStr(t.key, into: &out); writeStr(t.value, into: &out); meta += 1
            }
            if let k = span.kind.lowercaseName {
                W.writeString("span.kind", into: &out); W.writeString(k, into: &out); meta += 1
            }
            if firstOfChunk && span.traceID.high != 0 {
                W.writeString("_dd.p.tid", into: &out)
                W.writeStringHeader(16, into: &out)
                let at = out.count
                out.append(contentsOf: repeatElement(0, count: 16))
                out.withUnsafeMutableBytes { writeHex16(span.traceID.high, into: UnsafeMutableRawBufferPointer(rebasing: $0[at..<at + 16])) }
                meta += 1
            }
            if isError, let e = errorTag, !e.isEmpty, !eq(e, "true"), tag(span, "error.msg") == nil, tag(span, "error.message") == nil {
                W.writeString("error.msg", into: &out); writeStr(e, into: &out); meta += 1
            }
            let remote = span.remoteEndpoint
            if !remote.serviceName.isEmpty, tag(span, "peer.service") == nil {
                W.writeString("peer.service", into: &out); writeStr(remote.serviceName, into: &out); meta += 1
            }
            let ip = remote.ipv4.isEmpty ? remote.ipv6 : remote.ipv4
            if !ip.isEmpty, tag(span, "network.destination.ip") == nil, tag(span, "out.host") == nil {
                W.writeString("network.destination.ip", into: &out); writeStr(ip, into: &out); meta += 1
            }
            if meta > 0 {
                let n = UInt32(truncatingIfNeeded: meta)
                for j in 0..<4 { out[metaHeaderAt + 1 + j] = UInt8(truncatingIfNeeded: n >> (24 - 8 * UInt32(j))) }
                fields += 1
            } else {
                out.removeSubrange(metaKeyAt..<out.count)
            }

            // metrics
            let metricsKeyAt = out.count
            W.writeString("metrics", into: &out)
            let metricsHeaderAt = out.count
            out.append(contentsOf: [0xdf, 0, 0, 0, 0])
            var metrics = 0
            for i in Int(span.metrics.lowerBound)..<Int(span.metrics.upperBound) {
                let m = batch.metrics[i]
                if m.key.isEmpty || eq(m.key, "_sampling_priority_v1") { continue }
                writeStr(m.key, into: &out); W.writeDouble(m.value, into: &out); metrics += 1
            }
            if let p = priority {
                W.writeString("_sampling_priority_v1", into: &out); W.writeDouble(Double(p), into: &out); metrics += 1
            }
            if span.flags.contains(.topLevel), !hasMetric(span, "_dd.top_level") {
                W.writeString("_dd.top_level", into: &out); W.writeDouble(1, into: &out); metrics += 1
            }
            if remote.port != 0, !hasMetric(span, "network.destination.port"), !hasMetric(span, "out.port"),
               tag(span, "network.destination.port") == nil, tag(span, "out.port") == nil {
                W.writeString("network.destination.port", into: &out); W.writeDouble(Double(remote.port), into: &out); metrics += 1
            }
            if metrics > 0 {
                let n = UInt32(truncatingIfNeeded: metrics)
                for j in 0..<4 { out[metricsHeaderAt + 1 + j] = UInt8(truncatingIfNeeded: n >> (24 - 8 * UInt32(j))) }
                fields += 1
            } else {
                out.removeSubrange(metricsKeyAt..<out.count)
            }
            if linkCount > 0 {
                W.writeString("span_links", into: &out)
                W.writeArrayHeader(linkCount, into: &out)
                out.append(contentsOf: links)
                fields += 1
            }
            out[headerAt] = 0x80 | UInt8(fields)
        }
    }
}
