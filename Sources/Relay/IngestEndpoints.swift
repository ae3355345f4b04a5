import Basics
import Codecs
import Dispatch
import Routing
import Spans
import Synchronization
import Transport

/// Settings of the ingest endpoints, each with a documented default.
public struct IngestConfiguration: Sendable {
    /// Caps on decompressed bodies (default 100 MiB, ratio 200): a bomb gets 413.
    public var decompression = DecompressionLimits()
    /// Static mesh tags per listener name (from the config's listeners); they win over span tags.
    public var listenerTags: [String: [(key: String, value: String)]] = [:]
    /// Listener names whose clients are trusted upstream relays: only there is
    /// `X-Tracerelay-Tags` read (elsewhere an application could forge its own region).
    public var trustedListeners: Set<String> = []
    /// Client certificate identity → the region it may speak for (`peers`). On a listener in
    /// `identityListeners`, a client whose certificate matches no rule is refused (403
    /// `unknown_peer`); one that matches has its spans pinned to the rule's region (spans of any
    /// other region are refused, reason `identity`) and, on a trusted listener, its
    /// `X-Tracerelay-Tags` read; a client there without a certificate is not trusted.
    public var peers = PeerIdentityMap()
    /// Listeners that verify client certificates (`tls.clientCA`) while `peers` has rules.
    public var identityListeners: Set<String> = []
    /// The tokens of the listeners with `auth:`, by listener name (Auth/): there a span-carrying
    /// request without a valid token gets 401, and a token pinned to a zone or region pins its
    /// spans like a `peers` rule. Empty: no listener asks for a token (the default).
    public var tokens: [String: ListenerTokens] = [:]
    /// Datadog agent version we claim in `/info` and the `Datadog-Agent-Version` header.
    public var datadogAgentVersion = "7.52.0"
    /// The `rate_by_service` answer of the Datadog backend a batch routes to (the backend's
    /// latest answer, passed on so tracers keep adaptive sampling); nil → the neutral default.
    public var datadogRates: (@Sendable (SpanBatch) -> String?)? = nil
    /// Forwards a tracer's `/v0.6/stats` request to the Datadog backend; nil → accepted and
    /// counted, not forwarded (no Datadog backend).
    public var datadogStats: (@Sendable (HTTPRequest) -> Void)? = nil
    /// Most spans one request may carry (default 100,000); more gets 413 `too_many_spans` (a
    /// Datadog tracer that did not ask for real statuses gets the agent's 200, the drop counted).
    /// Sized from what real senders do: the Datadog agent caps a payload at 25 MB
    /// (`apm_config.max_payload_size`), i.e. ≈ 100k spans of ≈ 250 B; Zipkin reporters send
    /// messages of 500 KiB–5 MiB (a few thousand spans) and OpenTelemetry's batch processor 512
    /// spans. At ≈ 300 B per decoded tiny span, one request then holds ≤ ≈ 30 MB of spans.
    public var maxSpansPerRequest = 100_000
    /// The global budget that decompressed bodies and decoded spans of every request in flight
    /// count against (default: a quarter of RAM, at most 2 GiB); over it: 503 with `Retry-After`.
    public var memoryBudget = MemoryBudget()
    /// Workers that decompress and decode large bodies off the event loops (default: one per
    /// core, 8 jobs per worker queued at most; beyond: 503 with `Retry-After`).
    public var decodePool = DecodePool()
    /// A compressed body larger than this on the wire, or inflating past it, is decompressed and
    /// decoded on `decodePool` (default 256 KiB: ≈ 1 ms of inflating and decoding).
    public var offloadCompressedBytes = 256 << 10
    /// An uncompressed body larger than this is decoded on `decodePool` (default 1 MiB: ≈ 0.5–1 ms
    /// of decoding inline; the ingest benchmarks' 500-span bodies stay on the loop).
    public var offloadPlainBytes = 1 << 20
    /// Where refused requests are logged: a warning per refusal code, the repeats within a minute
    /// counted into the next line (`RateLimitedLogger`); nil → not logged (the counters still count).
    public var refusalLog: RateLimitedLogger? = nil

