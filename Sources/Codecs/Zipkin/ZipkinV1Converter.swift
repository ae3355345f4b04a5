import Spans

/// Turns a v1 span into v2 spans by the rules of Zipkin's `zipkin2.v1.V1SpanConverter`
/// (docs/protocol-fidelity.md lists them). In short:
///
/// - Data is allocated to spans by endpoint: the first endpoint seen (annotations sorted by
///   time, then binary annotations by key) is the first span's local endpoint; an endpoint with
///   another service name opens another span with the same ids (a client and a server that
///   logged into one span id become two spans). Data without an endpoint goes to the first span.
/// - Core annotations need an endpoint: `cs`/`cr` mark a CLIENT, `sr`/`ss` a SERVER, `ms` a
///   PRODUCER, `mr` a CONSUMER (`ws`/`wr` time messaging); without an endpoint they stay plain
///   annotations.
/// - Timing: the span's own `timestamp` and `duration` win when both are set (non-zero); else
///   the core annotations give them (`cr - cs`, `ss - sr`, …). A `duration` of 0 is unset.
///   A `cs`/`sr` missing but implied by `timestamp + duration == cr/ss` is restored.
/// - Shared spans: with `cs` and `sr` the server side is a `shared` SERVER span timed by
///   `sr`/`ss` (a separate span even when both sides have the same service name); a server
///   side seen alone is `shared` when the span has no `timestamp`, or `ss` but no `duration`.
///   An incomplete RPC keeps its start and the lone end as an annotation.
/// - Addresses: `sa` is the client's remote endpoint, `ca` the server's (its service name
///   dropped when it equals the server's), `ma` the messaging spans'; with no core annotation,
///   `ca`+`sa` make a span from `ca` to `sa`, `sa` alone a remote endpoint, `ca` alone a SERVER.
/// - Binary annotations with a string value are tags, except an empty `lc` (a marker for the
///   local endpoint); a repeated key keeps the last value.
/// - Like zipkin2's span builder: a parent id equal to the span id is dropped, `shared` is
///   cleared on CLIENT spans, annotations are sorted and exact duplicates dropped.
/// Zipkin lower-cases names and service names when it builds spans; tracerelay keeps the
/// case and compares service names case-insensitively where the converter compares them.
struct ZipkinV1Converter {
    /// One v2 span under construction. Annotations and tags live in the flat lists below,
    /// tagged with their builder's index, so a converter reused across spans stops allocating.
    struct Builder {
        var kind: SpanKind = .unspecified
        var local: Endpoint? = nil
        var remote: Endpoint? = nil
        var timestamp: Int64 = 0
        var duration: Int64 = 0
        var shared = false
    }

    private var builders: [Builder] = []
    private var annotations: [(builder: Int, annotation: Annotation)] = []
    private var tags: [(builder: Int, tag: Tag)] = []
    private var cs: V1Span.Annotation? = nil, sr: V1Span.Annotation? = nil, ss: V1Span.Annotation? = nil
    private var cr: V1Span.Annotation? = nil, ms: V1Span.Annotation? = nil, mr: V1Span.Annotation? = nil
    private var ws: V1Span.Annotation? = nil, wr: V1Span.Annotation? = nil

    /// Appends the v2 spans of `source` to `batch`.
    mutating func convert(_ source: V1Span, into batch: inout SpanBatch) {
        builders.removeAll(keepingCapacity: true)
        annotations.removeAll(keepingCapacity: true)
        tags.removeAll(keepingCapacity: true)
        cs = nil; sr = nil; ss = nil; cr = nil; ms = nil; mr = nil; ws = nil; wr = nil
        builders.append(Builder())
        processAnnotations(source, batch)
        processBinaryAnnotations(source, batch)
        finish(source, into: &batch)
    }

    // MARK: Annotations

