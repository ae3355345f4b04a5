import Testing
import Spans
@testable import Codecs

/// The cases of Zipkin's own converter tests (`zipkin2.v1.SpanConverterTest` and
/// `V1SpanConverterTest` in openzipkin/zipkin), fed to our decoder as v1 JSON bodies: each
/// states the v1 span and the v2 spans Zipkin makes of it.
@Suite struct ZipkinV1ConverterTests {
    // Zipkin's TestObjects endpoints.
    static let frontend = #"{"serviceName":"frontend","ipv4":"127.0.0.1"}"#
    static let backend = #"{"serviceName":"backend","ipv4":"192.168.99.101","port":9000}"#
    static let kafka = #"{"serviceName":"kafka"}"#
    static let ts: Int64 = 1_472_470_996_199_000
    static let today: Int64 = 1_700_000_000_000_000

    /// A binary annotation value: a string literal is a JSON string, `true` (or `.raw`) a literal.
    enum Value: Sendable, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
        case string(String), raw(String)
        init(stringLiteral s: String) { self = .string(s) }
        init(booleanLiteral b: Bool) { self = .raw(b ? "true" : "false") }
        var json: String {
            switch self {
            case .string(let s): #""\#(s)""#
            case .raw(let r): r
            }
        }
    }

    /// A v1 span as JSON.
    static func v1(trace: String = "1", parent: String? = nil, id: String, name: String? = nil,
                   timestamp: Int64? = nil, duration: Int64? = nil,
                   annotations: [(Int64, String, String?)] = [], binary: [(String, Value, String?)] = []) -> String {
        var fields = [#""traceId":"\#(trace)""#, #""id":"\#(id)""#]
        if let parent { fields.append(#""parentId":"\#(parent)""#) }
        if let name { fields.append(#""name":"\#(name)""#) }
        if let timestamp { fields.append(#""timestamp":\#(timestamp)"#) }
        if let duration { fields.append(#""duration":\#(duration)"#) }
        let anns = annotations.map { a in
            #"{"timestamp":\#(a.0),"value":"\#(a.1)""# + (a.2.map { #","endpoint":\#($0)"# } ?? "") + "}"
        }
        if !anns.isEmpty { fields.append(#""annotations":[\#(anns.joined(separator: ","))]"#) }
        let bins = binary.map { b -> String in
            #"{"key":"\#(b.0)","value":\#(b.1.json)"# + (b.2.map { #","endpoint":\#($0)"# } ?? "") + "}"
        }
        if !bins.isEmpty { fields.append(#""binaryAnnotations":[\#(bins.joined(separator: ","))]"#) }
        return "[{" + fields.joined(separator: ",") + "}]"
    }

    /// A v2 span as Zipkin's builder states it; endpoints as `service@ip:port`.
    struct V2: Equatable, CustomStringConvertible {
        var kind: SpanKind = .unspecified
        var local: String? = nil
        var remote: String? = nil
        var timestamp: Int64 = 0
        var duration: Int64 = 0
        var shared = false
        var annotations: [String] = []
        var tags: [String: String] = [:]
        var description: String {
            "\(kind) \(local ?? "-")→\(remote ?? "-") ts=\(timestamp) d=\(duration) shared=\(shared) ann=\(annotations) tags=\(tags)"
        }
    }

    static let FRONTEND = "frontend@127.0.0.1", BACKEND = "backend@192.168.99.101:9000", KAFKA = "kafka"

    static func convert(_ json: String) throws -> [V2] {
        let b = try ZipkinJSONV1.decode(Array(json.utf8), metadata: BatchMetadata(format: .zipkinV1JSON))
        func ep(_ e: Endpoint) -> String? {
            if e.isEmpty { return nil }
            var s = b.string(e.serviceName)
            let ip = b.string(e.ipv4) + b.string(e.ipv6)
            if !ip.isEmpty { s += "@" + ip }
            if e.port != 0 { s += ":\(e.port)" }
            return s
        }
        return b.spans.map { s in
            V2(kind: s.kind, local: ep(s.localEndpoint), remote: ep(s.remoteEndpoint), timestamp: s.startNanos / 1000,
               duration: s.durationNanos / 1000, shared: s.flags.contains(.shared),
               annotations: b.annotations(of: s).map { "\($0.timestampNanos / 1000):\(b.string($0.value))" },
               tags: b.tagDictionary(s))
        }
    }

    static func check(_ json: String, _ want: [V2], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let got = try convert(json)
        #expect(got == want, "\n got \(got)\nwant \(want)", sourceLocation: sourceLocation)
    }

    // MARK: SpanConverterTest

    @Test func client() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "cs", Self.frontend), (1_472_470_996_238_000, "ws", Self.frontend),
                                             (1_472_470_996_403_000, "wr", Self.frontend), (1_472_470_996_406_000, "cr", Self.frontend)],
                               binary: [("http.path", "/api", Self.frontend), ("clnt/finagle.version", "6.45.0", Self.frontend),
                                        ("sa", true, Self.backend)]),
                       [V2(kind: .client, local: Self.FRONTEND, remote: Self.BACKEND, timestamp: Self.ts, duration: 207_000,
                           annotations: ["1472470996238000:ws", "1472470996403000:wr"],
                           tags: ["http.path": "/api", "clnt/finagle.version": "6.45.0"])])
    }

    @Test func clientUnfinished() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts,
                               annotations: [(Self.ts, "cs", Self.frontend), (1_472_470_996_238_000, "ws", Self.frontend)]),
                       [V2(kind: .client, local: Self.FRONTEND, timestamp: Self.ts, annotations: ["1472470996238000:ws"])])
    }

    @Test func lateRemoteEndpointCR() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", annotations: [(Self.ts, "cr", Self.frontend)],
                               binary: [("sa", true, Self.backend)]),
                       [V2(kind: .client, local: Self.FRONTEND, remote: Self.BACKEND, annotations: ["\(Self.ts):cr"])])
    }

    @Test func lateRemoteEndpointSA() throws {
        try Self.check(Self.v1(parent: "2", id: "3", binary: [("sa", true, Self.backend)]), [V2(remote: Self.BACKEND)])
    }

    @Test func noAnnotationsExceptAddresses() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               binary: [("lc", "", Self.frontend), ("sa", true, Self.backend)]),
                       [V2(local: Self.FRONTEND, remote: Self.BACKEND, timestamp: Self.ts, duration: 207_000)])
    }

    @Test func server() throws {
        try Self.check(Self.v1(id: "2", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "sr", Self.backend), (1_472_470_996_406_000, "ss", Self.backend)],
                               binary: [("http.path", "/api", Self.backend), ("finagle.version", "6.45.0", Self.backend),
                                        ("ca", true, Self.frontend)]),
                       [V2(kind: .server, local: Self.BACKEND, remote: Self.FRONTEND, timestamp: Self.ts, duration: 207_000,
                           tags: ["http.path": "/api", "finagle.version": "6.45.0"])])
    }

    /// A historical Finagle server span, with the client's socket as `ca`.
    @Test func serverClientAddress() throws {
        let t = Self.today
        let frontendPort = #"{"serviceName":"frontend","ipv4":"127.0.0.1","port":63840}"#
        let backendNoPort = #"{"serviceName":"backend","ipv4":"192.168.99.101"}"#
        let gc = "Gc(9,0.PSScavenge,2015-09-17 12:37:02 +0000,304.milliseconds+762.microseconds)"
        try Self.check(Self.v1(id: "2", name: "get",
                               annotations: [(t, "sr", Self.backend), (t + 500, gc, Self.backend), (t + 207_000, "ss", Self.backend)],
                               binary: [("srv/finagle.version", "6.28.0", backendNoPort), ("sa", true, Self.backend),
                                        ("ca", true, frontendPort)]),
                       [V2(kind: .server, local: Self.BACKEND, remote: Self.FRONTEND + ":63840", timestamp: t, duration: 207_000,
                           shared: true, annotations: ["\(t + 500):\(gc)"], tags: ["srv/finagle.version": "6.28.0"])])
    }

    @Test func missingEndpoints() throws {
        try Self.check(Self.v1(parent: "1", id: "2", name: "foo", timestamp: Self.ts, duration: 207_000),
                       [V2(timestamp: Self.ts, duration: 207_000)])
    }

    /// No special treatment for a core annotation without an endpoint.
    @Test func missingEndpointsCoreAnnotation() throws {
        try Self.check(Self.v1(parent: "1", id: "2", name: "foo", timestamp: Self.ts, annotations: [(Self.ts, "sr", nil)]),
                       [V2(timestamp: Self.ts, annotations: ["\(Self.ts):sr"])])
    }

    @Test func serverSharedWithoutTimestampAndDuration() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get",
                               annotations: [(Self.ts, "sr", Self.backend), (1_472_470_996_406_000, "ss", Self.backend)]),
                       [V2(kind: .server, local: Self.BACKEND, timestamp: Self.ts, duration: 207_000, shared: true)])
    }

    @Test func serverIncompleteShared() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", annotations: [(Self.ts, "sr", Self.backend)]),
                       [V2(kind: .server, local: Self.BACKEND, timestamp: Self.ts, shared: true)])
    }

    @Test func lateRemoteEndpointSS() throws {
        try Self.check(Self.v1(id: "2", name: "get", annotations: [(Self.ts, "ss", Self.backend)], binary: [("ca", true, Self.frontend)]),
                       [V2(kind: .server, local: Self.BACKEND, remote: Self.FRONTEND, annotations: ["\(Self.ts):ss"])])
    }

    @Test func lateRemoteEndpointCA() throws {
        try Self.check(Self.v1(id: "2", binary: [("ca", true, Self.frontend)]), [V2(kind: .server, remote: Self.FRONTEND)])
    }

    @Test func localSpanEmptyComponent() throws {
        try Self.check(Self.v1(id: "2", name: "local", timestamp: Self.ts, duration: 207_000,
                               binary: [("lc", "", #"{"serviceName":"frontend"}"#)]),
                       [V2(local: "frontend", timestamp: Self.ts, duration: 207_000)])
    }

    @Test func producerRemote() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "send", timestamp: Self.ts,
                               annotations: [(Self.ts, "ms", Self.frontend)], binary: [("ma", true, Self.kafka)]),
                       [V2(kind: .producer, local: Self.FRONTEND, remote: Self.KAFKA, timestamp: Self.ts)])
    }

    @Test func producerDuration() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "send", timestamp: Self.ts, duration: 51_000,
                               annotations: [(Self.ts, "ms", Self.frontend), (1_472_470_996_250_000, "ws", Self.frontend)]),
                       [V2(kind: .producer, local: Self.FRONTEND, timestamp: Self.ts, duration: 51_000)])
    }

    @Test func consumer() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "next-message", timestamp: Self.ts,
                               annotations: [(Self.ts, "mr", Self.backend)]),
                       [V2(kind: .consumer, local: Self.BACKEND, timestamp: Self.ts)])
    }

    @Test func consumerRemote() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "next-message", timestamp: Self.ts,
                               annotations: [(Self.ts, "mr", Self.backend)], binary: [("ma", true, Self.kafka)]),
                       [V2(kind: .consumer, local: Self.BACKEND, remote: Self.KAFKA, timestamp: Self.ts)])
    }

    @Test func consumerDuration() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "next-message", timestamp: Self.ts, duration: 51_000,
                               annotations: [(Self.ts, "wr", Self.backend), (1_472_470_996_250_000, "mr", Self.backend)]),
                       [V2(kind: .consumer, local: Self.BACKEND, timestamp: Self.ts, duration: 51_000)])
    }

    /// One span id for client and server: two v2 spans, each with its own data.
    @Test func clientAndServer() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "cs", Self.frontend), (1_472_470_996_238_000, "ws", Self.frontend),
                                             (1_472_470_996_250_000, "sr", Self.backend), (1_472_470_996_350_000, "ss", Self.backend),
                                             (1_472_470_996_403_000, "wr", Self.frontend), (1_472_470_996_406_000, "cr", Self.frontend)],
                               binary: [("http.path", "/api", Self.frontend), ("http.path", "/BACKEND", Self.backend),
                                        ("clnt/finagle.version", "6.45.0", Self.frontend), ("srv/finagle.version", "6.44.0", Self.backend),
                                        ("ca", true, Self.frontend), ("sa", true, Self.backend)]),
                       [V2(kind: .client, local: Self.FRONTEND, remote: Self.BACKEND, timestamp: Self.ts, duration: 207_000,
                           annotations: ["1472470996238000:ws", "1472470996403000:wr"],
                           tags: ["http.path": "/api", "clnt/finagle.version": "6.45.0"]),
                        V2(kind: .server, local: Self.BACKEND, remote: Self.FRONTEND, timestamp: 1_472_470_996_250_000,
                           duration: 100_000, shared: true, tags: ["http.path": "/BACKEND", "srv/finagle.version": "6.44.0"])])
    }

    @Test func assumesServerWithoutTimestampIsShared() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get",
                               annotations: [(1_472_470_996_250_000, "sr", Self.backend), (1_472_470_996_350_000, "ss", Self.backend)]),
                       [V2(kind: .server, local: Self.BACKEND, timestamp: 1_472_470_996_250_000, duration: 100_000, shared: true)])
    }

    @Test func clientAndServerLoopback() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "cs", Self.frontend), (1_472_470_996_250_000, "sr", Self.frontend),
                                             (1_472_470_996_350_000, "ss", Self.frontend), (1_472_470_996_406_000, "cr", Self.frontend)]),
                       [V2(kind: .client, local: Self.FRONTEND, timestamp: Self.ts, duration: 207_000),
                        V2(kind: .server, local: Self.FRONTEND, timestamp: 1_472_470_996_250_000, duration: 100_000, shared: true)])
    }

    @Test func onewayLoopback() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get",
                               annotations: [(Self.ts, "cs", Self.frontend), (1_472_470_996_250_000, "sr", Self.frontend)]),
                       [V2(kind: .client, local: Self.FRONTEND, timestamp: Self.ts),
                        V2(kind: .server, local: Self.FRONTEND, timestamp: 1_472_470_996_250_000, shared: true)])
    }

    @Test func producer() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "send", annotations: [(Self.ts, "ms", Self.frontend)]),
                       [V2(kind: .producer, local: Self.FRONTEND, timestamp: Self.ts)])
    }

    /// Half new style, half old (a bridge): the span's own times win over a late `cs`.
    @Test func clientMissingCS() throws {
        try Self.check(Self.v1(id: "2", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(1_472_470_996_406_000, "cs", Self.frontend)]),
                       [V2(kind: .client, local: Self.FRONTEND, timestamp: Self.ts, duration: 207_000)])
    }

    @Test func serverMissingSR() throws {
        try Self.check(Self.v1(id: "2", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(1_472_470_996_406_000, "ss", Self.backend)]),
                       [V2(kind: .server, local: Self.BACKEND, timestamp: Self.ts, duration: 207_000)])
    }

    @Test func redundantAddressAnnotationsClient() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "cs", Self.frontend), (1_472_470_996_406_000, "cr", Self.frontend)],
                               binary: [("ca", true, Self.frontend), ("sa", true, Self.frontend)]),
                       [V2(kind: .client, local: Self.FRONTEND, remote: Self.FRONTEND, timestamp: Self.ts, duration: 207_000)])
    }

    @Test func redundantServiceNameOnAddressAnnotationsServer() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "sr", Self.frontend), (1_472_470_996_406_000, "ss", Self.frontend)],
                               binary: [("ca", true, Self.frontend), ("sa", true, Self.frontend)]),
                       [V2(kind: .server, local: Self.FRONTEND, timestamp: Self.ts, duration: 207_000)])
    }

    @Test func redundantServiceNameOnAddressAnnotationsServerRetainsClientSocket() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: Self.ts, duration: 207_000,
                               annotations: [(Self.ts, "sr", Self.backend), (1_472_470_996_406_000, "ss", Self.backend)],
                               binary: [("ca", true, #"{"serviceName":"backend","ipv4":"127.0.0.1"}"#), ("sa", true, Self.backend)]),
                       [V2(kind: .server, local: Self.BACKEND, remote: "@127.0.0.1", timestamp: Self.ts, duration: 207_000)])
    }

    @Test func producerAndConsumer() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "whatev",
                               annotations: [(Self.ts, "ms", Self.frontend), (1_472_470_996_238_000, "ws", Self.frontend),
                                             (1_472_470_996_403_000, "wr", Self.backend), (1_472_470_996_406_000, "mr", Self.backend)],
                               binary: [("ma", true, Self.kafka)]),
                       [V2(kind: .producer, local: Self.FRONTEND, remote: Self.KAFKA, timestamp: Self.ts, duration: 39_000),
                        V2(kind: .consumer, local: Self.BACKEND, remote: Self.KAFKA, timestamp: 1_472_470_996_403_000,
                           duration: 3_000, shared: true)])
    }

    @Test func producerAndConsumerLoopbackShared() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "message",
                               annotations: [(Self.ts, "ms", Self.frontend), (1_472_470_996_238_000, "ws", Self.frontend),
                                             (1_472_470_996_403_000, "wr", Self.frontend), (1_472_470_996_406_000, "mr", Self.frontend)]),
                       [V2(kind: .producer, local: Self.FRONTEND, timestamp: Self.ts, duration: 39_000),
                        V2(kind: .consumer, local: Self.FRONTEND, timestamp: 1_472_470_996_403_000, duration: 3_000, shared: true)])
    }

    @Test func onlyAddressAnnotations() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "rpc", binary: [("ca", true, Self.frontend), ("sa", true, Self.backend)]),
                       [V2(local: Self.FRONTEND, remote: Self.BACKEND)])
    }

    @Test func dataMissingEndpointGoesOnFirstSpan() throws {
        try Self.check(Self.v1(id: "2", name: "missing",
                               annotations: [(Self.ts, "foo", Self.frontend), (1_472_470_996_238_000, "bar", Self.frontend),
                                             (1_472_470_996_250_000, "baz", Self.backend), (1_472_470_996_350_000, "qux", Self.backend),
                                             (1_472_470_996_403_000, "missing", nil)],
                               binary: [("foo", "bar", Self.frontend), ("baz", "qux", Self.backend), ("missing", "", nil)]),
                       [V2(local: Self.FRONTEND, annotations: ["\(Self.ts):foo", "1472470996238000:bar", "1472470996403000:missing"],
                           tags: ["foo": "bar", "missing": ""]),
                        V2(local: Self.BACKEND, annotations: ["1472470996250000:baz", "1472470996350000:qux"], tags: ["baz": "qux"])])
    }

    /// MySQL-style rows: a server span that holds the client's timestamp is still shared.
    @Test func parsesSharedFlagFromRPCSpan() throws {
        try Self.check(Self.v1(parent: "2", id: "3", name: "get", timestamp: 10,
                               annotations: [(20, "sr", Self.backend), (30, "ss", Self.backend)]),
                       [V2(kind: .server, local: Self.BACKEND, timestamp: 20, duration: 10, shared: true)])
    }

    // MARK: V1SpanConverterTest (addresses, including old zipkin-ruby's "1" for true)

    @Test(arguments: [Value.raw("true"), Value.string("1")])
    func convertMA(_ value: Value) throws {
        try Self.check(Self.v1(id: "2", annotations: [(Self.ts, "mr", Self.backend)], binary: [("ma", value, Self.kafka)]),
                       [V2(kind: .consumer, local: Self.BACKEND, remote: Self.KAFKA, timestamp: Self.ts)])
    }

    @Test(arguments: [Value.raw("true"), Value.string("1")])
    func convertSA(_ value: Value) throws {
        try Self.check(Self.v1(id: "2", annotations: [(Self.ts, "cs", Self.frontend)], binary: [("sa", value, Self.backend)]),
                       [V2(kind: .client, local: Self.FRONTEND, remote: Self.BACKEND, timestamp: Self.ts)])
    }

    @Test(arguments: [Value.raw("true"), Value.string("1")])
    func convertCA(_ value: Value) throws {
        try Self.check(Self.v1(id: "2", annotations: [(Self.ts, "sr", Self.backend)], binary: [("ca", value, Self.frontend)]),
                       [V2(kind: .server, local: Self.BACKEND, remote: Self.FRONTEND, timestamp: Self.ts, shared: true)])
    }
}