    public init() {}
}

/// Counters of the ingest stage, per listener and source format. Read by the status and metrics
/// endpoints and asserted by the tests.
public final class IngestStats: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var requests = 0
        public var spans = 0
        public var bytes = 0
        public var rejectedRequests = 0
        /// Spans accepted from a Datadog tracer with 200 although a queue refused them (the
        /// agent's answer to tracers that do not ask for real statuses): dropped, counted here.
        public var droppedSpans = 0
        /// Requests refused for carrying more than `maxSpansPerRequest` spans (also in `rejectedRequests`).
        public var tooManySpans = 0
        /// Requests refused because the memory budget or the decode pool was full (also in `rejectedRequests`).
        public var overloaded = 0
        /// Refused requests by the error code of the answer (`bad_payload`, `queue_full`, …); cold path only.
        public var refused: [String: Int] = [:]
        /// Spans of refused requests whose count is known (a queue refused them), by error code.
        public var refusedSpans: [String: Int] = [:]

        /// Adds another listener's counts (the per-format view sums listeners).
        mutating func add(_ o: Snapshot) {
            requests += o.requests; spans += o.spans; bytes += o.bytes; rejectedRequests += o.rejectedRequests
            droppedSpans += o.droppedSpans; tooManySpans += o.tooManySpans; overloaded += o.overloaded
            refused.merge(o.refused, uniquingKeysWith: +)
            refusedSpans.merge(o.refusedSpans, uniquingKeysWith: +)
        }
    }
    /// Where a request came in and what it carried.
    public struct Key: Hashable, Sendable {
        public var listener: String
        public var format: String
    }
    private let state = Mutex<[Key: Snapshot]>([:])

    public init() {}

    func record(_ format: String, listener: String, _ update: (inout Snapshot) -> Void) {
        state.withLock { update(&$0[Key(listener: listener, format: format), default: Snapshot()]) }
    }

    /// Counts by format name (`zipkin_v2_json`, …; `unknown` for requests rejected before the format was known).
    public var snapshot: [String: Snapshot] {
        var out: [String: Snapshot] = [:]
        for (k, v) in byListener { out[k.format, default: Snapshot()].add(v) }
        return out
    }

    /// Counts by listener name and format.
    public var byListener: [Key: Snapshot] { state.withLock { $0 } }
}

/// The ingest endpoints: Zipkin (`/api/v2/spans` JSON and proto3, `/api/v1/spans` JSON) and
/// Datadog (`/v0.3`, `/v0.4`, `/v0.5`, `/v0.7` traces, `/info`, `/v0.4/services`). Each request's body
/// is content-decoded, decoded into one `SpanBatch` and handed to the consumer; the client is
/// answered only when the consumer has taken the batch (or refused it).
public struct IngestEndpoints: Sendable {
    public let configuration: IngestConfiguration
    public let consumer: any SpanConsumer
    public let stats: IngestStats

    public init(configuration: IngestConfiguration = .init(), consumer: any SpanConsumer, stats: IngestStats = IngestStats()) {
        self.configuration = configuration
        self.consumer = consumer
        self.stats = stats
    }

    /// The decoders an endpoint chooses between, by content type.
    enum Decoder {
        case zipkinV2JSON, zipkinV2Proto, zipkinV1JSON, datadogV03JSON, datadogV03Msgpack, datadogV04, datadogV05, datadogV07

        var format: SpanFormat {
            switch self {
            case .zipkinV2JSON: .zipkinV2JSON
            case .zipkinV2Proto: .zipkinV2Proto
            case .zipkinV1JSON: .zipkinV1JSON
            case .datadogV03JSON: .datadogV03JSON
            case .datadogV03Msgpack: .datadogV03Msgpack
            case .datadogV04: .datadogV04
            case .datadogV05: .datadogV05
            case .datadogV07: .datadogV07
            }
        }