    private mutating func processAnnotations(_ source: V1Span, _ batch: SpanBatch) {
        for a in source.annotations {
            let b = forEndpoint(a.endpoint, batch)
            // Core annotations need an endpoint; without one they are plain annotations.
            guard a.endpoint != nil, let core = a.core else {
                addAnnotation(b, a)
                continue
            }
            switch core {
            case .cs: builders[b].kind = .client; cs = a
            case .sr: builders[b].kind = .server; sr = a
            case .ss: builders[b].kind = .server; ss = a
            case .cr: builders[b].kind = .client; cr = a
            case .ms: builders[b].kind = .producer; ms = a
            case .mr: builders[b].kind = .consumer; mr = a
            case .ws: ws = a
            case .wr: wr = a
            }
        }

        // Bridged data may lack the start annotation that timestamp + duration imply.
        if cs == nil, let end = cr, endReflectsDuration(end, source) {
            cs = V1Span.Annotation(timestampNanos: source.timestamp, value: .empty, endpoint: end.endpoint, core: .cs)
        }
        if sr == nil, let end = ss, endReflectsDuration(end, source) {
            sr = V1Span.Annotation(timestampNanos: source.timestamp, value: .empty, endpoint: end.endpoint, core: .sr)
        }

        if let cs, let sr {
            // One span id for both sides: the client owns the span's timestamp and duration.
            maybeTimestampDuration(source, cs, cr, batch)
            let (client, server) = twoSides(cs, sr, (.client, .server), batch)
            builders[server].shared = true
            builders[server].timestamp = sr.timestampNanos
            if let ss { builders[server].duration = max(0, ss.timestampNanos - sr.timestampNanos) }
            if cr == nil && source.duration == 0 { builders[client].duration = 0 } // one-way
        } else if let cs, let cr {
            maybeTimestampDuration(source, cs, cr, batch)
        } else if let sr, let ss {
            maybeTimestampDuration(source, sr, ss, batch)
        } else {
            handleIncompleteRPC(source)
        }

        // v1 had no shared flag: a server side without the span's timestamp (or with `ss` but
        // no duration) is taken to share its span id with a client.
        if cs == nil, let sr, source.timestamp == 0 || (ss != nil && source.duration == 0) {
            builders[forEndpoint(sr.endpoint, batch)].shared = true
        }

        if let ms, let mr {
            // Not meant to share a span id, but split them as for RPC if they do.
            let (producer, consumer) = twoSides(ms, mr, (.producer, .consumer), batch)
            builders[consumer].shared = true
            if let wr {
                builders[consumer].timestamp = wr.timestampNanos
                builders[consumer].duration = max(0, mr.timestampNanos - wr.timestampNanos)
            } else {
                builders[consumer].timestamp = mr.timestampNanos
            }
            builders[producer].timestamp = ms.timestampNanos
            builders[producer].duration = ws.map { max(0, $0.timestampNanos - ms.timestampNanos) } ?? 0
        } else if let ms {
            maybeTimestampDuration(source, ms, ws, batch)
        } else if let mr {
            if let wr { maybeTimestampDuration(source, wr, mr, batch) } else { maybeTimestampDuration(source, mr, nil, batch) }
        } else {
            if let ws { addAnnotation(forEndpoint(ws.endpoint, batch), ws) }
            if let wr { addAnnotation(forEndpoint(wr.endpoint, batch), wr) }
        }
    }

    /// The spans of two sides that logged under one span id: `a`'s, and `b`'s — a span of its
    /// own even when both have the same service name (loopback), so there are always two.
    private mutating func twoSides(_ a: V1Span.Annotation, _ b: V1Span.Annotation, _ kinds: (SpanKind, SpanKind),
                                   _ batch: SpanBatch) -> (Int, Int) {
        let first = forEndpoint(a.endpoint, batch)
        guard sameService(a.endpoint, b.endpoint, batch) else { return (first, forEndpoint(b.endpoint, batch)) }
        builders[first].kind = kinds.0
        let second = newBuilder(b.endpoint)
        builders[second].kind = kinds.1
        return (first, second)
    }

