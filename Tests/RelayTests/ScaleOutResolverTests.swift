import Foundation
import Logging
import Synchronization
import Testing
import TestSupport
@testable import Relay

/// The endpoint resolvers of a sharded backend (ScaleOut/EndpointResolvers.swift), against the
/// real file system and the system resolver.
@Suite struct ScaleOutResolverTests {
    @Test func dnsResolvesLocalhostToLoopbackURLs() throws {
        let r = DNSEndpointResolver(hostname: "localhost", port: 9411, intervalMillis: 1_000, logger: Logger(label: "test"))
        let set = try #require(r.resolveNow())
        #expect(set.contains("http://127.0.0.1:9411") || set.contains("http://[::1]:9411"), "\(set)")
        #expect(set == set.sorted() && Set(set).count == set.count)
        // A name that does not resolve keeps nothing new (the caller keeps its last set).
        let bad = DNSEndpointResolver(hostname: "no-such-host.invalid", port: 1, intervalMillis: 1_000, logger: Logger(label: "test"))
        #expect(bad.resolveNow() == nil)
    }

    @Test func fileChangesAreReportedAndAMissingFileKeepsTheLastSet() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tr-endpoints-\(UInt64.random(in: 0..<UInt64.max)).txt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "10.0.0.1:9411\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = FileEndpointResolver(path: path, intervalMillis: 100, logger: Logger(label: "test"))
        #expect(r.resolveNow() == ["http://10.0.0.1:9411"])
        let seen = Mutex<[[String]]>([])
        r.start { set in seen.withLock { $0.append(set) } }
        defer { r.stop() }
        try "10.0.0.2:9411\n10.0.0.1:9411 # two now\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(eventually { seen.withLock { $0.last } == ["http://10.0.0.1:9411", "http://10.0.0.2:9411"] })
        // Gone: no change reported, the last good set stays; back with the same set: still none.
        try FileManager.default.removeItem(atPath: path)
        #expect(r.resolveNow() == nil)
        try "10.0.0.1:9411\n10.0.0.2:9411\n".write(toFile: path, atomically: true, encoding: .utf8)
        try "10.0.0.3:9411\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(eventually { seen.withLock { $0.last } == ["http://10.0.0.3:9411"] })
        #expect(seen.withLock { $0 }.allSatisfy { !$0.isEmpty }, "a missing file never reported an empty set")
    }
}
