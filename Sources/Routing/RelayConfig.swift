/// A key/value pair (mesh tag, listener tag), kept in the order the file gives.
public struct TagPair: Hashable, Sendable, CustomStringConvertible {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) { self.key = key; self.value = value }
    public var description: String { "\(key)=\(value)" }
}

/// Where spans may be sent: a Mesh tracing backend (Kuma's `zipkin`/`datadog`), a backend a
/// MeshTrace names inline, or a relay-only backend from the Relay document. tracerelay keeps
/// one queue per backend `name`, so a name means the same backend everywhere in a file.
public struct BackendConfig: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        case zipkin, datadog
        /// Another tracerelay (Zipkin v2 JSON plus the `X-Tracerelay-Tags` header). Extension.
        case tracerelay
        /// Writes a one-line summary per batch to the log and keeps nothing. Extension; needs no server.
        case log
        /// Accepts and drops everything. Extension, for tests and load runs.
        case discard
        /// Writes zstd-compressed NDJSON (Zipkin v2 JSON, one span a line) segment files under
        /// `conf.path`: an archive/debug backend that needs no server. Extension.
        case file
    }

    public var name: String
    public var kind: Kind
    /// Zipkin/tracerelay collector URL (`conf.url`), or a Datadog agent URL from a MeshTrace.
    public var url: String?
    /// Datadog agent `conf.address` and `conf.port`.
    public var address: String?
    public var port: Int?
    /// The region this backend stores traces in (tracerelay's extension to Kuma's backends).
    /// nil: not pinned.
    public var region: String?
    /// Percent of traces kept, 0...100 (Kuma's `sampling`; default 100).
    public var sampling: Double
    /// Zipkin `conf.traceId128bit`.
    public var traceId128bit: Bool
    /// Zipkin `conf.apiVersion` (`httpJson`, `httpProto`; Kuma's default `httpJson`).
    public var apiVersion: String?
    /// Datadog `conf.splitService`.
    public var splitService: Bool
    /// Every URL of a `tracerelay` backend (`conf.url` and/or `conf.urls`), spread round-robin.
    public var urls: [String] = []
    /// `file` backends: the directory segment files go to (`conf.path`).
    public var path: String?
    /// `file` backends: segment roll size (`conf.maxFileBytes`, default 64 MiB).
    public var maxFileBytes: Int = 64 << 20
    /// How the exporter talks to this backend (`export:`, tracerelay's extension).
    public var export = ExportOptions()
    /// Resolved endpoints and the routing key (`conf.resolver`, `conf.routingKey`; BackendEndpointsConfig.swift).
    public var endpoints = EndpointsOptions()
    /// TLS to an https backend (`conf.tls`; BackendTLSConfig.swift). nil: none given.
    public var tls: BackendTLSConfig?
    /// The token its requests carry (`conf.auth`; BackendAuthConfig.swift). nil: none.
    public var auth: BackendAuthConfig?
    /// Where it was defined, e.g. `Mesh 'default'`; for messages.
    public var definedIn: String

    public init(name: String, kind: Kind, url: String? = nil, address: String? = nil, port: Int? = nil,
                region: String? = nil, sampling: Double = 100, traceId128bit: Bool = false, apiVersion: String? = nil,
                splitService: Bool = false, definedIn: String = "") {
        self.name = name
        self.kind = kind
        self.url = url
        self.address = address
        self.port = port
        self.region = region
        self.sampling = sampling
        self.traceId128bit = traceId128bit
        self.apiVersion = apiVersion
        self.splitService = splitService
        self.definedIn = definedIn
    }

    /// Equal except for where it was defined.
    func sameSettings(as o: BackendConfig) -> Bool {
        var a = self
        a.definedIn = o.definedIn
        return a == o
    }

    /// `http://host:port/path` or `address:port`, for tables and logs.
    public var target: String {
        if let url { return url }
        if let address { return port.map { "\(address):\($0)" } ?? address }
        return "-"
    }
}

