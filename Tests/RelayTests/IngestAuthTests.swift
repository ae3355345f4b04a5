import TestSupport
import Foundation
import Routing
import Testing
import TLS
import Transport
@testable import Relay

/// Ingest tokens (Sources/Relay/Auth, docs/ingest-auth.md): the constant-time compare and the
/// digests, the tokens file's errors, and a token-protected listener over real sockets with curl
/// as the client — refusals with their reason and counters, Datadog's `DD-Api-Key`, zone pins
/// refused through the router as `identity`, and tokens replaced by a reload.
@Suite(.serialized) struct IngestAuthTests {
    // MARK: digests and the constant-time compare

    @Test func constantTimeEqualComparesWholeBuffersAndLengths() {
        var rng = SplitMix64(seed: 0x15A7_0001, printing: "constantTimeEqual")
        for length in [1, 2, 31, 32, 33, 64] {
            let a = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(ConstantTime.equal(a, a), "equal, length \(length)")
            for position in Set([0, length / 2, length - 1]) {
                var b = a
                b[position] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                #expect(!ConstantTime.equal(a, b), "one bit differs at \(position) of \(length)")
            }
            #expect(!ConstantTime.equal(a, a + [0]), "a prefix is not equal (length \(length))")
            #expect(!ConstantTime.equal(a, Array(a.dropLast())), "one byte shorter (length \(length))")
        }
        #expect(ConstantTime.equal([], []))
        #expect(!ConstantTime.equal([], [0]))
    }

    @Test func digestsAreSHA256AndCompareByValue() {
        // FIPS 180-2's test vector for "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        #expect(TokenDigest(hashing: "abc") == TokenDigest(hex: abc))
        #expect(TokenDigest(hashing: "abc") == TokenDigest(hex: abc.uppercased()))
        #expect(TokenDigest(hashing: "abd") != TokenDigest(hex: abc))
        #expect(TokenDigest(hashing: "ab") != TokenDigest(hashing: "abc"))
        #expect(TokenDigest(hex: String(abc.dropLast())) == nil)
        #expect(TokenDigest(hex: String(abc.dropLast()) + "g") == nil)
        #expect(Set([TokenDigest(hashing: "x"), TokenDigest(hashing: "x"), TokenDigest(hashing: "y")]).count == 2)
    }

    @Test func bearerTokensAreTakenFromTheAuthorizationHeader() {
        #expect(IngestEndpoints.bearerToken("Bearer abc") == "abc")
        #expect(IngestEndpoints.bearerToken("bearer   abc  ") == "abc")
        #expect(IngestEndpoints.bearerToken("BEARER a.b-c~d+e/f=") == "a.b-c~d+e/f=")
        #expect(IngestEndpoints.bearerToken("Basic dXNlcjpwYXNz") == nil)
        #expect(IngestEndpoints.bearerToken("Bearer") == nil)
        #expect(IngestEndpoints.bearerToken("Bearer    ") == nil)
        #expect(IngestEndpoints.bearerToken("Bearerabc") == nil)
    }

    // MARK: the tokens file