    /// An RPC with only one of its two annotations: the start times the span, the lone end
    /// stays an annotation; the span's own timestamp and duration win on the first span.
    private mutating func handleIncompleteRPC(_ source: V1Span) {
        for i in builders.indices {
            switch builders[i].kind {
            case .client:
                if let cs { builders[i].timestamp = cs.timestampNanos }
                if let cr { addAnnotation(i, cr) }
            case .server:
                if let sr { builders[i].timestamp = sr.timestampNanos }
                if let ss { addAnnotation(i, ss) }
            default: break
            }
        }
        if source.timestamp != 0 {
            builders[0].timestamp = source.timestamp
            builders[0].duration = source.duration
        }
    }

    private func endReflectsDuration(_ end: V1Span.Annotation, _ source: V1Span) -> Bool {
        source.timestamp != 0 && source.duration != 0 && source.timestamp &+ source.duration == end.timestampNanos
    }

    private mutating func maybeTimestampDuration(_ source: V1Span, _ begin: V1Span.Annotation, _ end: V1Span.Annotation?,
                                                 _ batch: SpanBatch) {
        let b = forEndpoint(begin.endpoint, batch)
        if source.timestamp != 0 && source.duration != 0 {
            builders[b].timestamp = source.timestamp
            builders[b].duration = source.duration
        } else {
            builders[b].timestamp = begin.timestampNanos
            if let end { builders[b].duration = max(0, end.timestampNanos - begin.timestampNanos) }
        }
    }

    // MARK: Binary annotations

    private mutating func processBinaryAnnotations(_ source: V1Span, _ batch: SpanBatch) {
        var ca: Endpoint? = nil, sa: Endpoint? = nil, ma: Endpoint? = nil
        for b in source.binaryAnnotations {
            // ca/sa/ma are addresses whatever their value (old zipkin-ruby wrote "1").
            if let address = b.address {
                switch address {
                case .ca: ca = b.endpoint
                case .sa: sa = b.endpoint
                case .ma: ma = b.endpoint
                }
                continue
            }
            guard let value = b.value else { continue }
            let i = forEndpoint(b.endpoint, batch)
            if value.isEmpty && batch.equals(b.key, "lc") { continue } // a local-endpoint marker, not a tag
            putTag(i, Tag(key: b.key, value: value), batch)
        }

        let noCore = cs == nil && cr == nil && ss == nil && sr == nil
        if noCore && (ca != nil || sa != nil) {
            if let ca, let sa {
                builders[forEndpoint(ca, batch)].remote = sa
            } else if let sa {
                builders[0].remote = sa // a remote address alone does not make a client span
            } else if let ca {
                builders[0].kind = .server
                builders[0].remote = ca
            }
            return
        }

        if var ca, let server = sr ?? ss, let serverEndpoint = server.endpoint, !sameEndpoint(ca, serverEndpoint, batch) {
            // Finagle logs the client socket as `ca` with the server's own service name: keep the
            // address, drop the name, so no loopback link appears.
            if sameService(ca, serverEndpoint, batch) { ca.serviceName = .empty }
            builders[forEndpoint(serverEndpoint, batch)].remote = ca.isEmpty ? nil : ca
        }
        if let sa {
            if let cs { builders[forEndpoint(cs.endpoint, batch)].remote = sa }
            else if let cr { builders[forEndpoint(cr.endpoint, batch)].remote = sa }
        }
        if let ma {
            if let ms { builders[forEndpoint(ms.endpoint, batch)].remote = ma }
            if let mr { builders[forEndpoint(mr.endpoint, batch)].remote = ma }
        }
    }

    // MARK: Builders

    /// The span that data logged at `e` belongs to: the first one for no endpoint; else the
    /// first whose local endpoint is unset (it takes `e`) or has the same service name; else a new one.
    private mutating func forEndpoint(_ e: Endpoint?, _ batch: SpanBatch) -> Int {
        guard let e else { return 0 }
        for i in builders.indices {
            guard let local = builders[i].local else {
                builders[i].local = e
                return i
            }
            if sameService(local, e, batch) { return i }
        }
        return newBuilder(e)
    }

    private mutating func newBuilder(_ e: Endpoint?) -> Int {
        builders.append(Builder(local: e))
        return builders.count - 1
    }