/// How spans are sent to one backend: the `export:` map beside a backend's `region:`
/// (tracerelay's extension; every field optional, defaults documented). Plain values: the
/// Relay module turns them into exporter and client settings.
public struct ExportOptions: Hashable, Sendable {
    public enum WireProtocol: String, Hashable, Sendable, CaseIterable { case http1, h2c }
    public enum Compression: String, Hashable, Sendable, CaseIterable { case none, gzip, zstd }
    /// nil: `h2c` for `tracerelay` backends, `http1` otherwise.
    public var protocolVersion: WireProtocol?
    /// nil: `zstd` for `tracerelay` backends; otherwise `none` on loopback targets, `gzip` elsewhere.
    public var compression: Compression?
    /// A request carries at most about this many spans (default 1000) …
    public var batchSpans: Int = 1000
    /// … and this many payload bytes before compression (default 1 MiB) …
    public var batchBytes: Int = 1 << 20
    /// … and waits at most this long for a batch to fill, milliseconds (default 200).
    public var batchDelayMillis: Int = 200
    /// Requests in flight to the backend at once (default 4).
    public var concurrency: Int = 4
    /// HTTP/1.1 connections per backend address (default: `concurrency`).
    public var poolSize: Int?
    /// Seconds a request may take (default 30).
    public var timeoutSeconds: Double = 30
    /// Seconds a connect may take (default 5).
    public var connectTimeoutSeconds: Double = 5
    /// Retry delays grow exponentially from 100 ms (with jitter) up to this, seconds (default 30).
    public var maxBackoffSeconds: Double = 30
    /// After this many consecutive failures the backend is marked down: its queue spills to disk
    /// and single probe requests test whether it is back (default 3).
    public var downAfter: Int = 3

    public init() {}
}

/// A Kuma `Mesh` resource, reduced to its tracing section.
public struct MeshResource: Hashable, Sendable {
    public var name: String
    /// `tracing.defaultBackend`; when absent Kuma uses the first backend.
    public var defaultBackend: String?
    /// Names of `tracing.backends`, in order (their settings are in `RelayConfig.backends`).
    public var backends: [String]
    public var document: Int
    public init(name: String, defaultBackend: String? = nil, backends: [String] = [], document: Int = 0) {
        self.name = name
        self.defaultBackend = defaultBackend
        self.backends = backends
        self.document = document
    }
}

/// A Kuma `TrafficTrace` policy: the selectors are alternatives, and all tags of one selector
/// must match (`'*'` matches any value).
public struct TrafficTraceResource: Hashable, Sendable {
    public var name: String
    public var mesh: String
    public var selectors: [[TagPair]]
    /// `conf.backend`; nil means the Mesh's default backend.
    public var backend: String?
    /// `modificationTime` (else `creationTime`), nanoseconds since the epoch.
    public var modificationTime: Int64?
    public var document: Int
    public init(name: String, mesh: String = "default", selectors: [[TagPair]], backend: String? = nil,
                modificationTime: Int64? = nil, document: Int = 0) {
        self.name = name
        self.mesh = mesh
        self.selectors = selectors
        self.backend = backend
        self.modificationTime = modificationTime
        self.document = document
    }
}

/// A Kuma `MeshTrace` policy (targetRef-based, the successor of TrafficTrace).
public struct MeshTraceResource: Hashable, Sendable {
    public enum TargetKind: String, Hashable, Sendable {
        case mesh = "Mesh", meshSubset = "MeshSubset", meshService = "MeshService", meshServiceSubset = "MeshServiceSubset"
        /// Kuma's order of specificity: a more specific targetRef wins.
        var specificity: Int {
            switch self { case .mesh: 0; case .meshSubset: 1; case .meshService: 2; case .meshServiceSubset: 3 }
        }
    }
    public struct HeaderTag: Hashable, Sendable {
        public var name: String
        public var header: String
        public var defaultValue: String?
    }