    @Test func aTokensFileIsReadWithEveryProblemNamed() throws {
        let good = try TokenFile.parse("""
            tokens:
              - {token: "s3cr3t-eu", name: collector-eu-1, zone: zone-eu-1, tags: {kuma.io/mesh: default}}
              - {tokenSha256: \(String(repeating: "ab", count: 32)), name: hashed, region: us-east-1}
              - token: plain
            """, path: "t.yaml")
        #expect(good.map(\.name) == ["collector-eu-1", "hashed", "tokens[2]"])
        #expect(good[0].digest == TokenDigest(hashing: "s3cr3t-eu") && good[0].zone == "zone-eu-1" && good[0].tags == [TagPair("kuma.io/mesh", "default")])
        #expect(good[1].region == "us-east-1" && good[1].zone == nil)
        #expect(try TokenFile.parse("tokens: []", path: "t").isEmpty)

        let cases: [(String, String)] = [
            ("tokens:\n  - {name: a}", "tokens[0] (line 2): missing `token` (or `tokenSha256`)"),
            ("tokens:\n  - {token: a, tokenSha256: \(String(repeating: "0", count: 64))}", "give token or tokenSha256, not both"),
            ("tokens:\n  - {tokenSha256: abc}", "tokens[0].tokenSha256 (line 2): expected 64 hexadecimal digits"),
            ("tokens:\n  - {token: 'has space'}", "tokens[0].token (line 2): a token is printable ASCII without spaces"),
            ("tokens:\n  - {token: a, zone: z, region: r}", "tokens[0].region (line 2): give zone or region, not both"),
            ("tokens:\n  - {token: a, zones: z}", "tokens[0].zones (line 2): unknown field (known: name, region, tags, token, tokenSha256, zone)"),
            ("tokens:\n  - {token: a, zone: z, tags: {kuma.io/zone: y}}", "tokens[0].tags.kuma.io/zone (line 2): the token's zone or region is set by"),
            ("tokens:\n  - {token: a, tags: [x]}", "tokens[0].tags (line 2): expected a mapping"),
            ("token: a", "token (line 1): unknown field; a tokens file has only `tokens:`"),
            ("other: 1\n", "unknown field"),
            ("tokens: {a: b}", "tokens (line 1): expected a list of tokens"),
            ("- a", "expected a mapping with a `tokens:` list"),
            ("tokens: [", "not valid YAML"),
        ]
        for (text, expected) in cases {
            #expect(throws: TokenFileError.self, "\(text)") { try TokenFile.parse(text, path: "t.yaml") }
            do { _ = try TokenFile.parse(text, path: "t.yaml") } catch {
                #expect(error.description.contains(expected), "\(text) → \(error.description)")
                #expect(error.description.hasPrefix("t.yaml:"))
            }
        }
        // Every problem of a file at once.
        do { _ = try TokenFile.parse("tokens:\n  - {name: a}\n  - {token: b, zones: z}", path: "t") } catch {
            #expect(error.problems.count == 2, "\(error.problems)")
        }
    }

    @Test func tokensAreResolvedAgainstTheRegionsOfTheConfiguration() throws {
        let rules = try TokenFile.parse("""
            tokens:
              - {token: a, name: eu, zone: zone-eu-1}
              - {token: b, name: us, region: us-east-1}
              - {token: c, name: anywhere}
            """, path: "t")
        let tokens = try IngestTokens(rules: rules, path: "t", regions: ["eu-west-1", "us-east-1"], zoneRegions: ["zone-eu-1": "eu-west-1"])
        #expect(tokens.lookup("a")?.region == "eu-west-1")
        #expect(tokens.lookup("b")?.region == "us-east-1")
        #expect(tokens.lookup("c")?.rule.name == "anywhere" && tokens.lookup("c")?.region == nil)
        #expect(tokens.lookup("a ") == nil && tokens.lookup("") == nil && tokens.lookup("A") == nil)

        func problems(_ text: String, regions: [String] = ["eu-west-1"]) -> [String] {
            do {
                _ = try IngestTokens(rules: try TokenFile.parse(text, path: "t"), path: "t", regions: regions, zoneRegions: ["zone-eu-1": "eu-west-1"])
                return []
            } catch { return error.problems }
        }
        #expect(problems("tokens: [{token: a, zone: zone-xx}]") == ["tokens[0].zone: zone 'zone-xx' is not in zoneRegions, so its region is unknown; add it there"])
        #expect(problems("tokens: [{token: a, region: mars}]") == ["tokens[0]: region 'mars' is not a region of this configuration (known: eu-west-1)"])
        #expect(problems("tokens: [{token: a, name: x}, {token: a, name: y}]") == ["tokens[1] (y): the same token as tokens[0] (x); each client needs its own"])
        let sameName = "tokens: [{token: a, name: x}, {tokenSha256: \(String(repeating: "1", count: 64)), name: x}]"
        #expect(problems(sameName) == ["tokens[1].name: 'x' already names tokens[0]; names tell tokens apart in logs"])
    }

