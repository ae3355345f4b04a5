import Codecs
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
    /// Datadog agent version we claim in `/info` and the `Datadog-Agent-Version` header.
    public var datadogAgentVersion = "7.52.0"
    /// The `rate_by_service` answer of the Datadog backend a batch routes to (the backend's
    /// latest answer, passed on so tracers keep adaptive sampling); nil → the neutral default.
    public var datadogRates: (@Sendable (SpanBatch) -> String?)? = nil
    /// Forwards a tracer's `/v0.6/stats` request to the Datadog backend; nil → accepted and
    /// counted, not forwarded (no Datadog backend).
    public var datadogStats: (@Sendable (HTTPRequest) -> Void)? = nil

    public init() {}
}

/// Counters of the ingest stage, per source format. Read by the status and metrics endpoints
/// and asserted by the tests.
public final class IngestStats: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var requests = 0
        public var spans = 0
        public var bytes = 0
        public var rejectedRequests = 0
        /// Spans accepted from a Datadog tracer with 200 although a queue refused them (the
        /// agent's answer to tracers that do not ask for real statuses): dropped, counted here.
        public var droppedSpans = 0
    }
    private let state = Mutex<[String: Snapshot]>([:])

    public init() {}

    func record(_ key: String, _ update: (inout Snapshot) -> Void) {
        state.withLock { update(&$0[key, default: Snapshot()]) }
    }

    /// Counts by format name (`zipkin_v2_json`, …; `unknown` for requests rejected before the format was known).
    public var snapshot: [String: Snapshot] { state.withLock { $0 } }
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
            case .datadogV03JSON, .datadogV03Msgpack: .datadogV03JSON
            case .datadogV04: .datadogV04
            case .datadogV05: .datadogV05
            case .datadogV07: .datadogV07
            }
        }

        var isDatadog: Bool {
            switch self {
            case .zipkinV2JSON, .zipkinV2Proto, .zipkinV1JSON: false
            default: true
            }
        }

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
                stats.record("datadog_stats") { $0.requests += 1; $0.bytes += req.body.count }
                forward?(req)
                respond(HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("OK".utf8)))
            }
            router.register(method, "/telemetry/proxy/api/v2/apmtelemetry") { req, respond in
                // Tracer telemetry is not trace data: accepted so tracers log no errors, dropped, counted.
                stats.record("datadog_telemetry") { $0.requests += 1; $0.bytes += req.body.count }
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
        let t = base.trimmingSpaces().lowercased()
        return t.isEmpty ? nil : t
    }

    private func handle(_ req: HTTPRequest, _ respond: @escaping @Sendable (HTTPResponse) -> Void, endpoint: String,
                        select: (String?) -> Selection) {
        let decoder: Decoder
        switch select(Self.mediaType(req.headers["content-type"])) {
        case .success(let d): decoder = d
        case .failure(let reason):
            stats.record("unknown") { $0.requests += 1; $0.rejectedRequests += 1 }
            respond(.error(415, code: "unsupported_media_type", message: reason))
            return
        }
        let key = decoder.format.rawValue
        let body: [UInt8]
        do {
            body = try ContentDecoding.decode(req.body, contentEncoding: req.headers["content-encoding"], limits: configuration.decompression)
        } catch {
            stats.record(key) { $0.requests += 1; $0.rejectedRequests += 1 }
            switch error.code {
            case .tooLarge: respond(.error(413, code: "body_too_large", message: error.description))
            case .unsupported: respond(.error(415, code: "unsupported_content_encoding", message: error.description))
            default: respond(.error(400, code: "bad_content_encoding", message: error.description))
            }
            return
        }
        var metadata = BatchMetadata(format: decoder.format, listener: req.listener, receivedAtNanos: wallClockNanos())
        metadata.requestTags = requestTags(req)
        if decoder.isDatadog {
            if let n = req.headers["x-datadog-trace-count"].flatMap({ Int($0.trimmingSpaces()) }) { metadata.declaredTraceCount = n }
            for f in req.headers where Self.forwardedDatadogHeaders.contains(where: { HTTPHeaders.sameName($0, f.name) }) {
                metadata.forwardHeaders.append(f)
            }
        }
        let batch: SpanBatch
        do {
            batch = try decoder.decode(body, metadata)
        } catch {
            stats.record(key) { $0.requests += 1; $0.rejectedRequests += 1 }
            respond(.error(400, code: "bad_payload", message: "\(endpoint): \(error.description)"))
            return
        }
        let byteCount = body.count
        let spanCount = batch.count
        let isDatadog = decoder.isDatadog
        let isV03 = endpoint == "datadog v0.3"  // the agent answers "OK" on v0.3 only, rates on v0.4+ whatever the encoding
        let stats = self.stats
        let version = configuration.datadogAgentVersion
        let rates = configuration.datadogRates
        // The agent answers a tracer that did not ask for real statuses 200 even when it drops the payload.
        let realStatus = req.headers["datadog-send-real-http-status"] != nil
        @Sendable func datadogOK() -> HTTPResponse {
            if isV03 { return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("OK".utf8)) }
            let answer = rates?(batch) ?? "{\"rate_by_service\":{\"service:,env:\":1}}"
            return .json(200, answer, headers: [("Datadog-Agent-Version", version)])
        }
        consumer.consume(batch) { result in
            switch result {
            case .success:
                stats.record(key) { $0.requests += 1; $0.spans += spanCount; $0.bytes += byteCount }
                respond(isDatadog ? datadogOK() : HTTPResponse(status: 202))
            case .failure(let e) where isDatadog && !realStatus && e.kind == .retryable:
                stats.record(key) { $0.requests += 1; $0.rejectedRequests += 1; $0.droppedSpans += spanCount }
                respond(datadogOK())
            case .failure(let e):
                stats.record(key) { $0.requests += 1; $0.rejectedRequests += 1 }
                switch e.kind {
                case .retryable:
                    let retry = e.retryAfterSeconds.map { [("Retry-After", String($0))] } ?? []
                    respond(.error(e.code == "queue_full" ? 429 : 503, code: e.code, message: e.message, headers: retry))
                case .permanent:
                    respond(.error(400, code: e.code, message: e.message))
                }
            }
        }
    }

    /// The listener's static tags, then (from a trusted upstream relay only) `X-Tracerelay-Tags: k=v,k2=v2`;
    /// an earlier source keeps its value when both name a key.
    func requestTags(_ req: HTTPRequest) -> [(key: String, value: String)] {
        var tags = configuration.listenerTags[req.listener] ?? []
        // A malformed header is ignored as a whole, like one that was not sent.
        if configuration.trustedListeners.contains(req.listener), let header = req.headers[TracerelayTagsHeader.name],
           let upstream = TracerelayTagsHeader.parse(header) {
            for t in upstream where !tags.contains(where: { $0.key == t.key }) { tags.append((t.key, t.value)) }
        }
        return tags
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock time in nanoseconds since the epoch.
func wallClockNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