    public var name: String
    public var mesh: String
    public var targetKind: TargetKind
    /// `targetRef.name` (the `kuma.io/service` value) for MeshService kinds.
    public var targetName: String?
    /// `targetRef.tags` for the subset kinds.
    public var targetTags: [TagPair]
    /// Backend names (inline backends get a name: their `name` extension, else the policy's name).
    /// Empty means tracing is switched off for the matched spans (Kuma's `backends: []`).
    public var backends: [String]
    /// `default.sampling.overall|client|random`, percent. tracerelay samples by `overall`.
    public var samplingOverall: Double?
    public var samplingClient: Double?
    public var samplingRandom: Double?
    /// `default.tags` with `literal:` values: added to every routed span.
    public var literalTags: [TagPair]
    /// `default.tags` taken from request headers: Envoy sets those; kept for `explain`.
    public var headerTags: [HeaderTag]
    public var document: Int

    public init(name: String, mesh: String = "default", targetKind: TargetKind = .mesh, targetName: String? = nil,
                targetTags: [TagPair] = [], backends: [String] = [], samplingOverall: Double? = nil,
                literalTags: [TagPair] = [], document: Int = 0) {
        self.name = name
        self.mesh = mesh
        self.targetKind = targetKind
        self.targetName = targetName
        self.targetTags = targetTags
        self.backends = backends
        self.samplingOverall = samplingOverall
        self.literalTags = literalTags
        self.headerTags = []
        self.document = document
    }
}

/// What the relay does for spans of one region whose chosen backend is elsewhere.
public struct RegionSettings: Hashable, Sendable {
    /// A backend of this region that takes such spans instead of refusing them.
    public var fallbackBackend: String?
    public init(fallbackBackend: String? = nil) { self.fallbackBackend = fallbackBackend }
}

/// The routing part of a configuration file: the Kuma resources plus the Relay document's
/// routing settings (regions, zone → region map, relay-only backends). The Relay document's
/// listeners, admin address, spill and trust settings belong to the Relay module, which reads
/// them from the same file (`RelayFile` there). Parsing checks types and values;
/// `RoutingTable(config)` checks references and residency.
public struct RelayConfig: Hashable, Sendable {
    /// This relay's own region (informational; shown by `check`, used as a metrics label).
    public var region: String?
    public var regions: [String: RegionSettings] = [:]
    /// Kuma zone → region, for spans that carry a zone but no `region` tag.
    public var zoneRegions: [String: String] = [:]
    /// Every backend, from Mesh resources, MeshTraces and the Relay document, unique by name.
    public var backends: [BackendConfig] = []
    public var meshes: [MeshResource] = []
    public var trafficTraces: [TrafficTraceResource] = []
    public var meshTraces: [MeshTraceResource] = []
    /// Warnings found while parsing (unknown fields, ignored resources).
    public var diagnostics: [ConfigIssue] = []

    public init() {}

    public func backend(named name: String) -> BackendConfig? { backends.first { $0.name == name } }

    /// The routing part of the embedded default (`embeddedDefaultYAML`): a `log` backend named
    /// `default`. The Relay module reads the same text for its listeners (Zipkin on
    /// 127.0.0.1:9411, Datadog on 127.0.0.1:8126, admin on 127.0.0.1:9901).
    public static var embeddedDefault: RelayConfig {
        // The text is parsed like any file so the default and the docs cannot drift apart.
        try! parse(yaml: embeddedDefaultYAML)
    }

    public static let embeddedDefaultYAML = """
    type: Relay
    listeners:
      - name: zipkin
        address: 127.0.0.1:9411
      - name: datadog
        address: 127.0.0.1:8126
    admin:
      address: 127.0.0.1:9901
    ---
    type: Mesh
    name: default
    tracing:
      defaultBackend: default
      backends:
        - name: default
          type: log
          sampling: 100
    """
}