    @Test func aMissingTokensFileIsAStartErrorNamingTheField() throws {
        let file = try RelayFile.parse(yaml: "type: Relay\nlisteners:\n  - {name: a, address: 127.0.0.1:0}\n  - name: b\n    address: 127.0.0.1:0\n    auth: {tokensFile: /nonexistent/tokens.yaml}\n")
        #expect(file.relay.listeners[1].auth == ListenerAuthSettings(tokensFile: "/nonexistent/tokens.yaml"))
        let table = try RoutingTable(file.routing)
        #expect(throws: RelayStartError.self) { try RelayService.Settings(file: file, table: table, overrides: RelayOverrides()) }
        do { _ = try RelayService.Settings(file: file, table: table, overrides: RelayOverrides()) } catch {
            #expect(error.message == "listeners[1].auth.tokensFile: /nonexistent/tokens.yaml: cannot read the tokens file: No such file or directory")
        }
        // `auth:` without a file is a configuration error with its path.
        #expect(throws: ConfigError.self) { try RelayFile.parse(yaml: "type: Relay\nlisteners:\n  - {name: a, address: 127.0.0.1:0, auth: {}}\n") }
        do { _ = try RelayFile.parse(yaml: "type: Relay\nlisteners:\n  - {name: a, address: 127.0.0.1:0, auth: {}}\n") } catch {
            #expect(error.description.contains("listeners[0].auth.tokensFile: missing required field 'tokensFile'"), "\(error)")
        }
    }

    /// With mTLS identities and tokens on one listener, the certificate's region and the token's
    /// must agree (the request can carry one pin only). TLS itself is covered by TLSTests and
    /// test_tls_ingest.py; this drives the check with a verified identity as the TLS layer hands it.
    @Test func aTokenOfAnotherRegionThanTheCertificateIs403() throws {
        var c = IngestConfiguration()
        c.identityListeners = ["in"]
        c.peers = PeerIdentityMap(entries: [.init(rule: PeerRule(match: "spiffe://default/zone-eu-1/*", zone: "zone-eu-1"), region: "eu-west-1")])
        let rules = try TokenFile.parse("tokens: [{token: us, name: us, zone: zone-us-1}, {token: eu, zone: zone-eu-1}, {token: free}]", path: "t")
        c.tokens["in"] = ListenerTokens(try IngestTokens(rules: rules, path: "t", regions: ["eu-west-1", "us-east-1"],
                                                         zoneRegions: ["zone-eu-1": "eu-west-1", "zone-us-1": "us-east-1"]))
        let ingest = IngestEndpoints(configuration: c, consumer: CapturingConsumer())
        func refusal(_ token: String) -> IngestEndpoints.Refusal? {
            let req = HTTPRequest(method: "POST", path: "/api/v2/spans", headers: HTTPHeaders([(name: "Authorization", value: "Bearer \(token)")]),
                                  listener: "in", peer: TLSPeerIdentity(uris: ["spiffe://default/zone-eu-1/collector"], verified: true))
            if case .failure(let r) = ingest.authenticate(req, datadog: false) { return r }
            return nil
        }
        #expect(refusal("us")?.status == 403)
        #expect(refusal("us")?.code == "forbidden")
        #expect(refusal("us")?.message.contains("speaks for region eu-west-1 and the token 'us' for region us-east-1") == true)
        #expect(refusal("eu") == nil && refusal("free") == nil)
        #expect(refusal("nope")?.status == 401)
    }

    // MARK: a protected listener over real sockets

