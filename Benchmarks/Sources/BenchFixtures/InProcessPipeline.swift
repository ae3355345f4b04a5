import Codecs
import Routing
import Spans

/// The relay's data path without sockets or queues: decode a request body, route its spans
/// (mesh tags → TrafficTrace → backend) and encode each backend's spans in the backend's format.
///
/// Encoding uses the public encoders the way Relay's `BackendEncoder` does on its general path
/// (same format: Zipkin v2 JSON spans copied as their original bytes; otherwise a translation).
/// `BackendEncoder` itself is internal to Relay, so its whole-body shortcut (forward the request
/// body untouched when every span goes to one same-format backend) is not measured here.
public struct InProcessPipeline {
    public enum Input: String, CaseIterable, Sendable { case zipkinJSON = "zipkin", datadogV04 = "datadog" }

    public let input: Input
    public let backendKind: BackendConfig.Kind
    public let table: RoutingTable
    private var router: Router
    private var out: [UInt8] = []

    /// One mesh, every service traced to one backend of `backend` kind (`zipkin` or `datadog`).
    public init(input: Input, backend: BackendConfig.Kind) {
        self.input = input
        backendKind = backend
        let conf = backend == .datadog ? "{address: 127.0.0.1, port: 8126}" : "{url: 'http://127.0.0.1:9411/api/v2/spans'}"
        let yaml = """
        type: Mesh
        name: default
        tracing:
          defaultBackend: out
          backends:
            - {name: out, type: \(backend.rawValue), conf: \(conf)}
        ---
        type: TrafficTrace
        name: trace-all
        mesh: default
        selectors:
          - match: {kuma.io/service: '*'}
        conf: {backend: out}
        """
        table = try! RoutingTable(RelayConfig.parse(yaml: yaml))
        router = Router(table)
        out.reserveCapacity(4 << 20)
    }

    /// Runs one body through; returns the spans encoded for backends (all of them, here).
    @discardableResult
    public mutating func run(_ body: [UInt8]) -> Int {
        let batch = switch input {
        case .zipkinJSON: try! ZipkinJSONV2.decode(body, metadata: BatchMetadata(format: .zipkinV2JSON))
        case .datadogV04: try! DatadogV04.decode(body, metadata: BatchMetadata(format: .datadogV04))
        }
        let routes = router.route(batch)
        var encoded = 0
        for (b, routed) in routes.perBackend.enumerated() where !routed.isEmpty {
            let spans = routed.map { Int($0.span) }
            out.removeAll(keepingCapacity: true)
            switch table.backends[b].kind {
            case .datadog: DatadogV04.encode(batch, spans: spans, into: &out)
            default: ZipkinJSONV2.encode(batch, spans: spans, into: &out)
            }
            encoded += spans.count
        }
        return encoded
    }
}
