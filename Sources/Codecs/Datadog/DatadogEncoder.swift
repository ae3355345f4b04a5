import Spans

/// Writes spans as Datadog v0.4 span maps, translating spans of other origins as described in
/// DatadogMapping.swift. Works on the batch's bytes directly; the only allocations are the
/// trace grouping (one dictionary and index arrays per call) and the output's growth.
enum DDEncoder {
    typealias W = MessagePackWriter

    /// Span indices grouped by full trace id, groups and members in order of first appearance.
    static func groupByTrace(_ batch: SpanBatch, spans: [Int]?) -> [[Int]] {
        var groupOf: [TraceID: Int] = [:]
        var groups: [[Int]] = []
        func add(_ i: Int) {
            let id = batch.spans[i].traceID
            if let g = groupOf[id] { groups[g].append(i) } else { groupOf[id] = groups.count; groups.append([i]) }
        }
        if let spans { for i in spans { add(i) } } else { for i in batch.spans.indices { add(i) } }
        return groups
    }

    static func isDatadogOrigin(_ f: SpanFormat) -> Bool {
        switch f {
        case .datadogV03JSON, .datadogV04, .datadogV05, .datadogV07: true
        default: false
        }
    }

    static func encodeV04(_ batch: SpanBatch, spans: [Int]?, into out: inout [UInt8]) {
        let groups = groupByTrace(batch, spans: spans)
        let ddOrigin = isDatadogOrigin(batch.metadata.format)
        out.reserveCapacity(out.count + (spans?.count ?? batch.spans.count) * 400)
        W.writeArrayHeader(groups.count, into: &out)
        batch.storage.withUnsafeBytes { storage in
            let ctx = Ctx(batch: batch, storage: storage, ddOrigin: ddOrigin)
            for g in groups {
                W.writeArrayHeader(g.count, into: &out)
                for (n, i) in g.enumerated() {
                    ctx.writeSpan(batch.spans[i], firstOfChunk: n == 0, into: &out)
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

        func writeSpan(_ span: Span, firstOfChunk: Bool, into out: inout [UInt8]) {
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
            for i in Int(span.tags.lowerBound)..<Int(span.tags.upperBound) {
                let t = batch.tags[i]
                if t.key.isEmpty || eq(t.key, "span.kind") || eq(t.key, "_dd.p.tid") || eq(t.key, "error") { continue }
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
            if let p = span.samplingPriority {
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
            out[headerAt] = 0x80 | UInt8(fields)
        }
    }
}