    @Test func requestsWithoutAValidTokenAre401AndCounted() throws {
        let env = try AuthEnvironment()
        defer { env.stop() }
        let zipkin = String(decoding: zipkinBody(0..<2), as: UTF8.self)
        let cases: [(headers: [String], challenge: String, says: String)] = [
            ([], #"Bearer realm="tracerelay""#, "this listener requires a token: send `Authorization: Bearer <token>`"),
            (["Authorization: Basic dXNlcjpwYXNz"], #"Bearer realm="tracerelay""#, "the Authorization header is not a bearer token"),
            (["Authorization: Bearer not-the-token"], #"Bearer realm="tracerelay", error="invalid_token""#, "the token is not valid for this listener"),
            (["Authorization: Bearer \(AuthEnvironment.anyToken)x"], #"error="invalid_token""#, "the token is not valid"),
            // DD-Api-Key counts on the Datadog endpoints only.
            (["DD-Api-Key: \(AuthEnvironment.anyToken)"], #"Bearer realm="tracerelay""#, "requires a token"),
        ]
        for c in cases {
            let a = try curl(env.relay.port, "/api/v2/spans", body: zipkin, headers: c.headers + ["Content-Type: application/json"])
            #expect(a.status == 401, "\(c.headers): \(a.body)")
            #expect(a.json["error"] as? String == "unauthorized")
            #expect((a.json["message"] as? String)?.contains(c.says) == true, "\(a.body)")
            #expect(a.header("WWW-Authenticate")?.contains(c.challenge) == true, "\(a.headers)")
            #expect(!a.body.contains("not-the-token") && !a.body.contains(AuthEnvironment.anyToken), "a token never comes back")
        }
        let refused = env.relay.service.ingestStats.byListener[IngestStats.Key(listener: "collectors", format: "zipkin_v2_json")]
        #expect(refused?.refused["unauthorized"] == cases.count)
        let metrics = try env.relay.scrape()
        #expect(metrics.value("tracerelay_ingest_requests_refused_total",
                              [("listener", "collectors"), ("format", "zipkin_v2_json"), ("reason", "unauthorized")]) == Double(cases.count))
        // Nothing reached a backend.
        #expect(env.eu.requests.isEmpty && env.us.requests.isEmpty)
    }

    @Test func bearerTokensAndDatadogKeysAreAccepted() throws {
        let env = try AuthEnvironment()
        defer { env.stop() }
        let zipkin = String(decoding: zipkinBody(0..<3), as: UTF8.self)
        let ok = try curl(env.relay.port, "/api/v2/spans", body: zipkin,
                          headers: ["Authorization: Bearer \(AuthEnvironment.anyToken)", "Content-Type: application/json"])
        #expect(ok.status == 202, "\(ok.body)")
        #expect(eventually { (try? env.eu.zipkinIDs().count) == 3 })

        // Datadog: DD-Api-Key (or a bearer token) on the trace and stats endpoints; /info stays open.
        let dd = #"[[{"trace_id":7,"span_id":8,"parent_id":0,"name":"op","service":"web","resource":"r","start":1700000000000000000,"duration":5}]]"#
        let path = "/v0.4/traces"
        #expect(try curl(env.relay.port, path, method: "PUT", body: dd, headers: ["Content-Type: application/json"]).status == 401)
        #expect(try curl(env.relay.port, path, method: "PUT", body: dd, headers: ["Content-Type: application/json", "DD-Api-Key: wrong"]).status == 401)
        let viaKey = try curl(env.relay.port, path, method: "PUT", body: dd, headers: ["Content-Type: application/json", "DD-Api-Key: \(AuthEnvironment.anyToken)"])
        #expect(viaKey.status == 200, "\(viaKey.body)")
        #expect(viaKey.body.contains("rate_by_service"))
        let viaBearer = try curl(env.relay.port, path, method: "PUT", body: dd,
                                 headers: ["Content-Type: application/json", "Authorization: Bearer \(AuthEnvironment.anyToken)"])
        #expect(viaBearer.status == 200)
        #expect(try curl(env.relay.port, "/info", method: "GET").status == 200)
        #expect(try curl(env.relay.port, "/v0.6/stats", method: "PUT", body: "x", headers: ["Content-Type: application/msgpack"]).status == 401)
        #expect(try curl(env.relay.port, "/v0.6/stats", method: "PUT", body: "x",
                         headers: ["Content-Type: application/msgpack", "DD-Api-Key: \(AuthEnvironment.anyToken)"]).status == 200)
        let stats = env.relay.service.ingestStats.byListener
        #expect(stats[IngestStats.Key(listener: "collectors", format: "datadog_v03_json")]?.refused["unauthorized"] == 2)
        #expect(stats[IngestStats.Key(listener: "collectors", format: "datadog_v03_json")]?.spans == 2)
        #expect(stats[IngestStats.Key(listener: "collectors", format: "datadog_stats")]?.refused["unauthorized"] == 1)
    }

    @Test func aZoneTokenCannotSendAnotherRegionsSpans() throws {
        let env = try AuthEnvironment()
        defer { env.stop() }
        let eu = ["Authorization: Bearer \(AuthEnvironment.euToken)", "Content-Type: application/json"]
        // Untagged spans belong to the token's zone and carry its tags (as request tags).
        #expect(try curl(env.relay.port, "/api/v2/spans", body: spans(0..<4), headers: eu).status == 202)
        #expect(eventually { (try? env.eu.zipkinIDs().count) == 4 })
        let tags = try #require(env.relay.service.capture.batches.last).metadata.requestTags.map { "\($0.key)=\($0.value)" }
        #expect(tags == ["team=payments", "kuma.io/zone=zone-eu-1"])
        // Spans of the us region, by their own tag or the trusted header, are refused and counted.
        #expect(try curl(env.relay.port, "/api/v2/spans", body: spans(10..<13, region: "us-east-1"), headers: eu).status == 202)
        #expect(try curl(env.relay.port, "/api/v2/spans", body: spans(20..<22), headers: eu + ["X-Tracerelay-Tags: kuma.io/zone=zone-us-1"]).status == 202)
        #expect(eventually { env.relay.service.routingStats.snapshot.refused["identity|us-east-1|"] == 5 }, "\(env.relay.service.routingStats.snapshot)")
        #expect(try env.relay.scrape().value("tracerelay_spans_refused_total", [("reason", "identity"), ("region", "us-east-1"), ("backend", "")]) == 5)
        // The us token (given by its digest in the file) sends us spans to the us backend.
        let us = ["Authorization: Bearer \(AuthEnvironment.usToken)", "Content-Type: application/json"]
        #expect(try curl(env.relay.port, "/api/v2/spans", body: spans(30..<32, region: "us-east-1"), headers: us).status == 202)
        #expect(eventually { (try? env.us.zipkinIDs().count) == 2 })
        #expect(try env.eu.zipkinIDs().count == 4, "nothing else reached eu")
    }

    @Test func aReloadReplacesTheTokensAndABrokenFileKeepsThem() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tr-auth-\(UInt64.random(in: 0..<UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tokens = dir + "/tokens.yaml"
        try "tokens:\n  - {token: old-token-1, name: old}\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let config = zipkinConfig(sink.port).replacingOccurrences(of: "type: Relay\n",
                                                                  with: "type: Relay\nlisteners:\n  - {name: in, address: 127.0.0.1:0, auth: {tokensFile: \(tokens)}}\n")
        let relay = try ReloadingRelay(config)
        defer { relay.stop() }
        func post(_ token: String) throws -> Int {
            try curl(relay.port, "/api/v2/spans", body: String(decoding: zipkinBody(0..<1), as: UTF8.self),
                     headers: ["Authorization: Bearer \(token)", "Content-Type: application/json"]).status
        }
        #expect(try post("old-token-1") == 202)
        #expect(try post("new-token-2") == 401)

        // Replaced as a deployment would (a new file renamed over the old one), then reloaded.
        try "tokens:\n  - {token: new-token-2, name: new}\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let (status, answer) = try relay.reload()
        #expect(status == 200, "\(answer)")
        #expect((answer["restart_needed"] as? [String])?.isEmpty == true, "\(answer)")
        #expect(try post("old-token-1") == 401)
        #expect(try post("new-token-2") == 202)

        // A broken file: the reload is refused, naming the entry, and the running tokens stay.
        try "tokens:\n  - {name: nothing}\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let (refused, why) = try relay.reload()
        #expect(refused != 200)
        #expect((why["message"] as? String)?.contains("listeners[0].auth.tokensFile: \(tokens): tokens[0] (line 2): missing `token`") == true, "\(why)")
        #expect(try post("new-token-2") == 202)
        #expect(try post("old-token-1") == 401)
    }
}

/// Two regions' backends behind one listener that asks for tokens: an eu zone's token (with a
/// tag), a us token given by its digest only, and a token pinned to nothing.
private final class AuthEnvironment {
    static let euToken = "eu-6f1c2a9d4b7e8f30"
    static let usToken = "us-0a9b8c7d6e5f4a3b"
    static let anyToken = "any-5e4d3c2b1a098765"
    let eu: SinkServer, us: SinkServer
    let relay: TestRelay
    let dir: String