    private mutating func addAnnotation(_ b: Int, _ a: V1Span.Annotation) {
        annotations.append((b, Annotation(timestampNanos: a.timestampNanos, value: a.value)))
    }

    /// Zipkin's tags are a map: a repeated key replaces the value.
    private mutating func putTag(_ b: Int, _ t: Tag, _ batch: SpanBatch) {
        for i in tags.indices where tags[i].builder == b && batch.equals(tags[i].tag.key, t.key) {
            tags[i].tag.value = t.value
            return
        }
        tags.append((b, t))
    }

    private func finish(_ source: V1Span, into batch: inout SpanBatch) {
        for (i, b) in builders.enumerated() {
            var span = Span(traceID: source.traceID, id: source.id)
            span.parentID = source.parentID == source.id ? 0 : source.parentID
            span.name = source.name
            span.kind = b.kind
            span.localEndpoint = b.local ?? Endpoint()
            span.remoteEndpoint = b.remote ?? Endpoint()
            span.startNanos = b.timestamp
            span.durationNanos = b.duration
            if b.shared && b.kind != .client { span.flags.insert(.shared) }
            if source.debug {
                span.flags.insert(.debug)
                span.samplingPriority = ZipkinSampling.debugPriority
            }
            let t0 = UInt32(batch.tags.count)
            for t in tags where t.builder == i {
                if batch.equals(t.tag.key, "error") { span.flags.insert(.error) }
                batch.tags.append(t.tag)
            }
            span.tags = t0..<UInt32(batch.tags.count)
            let a0 = batch.annotations.count
            for a in annotations where a.builder == i { batch.annotations.append(a.annotation) }
            sortAndDedupe(&batch, from: a0)
            span.annotations = UInt32(a0)..<UInt32(batch.annotations.count)
            batch.spans.append(span)
        }
    }

    /// zipkin2's span builder sorts annotations by (timestamp, value) and drops exact repeats.
    private func sortAndDedupe(_ batch: inout SpanBatch, from start: Int) {
        guard batch.annotations.count - start > 1 else { return }
        let view = batch
        var list = Array(batch.annotations[start...])
        list.sort { a, b in
            a.timestampNanos != b.timestampNanos ? a.timestampNanos < b.timestampNanos : Self.compare(a.value, b.value, view) < 0
        }
        var out: [Annotation] = []
        out.reserveCapacity(list.count)
        for a in list where !(out.last.map { $0.timestampNanos == a.timestampNanos && view.equals($0.value, a.value) } ?? false) {
            out.append(a)
        }
        batch.annotations.replaceSubrange(start..., with: out)
    }

    // MARK: Comparisons

    /// Zipkin lower-cases service names, so it compares them case-insensitively (ASCII here).
    func sameService(_ a: Endpoint?, _ b: Endpoint?, _ batch: SpanBatch) -> Bool {
        let x = a?.serviceName ?? .empty, y = b?.serviceName ?? .empty
        guard x.count == y.count else { return false }
        if x.isEmpty { return true }
        return batch.withBytes(x) { xb in
            batch.withBytes(y) { yb in
                for k in 0..<xb.count where Self.lower(xb[k]) != Self.lower(yb[k]) { return false }
                return true
            }
        }
    }

    /// Endpoint equality by content (service name as Zipkin compares it).
    func sameEndpoint(_ a: Endpoint, _ b: Endpoint, _ batch: SpanBatch) -> Bool {
        a.port == b.port && sameService(a, b, batch) && batch.equals(a.ipv4, b.ipv4) && batch.equals(a.ipv6, b.ipv6)
    }

    @inline(__always) static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }

    /// Byte-wise order of two texts (Java's `String.compareTo` for ASCII).
    static func compare(_ a: Str, _ b: Str, _ batch: SpanBatch) -> Int {
        batch.withBytes(a) { ab in
            batch.withBytes(b) { bb in
                let n = min(ab.count, bb.count)
                for k in 0..<n where ab[k] != bb[k] { return Int(ab[k]) - Int(bb[k]) }
                return ab.count - bb.count
            }
        }
    }
}
