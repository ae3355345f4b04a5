import Testing
@testable import TLS

/// Session resumption: a client that keeps its session skips the full handshake on its next
/// connection to the same server context (tickets), and the mTLS identity survives it.
@Suite struct TLSSessionResumptionTests {
    /// One connection: handshake, one request and answer (so TLS 1.3 tickets arrive), close.
    static func connect(_ client: TLSContext, _ server: TLSContext, session: TLSSession?) throws -> (EnginePair, TLSSession?) {
        let pair = EnginePair(client: try TLSEngine(client: client, serverName: "localhost", resuming: session),
                              server: try TLSEngine(server: server))
        try pair.client.write(Array("ping".utf8))
        pair.pump()
        try pair.server.write(Array("pong".utf8))
        pair.pump()
        #expect(pair.takeClientPlaintext() == Array("pong".utf8))
        let next = pair.client.resumableSession()
        pair.client.close()
        pair.pump()
        return (pair, next)
    }

    @Test func secondHandshakeResumesWithTheSameIdentity() throws {
        let certs = try TestCertificates.get()
        let client = try TLSContext(certs.client(withCertificate: true))
        let server = try TLSContext(certs.server(clientCA: true, require: true))
        let (first, session) = try Self.connect(client, server, session: nil)
        #expect(first.serverHandshake?.resumed == false)
        let ticket = try #require(session, "no resumable session after the first connection")
        let (second, _) = try Self.connect(client, server, session: ticket)
        let s = try #require(second.serverHandshake, "\(second.serverEvents)")
        #expect(s.resumed)
        #expect(second.clientHandshake?.resumed == true)
        #expect(s.alpn == "h2")
        #expect(s.peer?.uris == [TestCertificates.clientURI])
        #expect(s.peer?.verified == true)
    }

    @Test func aSessionFromAnotherServerContextFallsBackToAFullHandshake() throws {
        let certs = try TestCertificates.get()
        let client = try TLSContext(certs.client())
        let (_, session) = try Self.connect(client, try TLSContext(certs.server()), session: nil)
        // A reloaded server (a new context from the same files) has new ticket keys.
        let ticket = try #require(session, "no resumable session after the first connection")
        let (second, _) = try Self.connect(client, try TLSContext(certs.server()), session: ticket)
        #expect(second.serverHandshake?.resumed == false, "\(second.serverEvents)")
        #expect(second.clientHandshake != nil)
    }

    /// The first connection ends as `end` says; returns whether a second one resumed its session.
    static func resumesAfter(_ end: (EnginePair) -> Void) throws -> Bool {
        let certs = try TestCertificates.get()
        let client = try TLSContext(certs.client())
        let server = try TLSContext(certs.server())
        var session: TLSSession?
        do {
            let first = EnginePair(client: try TLSEngine(client: client, serverName: "localhost"), server: try TLSEngine(server: server))
            try first.server.write(Array("hello".utf8))
            first.pump()
            session = first.client.resumableSession()
            end(first)
        } // the first pair's engines are freed here, before the second connection
        let second = EnginePair(client: try TLSEngine(client: client, serverName: "localhost", resuming: session),
                                server: try TLSEngine(server: server))
        second.pump()
        #expect(second.serverHandshake != nil, "\(second.serverEvents)")
        return second.serverHandshake?.resumed == true
    }

    @Test func aConnectionDroppedWithoutCloseNotifyStillResumes() throws {
        #expect(try Self.resumesAfter { _ in })
    }

    @Test func aFailedConnectionsSessionIsNotResumed() throws {
        let resumed = try Self.resumesAfter { pair in
            try? pair.server.write(Array("x".utf8))
            var record = pair.server.drainCiphertext()
            record[record.count - 1] ^= 0xFF
            #expect(EnginePair.error(in: pair.client.feed(record).events) != nil)
        }
        #expect(!resumed)
    }
}