    init() throws {
        eu = try SinkServer()
        us = try SinkServer()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tr-auth-\(UInt64.random(in: 0..<UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let usDigest = try Tool.run("/usr/bin/sha256sum", [], stdin: Self.usToken).output.prefix(64)
        try """
        tokens:
          - {token: \(Self.euToken), name: collector-eu-1, zone: zone-eu-1, tags: {team: payments}}
          - {tokenSha256: \(usDigest), name: collector-us-1, zone: zone-us-1}
          - {token: \(Self.anyToken), name: ops}
        """.write(toFile: dir + "/tokens.yaml", atomically: true, encoding: .utf8)
        relay = try TestRelay("""
            type: Relay
            region: eu-west-1
            trustUpstreamTags: true
            listeners:
              - name: collectors
                address: 127.0.0.1:0
                auth: {tokensFile: \(dir)/tokens.yaml}
            zoneRegions: {zone-eu-1: eu-west-1, zone-us-1: us-east-1}
            backends:
              - {name: eu, type: zipkin, region: eu-west-1, export: {batchDelay: 20ms}, conf: {url: "http://127.0.0.1:\(eu.port)/api/v2/spans"}}
              - {name: us, type: zipkin, region: us-east-1, export: {batchDelay: 20ms}, conf: {url: "http://127.0.0.1:\(us.port)/api/v2/spans"}}
            ---
            type: Mesh
            name: default
            tracing: {defaultBackend: eu}
            ---
            type: TrafficTrace
            name: us-traffic
            mesh: default
            selectors: [{match: {region: us-east-1}}]
            conf: {backend: us}
            """, spillDir: dir + "/spill", debugCapture: 100)
    }

    func stop() {
        relay.stop()
        eu.stop()
        us.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Zipkin v2 JSON spans with ids from `ids`, tagged with `region` when given.
private func spans(_ ids: Range<Int>, region: String? = nil) -> String {
    "[" + ids.map { i in
        let tags = region.map { #","tags":{"region":"\#($0)"}"# } ?? ""
        return #"{"traceId":"\#(String(i + 0x100, radix: 16))","id":"\#(String(i + 1, radix: 16))","name":"op","timestamp":1700000000000000,"duration":5,"localEndpoint":{"serviceName":"web"}\#(tags)}"#
    }.joined(separator: ",") + "]"
}

/// What curl got: status, headers, body (and the body as a JSON object when it is one).
private struct CurlAnswer {
    var status: Int
    var headers: [(String, String)]
    var body: String
    var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]) ?? [:] }
    func header(_ name: String) -> String? { headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1 }
}

/// One request with the curl command-line client (a real, independent HTTP/1.1 client).
private func curl(_ port: Int, _ path: String, method: String = "POST", body: String? = nil, headers: [String] = []) throws -> CurlAnswer {
    var args = ["-sS", "-i", "--max-time", "10", "-X", method]
    for h in headers { args += ["-H", h] }
    if body != nil { args += ["--data-binary", "@-"] }
    let (status, output) = try Tool.run("/usr/bin/curl", args + ["http://127.0.0.1:\(port)\(path)"], stdin: body)
    guard status == 0, let split = output.range(of: "\r\n\r\n") else { throw CurlFailed(output: output) }
    let head = output[..<split.lowerBound].split(separator: "\r\n")
    let code = head.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? -1
    let fields = head.dropFirst().compactMap { line -> (String, String)? in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        return (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
    }
    return CurlAnswer(status: code, headers: fields, body: String(output[split.upperBound...]))
}

private struct CurlFailed: Error { var output: String }