        var isDatadog: Bool { format.isDatadog }

        func decode(_ body: [UInt8], _ metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
            switch self {
            case .zipkinV2JSON: try ZipkinJSONV2.decode(body, metadata: metadata)
            case .zipkinV2Proto: try ZipkinProto3.decode(body, metadata: metadata)
            case .zipkinV1JSON: try ZipkinJSONV1.decode(body, metadata: metadata)
            case .datadogV03JSON: try DatadogV03.decodeJSON(body, metadata: metadata)
            case .datadogV03Msgpack: try DatadogV03.decodeMsgpack(body, metadata: metadata)
            case .datadogV04: try DatadogV04.decode(body, metadata: metadata)
            case .datadogV05: try DatadogV05.decode(body, metadata: metadata)
            case .datadogV07: try DatadogV07.decode(body, metadata: metadata)
            }
        }
    }

    /// Registers every ingest route into `router`.
    public func register(into router: inout EndpointRouter) {
        router.register("POST", "/api/v2/spans") { req, respond in
            handle(req, respond, endpoint: "zipkin v2") { ct in
                switch ct {
                case nil, "application/json", "text/plain": .success(.zipkinV2JSON)
                case "application/x-protobuf", "application/protobuf": .success(.zipkinV2Proto)
                case "application/x-thrift": .failure("Zipkin Thrift is not accepted on /api/v2/spans; send JSON or proto3")
                default: .failure("unsupported Content-Type \(ct!) on /api/v2/spans; use application/json or application/x-protobuf")
                }
            }
        }
        router.register("POST", "/api/v1/spans") { req, respond in
            handle(req, respond, endpoint: "zipkin v1") { ct in
                switch ct {
                case nil, "application/json", "text/plain": .success(.zipkinV1JSON)
                case "application/x-thrift": .failure("Zipkin v1 Thrift is not supported yet; send v1 JSON or use /api/v2/spans")
                default: .failure("unsupported Content-Type \(ct!) on /api/v1/spans; use application/json")
                }
            }
        }
        for method in ["POST", "PUT"] {
            router.register(method, "/v0.3/traces") { req, respond in
                handle(req, respond, endpoint: "datadog v0.3") { ct in
                    switch ct {
                    case nil, "application/json", "text/json", "text/plain": .success(.datadogV03JSON)
                    case "application/msgpack", "application/x-msgpack": .success(.datadogV03Msgpack)
                    default: .failure("unsupported Content-Type \(ct!) on /v0.3/traces; use application/json or application/msgpack")
                    }
                }
            }
            router.register(method, "/v0.4/traces") { req, respond in
                handle(req, respond, endpoint: "datadog v0.4") { ct in
                    switch ct {
                    case nil, "application/msgpack", "application/x-msgpack": .success(.datadogV04)
                    case "application/json", "text/json": .success(.datadogV03JSON)  // same shape as v0.3 JSON, as the agent accepts
                    default: .failure("unsupported Content-Type \(ct!) on /v0.4/traces; use application/msgpack")
                    }
                }
            }
            router.register(method, "/v0.5/traces") { req, respond in
                handle(req, respond, endpoint: "datadog v0.5") { ct in
                    switch ct {
                    case nil, "application/msgpack", "application/x-msgpack": .success(.datadogV05)
                    default: .failure("unsupported Content-Type \(ct!) on /v0.5/traces; use application/msgpack")
                    }
                }
            }
            router.register(method, "/v0.7/traces") { req, respond in
                handle(req, respond, endpoint: "datadog v0.7") { ct in
                    switch ct {
                    case nil, "application/msgpack", "application/x-msgpack": .success(.datadogV07)
                    default: .failure("unsupported Content-Type \(ct!) on /v0.7/traces; use application/msgpack")
                    }
                }
            }
            let stats = self.stats, forward = configuration.datadogStats
            router.register(method, "/v0.6/stats") { req, respond in
                // Client-computed stats: the agent answers 200 with "OK"; we forward to the Datadog backend.
                if case .failure(let r) = authenticate(req, datadog: true) {
                    return refuse(r, req, format: "datadog_stats", datadog: true, endpoint: "datadog stats", respond)
                }
                stats.record("datadog_stats", listener: req.listener) { $0.requests += 1; $0.bytes += req.body.count }
                forward?(req)
                respond(HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("OK".utf8)))
            }
            router.register(method, "/telemetry/proxy/api/v2/apmtelemetry") { req, respond in
                // Tracer telemetry is not trace data: accepted so tracers log no errors, dropped, counted.
                stats.record("datadog_telemetry", listener: req.listener) { $0.requests += 1; $0.bytes += req.body.count }
                respond(HTTPResponse(status: 202))
            }
            router.register(method, "/v0.4/services") { _, respond in respond(HTTPResponse(status: 200, body: Array("OK".utf8))) }
            router.register(method, "/v0.3/services") { _, respond in respond(HTTPResponse(status: 200, body: Array("OK".utf8))) }
        }
        let version = configuration.datadogAgentVersion
        router.register("GET", "/info") { _, respond in
            respond(.json(200, """
            {"version":\(jsonQuoted(version)),"endpoints":["/v0.3/traces","/v0.4/traces","/v0.5/traces","/v0.3/services","/v0.4/services","/v0.6/stats","/telemetry/proxy/","/info"],\
            "client_drop_p0s":false,"span_meta_structs":false,"long_running_spans":false,"config":{"statsd_port":0,"receiver_port":0},\
            "peer_tags":[],"feature_flags":[]}
            """, headers: [("Datadog-Agent-Version", version)]))
        }
    }

    enum Selection { case success(Decoder), failure(String) }

    /// Tracer headers a Datadog backend should see as the tracer sent them.
    static let forwardedDatadogHeaders = [
        "Datadog-Meta-Lang", "Datadog-Meta-Lang-Version", "Datadog-Meta-Lang-Interpreter", "Datadog-Meta-Tracer-Version",
        "Datadog-Client-Computed-Stats", "Datadog-Client-Computed-Top-Level", "Datadog-Container-ID",
    ]

    /// Media type without parameters, lower-cased (`application/json; charset=utf-8` → `application/json`).
    static func mediaType(_ header: String?) -> String? {
        guard let header else { return nil }
        let base = header.split(separator: ";", maxSplits: 1).first.map(String.init) ?? header
        let t = base.trimmingOWS().lowercased()
        return t.isEmpty ? nil : t
    }

    private func handle(_ req: HTTPRequest, _ respond: @escaping @Sendable (HTTPResponse) -> Void, endpoint: String,
                        select: (String?) -> Selection) {
        let decoder: Decoder
        switch select(Self.mediaType(req.headers["content-type"])) {
        case .success(let d): decoder = d
        case .failure(let reason):
            stats.record("unknown", listener: req.listener) { $0.requests += 1; $0.rejectedRequests += 1; $0.refused["unsupported_media_type", default: 0] += 1 }
            configuration.refusalLog?.refused(code: "unsupported_media_type", status: 415, message: reason, listener: req.listener, format: "unknown")
            respond(.error(415, code: "unsupported_media_type", message: reason))
            return
        }
        if let r = identityRefusal(req) { return refuse(r, req, decoder, endpoint, respond) }
        let token: IngestTokens.Entry?
        switch authenticate(req, datadog: decoder.isDatadog) {
        case .success(let t): token = t
        case .failure(let r): return refuse(r, req, decoder, endpoint, respond)
        }
        let encoding = req.headers["content-encoding"]
        let compressed = ContentDecoding.isEncoded(encoding)
        let size = req.body.count
        if compressed ? size <= configuration.offloadCompressedBytes : size <= configuration.offloadPlainBytes {
            // The common case: small enough to decode on the loop without holding it up.
            switch prepare(req, decoder, endpoint: endpoint, encoding: encoding, compressed: compressed,
                           inlineCap: compressed ? configuration.offloadCompressedBytes : nil, token: token) {
            case .offload: break  // inflates past the inline cap: the pool does it
            case .refused(let r): return refuse(r, req, decoder, endpoint, respond)
            case .decoded(let batch, let reservation): return deliver(batch, reservation, req, decoder, endpoint: endpoint, respond)
            }
        }
        let accepted = configuration.decodePool.submit { [self] in
            switch prepare(req, decoder, endpoint: endpoint, encoding: encoding, compressed: compressed, inlineCap: nil, token: token) {
            case .offload: break  // only inline attempts offload
            case .refused(let r): refuse(r, req, decoder, endpoint, respond)
            case .decoded(let batch, let reservation): deliver(batch, reservation, req, decoder, endpoint: endpoint, respond)
            }
        }
        if !accepted {
            refuse(.overloaded("every decode worker is busy; retry later"), req, decoder, endpoint, respond)
        }
    }

    /// Estimated bytes one decoded span holds (the span, its share of tags, array slack).
    static let bytesPerSpan = 2 * MemoryLayout<Span>.stride + 64

    enum Prepared {
        case decoded(SpanBatch, MemoryReservation)
        case refused(Refusal)
        /// The body inflates past the inline cap: decode it on the pool.
        case offload
    }

    /// Content-decodes and decodes the body within the memory budget and the span cap. With
    /// `inlineCap` (on a loop) a compressed body that inflates past it answers `.offload`.
    /// `token`: what the request authenticated with (its pin and tags apply).
    func prepare(_ req: HTTPRequest, _ decoder: Decoder, endpoint: String, encoding: String?, compressed: Bool, inlineCap: Int?,
                 token: IngestTokens.Entry? = nil) -> Prepared {
        let maxSpans = max(0, configuration.maxSpansPerRequest)
        let minSpan = decoder.minimumSpanBytes
        // A body up to this size cannot hold more than maxSpans spans: no need to count.
        let (countAbove, o) = maxSpans.multipliedReportingOverflow(by: minSpan)
        let countThreshold = o ? Int.max : countAbove
        // Sums of these saturate at Int.max / 2 (a reservation that size never fits).
        let huge = Int.max / 4
        func spansBound(_ bytes: Int) -> Int {
            let n = min(maxSpans, bytes / minSpan + 1)
            return n > huge / Self.bytesPerSpan ? huge : n * Self.bytesPerSpan
        }
        let tooMany = Refusal(status: 413, code: "too_many_spans",
                              message: "more than \(maxSpans) spans in one request; send smaller batches", spans: maxSpans == Int.max ? maxSpans : maxSpans + 1)
        let overBudget = Refusal.overloaded("the relay's memory budget for decoding is exhausted; retry later")

        let body: [UInt8]
        let reservation: MemoryReservation
        var counted = false
        if compressed {
            var limits = configuration.decompression
            if let inlineCap { limits.maxBytes = min(limits.maxBytes, inlineCap) }
            let cap = limits.cap(forCompressed: req.body.count)
            // While inflating: the growing output buffer and its final copy, then the spans.
            guard let r = configuration.memoryBudget.reserve(min(cap, huge / 2) * 2 + spansBound(cap)) else { return .refused(overBudget) }
            reservation = r
            var inspect: ContentDecoding.Inspector? = nil
            let counter = cap > countThreshold ? StreamingSpanCounter(decoder) : nil
            if let counter {
                // A bomb of tiny spans stops at the span cap instead of being inflated whole.
                inspect = { (prefix: UnsafeRawBufferPointer) throws(DecodeError) -> Void in
                    if !counter.feed(prefix, max: maxSpans) {
                        throw DecodeError(.tooLarge, format: nil, offset: nil, "more than \(maxSpans) spans")
                    }
                }
                counted = true
            }
            do {
                body = try ContentDecoding.decode(req.body, contentEncoding: encoding, limits: limits, inspect: inspect)
            } catch {
                if counter?.over == true { return .refused(tooMany) }
                switch error.code {
                case .tooLarge:
                    if inlineCap != nil, configuration.decompression.cap(forCompressed: req.body.count) > cap { return .offload }
                    return .refused(Refusal(status: 413, code: "body_too_large", message: error.description))
                case .unsupported: return .refused(Refusal(status: 415, code: "unsupported_content_encoding", message: error.description))
                default: return .refused(Refusal(status: 400, code: "bad_content_encoding", message: error.description))
                }
            }
            reservation.resize(to: body.count &+ spansBound(body.count))
        } else {
            body = req.body
            guard let r = configuration.memoryBudget.reserve(body.count &+ spansBound(body.count)) else { return .refused(overBudget) }
            reservation = r
        }
        if !counted && body.count > countThreshold {
            let n = decoder.countSpans(body, max: maxSpans)
            if n > maxSpans { return .refused(tooMany) }
        }
        var metadata = BatchMetadata(format: decoder.format, listener: req.listener, receivedAtNanos: Clock.wallNanos())
        let peer = peerEntry(req)
        metadata.requestTags = requestTags(req, peer: peer, token: token)
        metadata.pinnedRegion = peer?.region ?? token?.region
        if decoder.isDatadog {
            if let n = req.headers["x-datadog-trace-count"].flatMap({ Int($0.trimmingOWS()) }) { metadata.declaredTraceCount = n }
            for f in req.headers where Self.forwardedDatadogHeaders.contains(where: { HTTPHeaders.sameName($0, f.name) }) {
                metadata.forwardHeaders.append(f)
            }
        }
        let batch: SpanBatch
        do {
            batch = try decoder.decode(body, metadata)
        } catch {
            return .refused(Refusal(status: 400, code: "bad_payload", message: "\(endpoint): \(error.description)"))
        }
        if batch.count > maxSpans { return .refused(tooMany) }
        // What the batch really holds while the consumer has it.
        reservation.resize(to: body.count &+ batch.count &* Self.bytesPerSpan)
        return .decoded(batch, reservation)
    }

    /// The agent's success answer: "OK" on v0.3, else `rate_by_service` (the backend's, when the batch routes to one).
    func datadogOK(_ batch: SpanBatch?, _ endpoint: String) -> HTTPResponse {
        // The agent answers "OK" on v0.3 only, rates on v0.4+ whatever the encoding.
        if endpoint == "datadog v0.3" { return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("OK".utf8)) }
        let answer = batch.flatMap { configuration.datadogRates?($0) } ?? "{\"rate_by_service\":{\"service:,env:\":1}}"
        return .json(200, answer, headers: [("Datadog-Agent-Version", configuration.datadogAgentVersion)])
    }

    /// Hands the batch to the consumer and answers once it took (or refused) it; the memory
    /// reservation goes with the batch.
    private func deliver(_ batch: SpanBatch, _ reservation: MemoryReservation, _ req: HTTPRequest, _ decoder: Decoder,
                         endpoint: String, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let key = decoder.format.rawValue
        let byteCount = batch.bodyCount
        let spanCount = batch.count
        let isDatadog = decoder.isDatadog
        let stats = self.stats, listener = req.listener
        // The agent answers a tracer that did not ask for real statuses 200 even when it drops the payload.
        let realStatus = req.headers["datadog-send-real-http-status"] != nil
        let ok: @Sendable () -> HTTPResponse = { [self] in datadogOK(batch, endpoint) }
        let refusalLog = configuration.refusalLog
        consumer.consume(batch) { result in
            // The pipeline has encoded its records by now: the decoded batch is no longer held.
            reservation.release()
            switch result {
            case .success:
                stats.record(key, listener: listener) { $0.requests += 1; $0.spans += spanCount; $0.bytes += byteCount }
                respond(isDatadog ? ok() : HTTPResponse(status: 202))
            case .failure(let e) where isDatadog && !realStatus && e.kind == .retryable:
                refusalLog?.refused(code: e.code.rawValue, status: 200, message: e.message + " (answered 200 as the agent does; spans dropped)",
                                    listener: listener, format: key)
                stats.record(key, listener: listener) {
                    $0.requests += 1; $0.rejectedRequests += 1; $0.droppedSpans += spanCount
                    $0.refused["\(e.code)", default: 0] += 1; $0.refusedSpans["\(e.code)", default: 0] += spanCount
                }
                respond(ok())
            case .failure(let e):
                refusalLog?.refused(code: e.code.rawValue, status: e.kind == .permanent ? 400 : e.code == .queueFull ? 429 : 503,
                                    message: e.message, listener: listener, format: key)
                stats.record(key, listener: listener) {
                    $0.requests += 1; $0.rejectedRequests += 1
                    $0.refused["\(e.code)", default: 0] += 1; $0.refusedSpans["\(e.code)", default: 0] += spanCount
                }
                switch e.kind {
                case .retryable:
                    let retry = e.retryAfterSeconds.map { [("Retry-After", String($0))] } ?? []
                    respond(.error(e.code == .queueFull ? 429 : 503, code: e.code.rawValue, message: e.message, headers: retry))
                case .permanent:
                    respond(.error(400, code: e.code.rawValue, message: e.message))
                }
            }
        }
    }

    /// The `peers` rule of the request's client certificate, on a listener that pins identities.
    func peerEntry(_ req: HTTPRequest) -> PeerIdentityMap.Entry? {
        guard let peer = req.peer, configuration.identityListeners.contains(req.listener) else { return nil }
        return configuration.peers.lookup(peer)
    }

    /// A client certificate that matches no `peers` rule on a listener that pins identities.
    func identityRefusal(_ req: HTTPRequest) -> Refusal? {
        guard let peer = req.peer, configuration.identityListeners.contains(req.listener),
              configuration.peers.lookup(peer) == nil else { return nil }
        let names = (peer.uris + peer.dnsNames).joined(separator: ", ")
        return Refusal(status: 403, code: "unknown_peer",
                       message: "the client certificate (\(names.isEmpty ? peer.commonName ?? "no SAN" : names)) matches no rule of `peers`: this relay does not know which zone it may send spans for")
    }

    /// The listener's static tags, then the request token's `tags`, then (from a trusted upstream
    /// relay only) `X-Tracerelay-Tags: k=v,k2=v2`, then the zone of the client's certificate
    /// identity (`peers`) or token when no earlier source named one; an earlier source keeps its
    /// value when both name a key.
    func requestTags(_ req: HTTPRequest, peer: PeerIdentityMap.Entry? = nil, token: IngestTokens.Entry? = nil) -> [(key: String, value: String)] {
        var tags = configuration.listenerTags[req.listener] ?? []
        for t in token?.rule.tags ?? [] where !tags.contains(where: { $0.key == t.key }) { tags.append((t.key, t.value)) }
        // On a listener that pins identities only a client with a known certificate is trusted.
        let trusted = configuration.trustedListeners.contains(req.listener)
            && (peer != nil || !configuration.identityListeners.contains(req.listener))
        // A malformed header is ignored as a whole, like one that was not sent.
        if trusted, let header = req.headers[TracerelayTagsHeader.name], let upstream = TracerelayTagsHeader.parse(header) {
            for t in upstream where !tags.contains(where: { $0.key == t.key }) { tags.append((t.key, t.value)) }
        }
        if let zone = peer?.rule.zone ?? token?.rule.zone, !tags.contains(where: { Self.zoneKeys.contains($0.key) || $0.key == "region" }) {
            tags.append(("kuma.io/zone", zone))
        }
        return tags
    }

    /// Tag keys that name a Kuma zone (as routing reads them).
    static let zoneKeys: Set<String> = ["kuma.io/zone", "kuma.zone", "zone"]
}
