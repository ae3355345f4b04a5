import Testing
import TestSupport
@testable import TLS

/// Engine against engine in memory: handshake, ALPN, data both ways in any split, close_notify,
/// a peer vanishing mid-handshake, the handshake-timeout hook and configuration errors.
@Suite struct TLSEngineTests {
    static func delivery(_ name: String) -> EnginePair.Delivery {
        switch name {
        case "byteByByte": .byteByByte
        case "randomSplits": .randomSplits(seed: 0x7E57_2026)
        default: .whole
        }
    }

    @Test(arguments: ["whole", "byteByByte", "randomSplits"])
    func handshakeThenDataBothWaysThenCloseNotify(delivery: String) throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server(), delivery: Self.delivery(delivery))
        // Written before the handshake: queued, then sent once it completes.
        let request = Array("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        try pair.client.write(request)
        #expect(pair.client.state == .handshaking)
        pair.pump()

        let s = try #require(pair.serverHandshake, "server events: \(pair.serverEvents)")
        let c = try #require(pair.clientHandshake, "client events: \(pair.clientEvents)")
        #expect(s.alpn == "h2" && c.alpn == "h2")
        #expect(s.protocolVersion == "TLSv1.3" && c.protocolVersion == "TLSv1.3")
        #expect(s.cipherSuite == c.cipherSuite && !s.cipherSuite.isEmpty)
        #expect(s.serverName == "localhost")
        #expect(!s.resumed && !c.resumed)
        #expect(s.peer == nil) // no client certificate asked for
        #expect(c.peer == TLSPeerIdentity(uris: [], dnsNames: ["localhost"], commonName: "localhost", verified: true))
        #expect(pair.client.state == .established && pair.server.state == .established)
        #expect(pair.takeServerPlaintext() == request)

        // A response larger than many records, in whatever pieces the delivery makes.
        var rng = SplitMix64(seed: 41, printing: "response bytes")
        let response = (0..<200_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try pair.server.write(response)
        pair.pump()
        #expect(pair.takeClientPlaintext() == response)

        pair.client.close()
        #expect(pair.client.state == .closed)
        pair.pump()
        #expect(pair.serverEvents.last == .closeNotifyReceived)
        #expect(pair.server.closeNotifyReceived)
        // The server may still answer after the client's close_notify, then closes too.
        try pair.server.write(Array("bye".utf8))
        pair.server.close()
        pair.pump()
        #expect(pair.takeClientPlaintext() == Array("bye".utf8))
        #expect(pair.clientEvents.last == .closeNotifyReceived)
        #expect(throws: TLSError.self) { try pair.client.write(Array("late".utf8)) }
    }

    @Test func serverPicksFromTheClientsOfferInItsOwnOrder() throws {
        let certs = try TestCertificates.get()
        let cases: [(client: [String], server: [String], expected: String?)] = [
            (["h2", "http/1.1"], ["h2", "http/1.1"], "h2"),
            (["http/1.1", "h2"], ["h2", "http/1.1"], "h2"),
            (["http/1.1"], ["h2", "http/1.1"], "http/1.1"),
            (["h2", "http/1.1"], ["http/1.1"], "http/1.1"),
            (["spdy/3"], ["h2", "http/1.1"], nil), // no overlap: no ALPN, the handshake goes on
            ([], ["h2", "http/1.1"], nil),
        ]
        for (offer, list, expected) in cases {
            let pair = try EnginePair(client: certs.client(alpn: offer), server: certs.server(alpn: list))
            pair.pump()
            #expect(pair.serverHandshake?.alpn == expected, "client \(offer), server \(list): \(pair.serverEvents)")
            #expect(pair.clientHandshake?.alpn == expected)
        }
    }

    @Test func peerVanishingMidHandshakeIsAnError() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server())
        // ClientHello to the server, then the client is gone.
        let hello = pair.client.drainCiphertext()
        #expect(!hello.isEmpty)
        #expect(pair.server.feed(hello).events.isEmpty)
        let events = pair.server.peerClosed()
        #expect(events.count == 1)
        let error = try #require(EnginePair.error(in: events))
        #expect(error.code == .unexpectedEOF)
        #expect(error.message.contains("during the TLS handshake"))
        // The client side: the server vanished before answering.
        #expect(EnginePair.error(in: pair.client.peerClosed())?.code == .unexpectedEOF)
        // After the handshake an EOF is just the end of the stream.
        let done = try EnginePair(client: certs.client(), server: certs.server())
        done.pump()
        #expect(done.server.peerClosed().isEmpty)
        #expect(!done.server.closeNotifyReceived)
    }

    @Test func handshakeTimeoutHookCountsFromTheStart() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server())
        let start = pair.server.handshakeStartedAt
        #expect(!pair.server.handshakeTimedOut(after: 5, now: start + 4_000_000_000))
        #expect(pair.server.handshakeTimedOut(after: 5, now: start + 6_000_000_000))
        pair.pump()
        #expect(!pair.server.handshakeTimedOut(after: 5, now: start + 6_000_000_000)) // done: no timeout
    }

    @Test func plainHTTPToATLSPortIsNamed() throws {
        let certs = try TestCertificates.get()
        let server = try TLSEngine(server: TLSContext(certs.server()))
        let r = server.feed(Array("POST /api/v2/spans HTTP/1.1\r\nHost: relay\r\n\r\n".utf8))
        let error = try #require(EnginePair.error(in: r.events))
        #expect(error.code == .handshakeFailed)
        #expect(error.message == "the peer sent plain HTTP to a TLS port")
        // Failed: further input is ignored, writes report the failure.
        #expect(server.feed([1, 2, 3]).events.isEmpty)
        #expect(throws: error) { try server.write([1]) }
    }

    @Test func corruptRecordAfterTheHandshakeFailsTheConnection() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server())
        pair.pump()
        try pair.client.write(Array("hello".utf8))
        var record = pair.client.drainCiphertext()
        record[record.count - 3] ^= 0xFF // break the AEAD tag
        let error = try #require(EnginePair.error(in: pair.server.feed(record).events))
        #expect(error.code == .protocolError)
        #expect(error.message.contains("bad record mac") || error.message.contains("decrypt"), "\(error.message)")
        #expect(pair.server.hasPendingCiphertext) // the alert for the client
    }

    @Test func configurationErrorsSayWhatToFix() throws {
        let certs = try TestCertificates.get()
        func error(_ c: TLSConfiguration) -> TLSError? {
            do throws(TLSError) { _ = try TLSContext(c); return nil } catch { return error }
        }
        let missing = error(.server(certificateChain: certs.path("nope.pem"), privateKey: certs.serverKey))
        #expect(missing?.message == "cannot read the certificate chain \(certs.path("nope.pem")): No such file or directory")
        let mismatch = error(.server(certificateChain: certs.serverCert, privateKey: certs.clientKey))
        #expect(mismatch?.code == .configuration)
        #expect(mismatch?.message.contains("does not belong to the certificate") == true, "\(String(describing: mismatch))")
        let notPEM = error(.server(certificateChain: certs.path("server.ext"), privateKey: certs.serverKey))
        #expect(notPEM?.message.hasPrefix("cannot load the certificate chain") == true, "\(String(describing: notPEM))")
        let requireWithoutCA = error(.server(certificateChain: certs.serverCert, privateKey: certs.serverKey, requireClientCertificate: true))
        #expect(requireWithoutCA?.message.contains("requireClientCertificate needs clientCA") == true)
        #expect(error(.client(certificateChain: certs.clientCert))?.message.contains("give both or neither") == true)
        #expect(error(.client(alpn: [""]))?.code == .configuration)

        let client = try TLSContext(certs.client())
        #expect(throws: TLSError(.configuration, "a TLS client needs the server's name to verify its certificate (or insecureSkipVerify)")) {
            try TLSEngine(client: client, serverName: nil)
        }
        #expect(throws: TLSError.self) { try TLSEngine(server: client) }
    }
}

/// `feed(_:into:deliver:)`: the plaintext decrypted straight into a caller's buffer, in parts no
/// larger than it, adds up to what was sent whatever the buffer size and the ciphertext's splits.
@Suite struct TLSEngineBufferedFeedTests {
    @Test(arguments: [1, 1000, 16_384, 65_536])
    func partsAddUpToTheStream(bufferSize: Int) throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server())
        pair.pump()
        #expect(pair.server.state == .established)
        var rng = SplitMix64(seed: 0xFEED_0001 &+ UInt64(bufferSize), printing: "buffered feed")
        let message = (0..<150_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try pair.client.write(message)
        let ciphertext = pair.client.drainCiphertext()
        var got: [UInt8] = []
        var largest = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var i = 0
        while i < ciphertext.count {
            let n = min(ciphertext.count - i, 1 + Int(rng.next() % 9000))
            let events = ciphertext[i..<(i + n)].withUnsafeBytes { bytes in
                pair.server.feed(bytes, into: buffer) { part in
                    largest = max(largest, part.count)
                    got.append(contentsOf: part)
                    return true
                }
            }
            #expect(events.isEmpty)
            i += n
        }
        #expect(got == message)
        #expect(largest <= bufferSize)
    }

    @Test func closeNotifyAndStoppingAreReported() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server())
        pair.pump()
        try pair.client.write(Array(repeating: 7, count: 40_000))
        pair.client.close()
        let ciphertext = pair.client.drainCiphertext()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 10_000, alignment: 16)
        defer { buffer.deallocate() }
        var parts = 0
        // The receiver stops after the first part: nothing more is delivered.
        let events = ciphertext.withUnsafeBytes { bytes in
            pair.server.feed(bytes, into: buffer) { _ in parts += 1; return false }
        }
        #expect(parts == 1)
        #expect(events.isEmpty)
        // A later feed goes on from where OpenSSL is, and sees the close_notify.
        var rest = 0
        let later = pair.server.feed(UnsafeRawBufferPointer(start: nil, count: 0), into: buffer) { rest += $0.count; return true }
        #expect(rest == 30_000)
        #expect(later == [.closeNotifyReceived])
    }

    /// The input BIO keeps what a stopped feed left unread and reads it before the next feed's
    /// bytes; the output BIO hands ciphertext out in limited pieces between writes. Whatever the
    /// stops and limits, the stream arrives whole and in order.
    @Test func stopsAndLimitedDrainsKeepTheOrder() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server())
        pair.pump()
        var rng = SplitMix64(seed: 0xB10_0002, printing: "stops and drains")
        var sent: [UInt8] = []
        var wire: [UInt8] = []
        for _ in 0..<40 {
            let piece = (0..<Int(rng.next() % 30_000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try pair.client.write(piece)
            sent += piece
            // Drain some of the pending ciphertext only; the rest stays queued behind later writes.
            pair.client.drainCiphertext(into: &wire, limit: Int(rng.next() % 40_000))
        }
        pair.client.drainCiphertext(into: &wire)
        #expect(!pair.client.hasPendingCiphertext)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        var got: [UInt8] = []
        var i = 0
        while i < wire.count || got.count < sent.count {
            let n = min(wire.count - i, Int(rng.next() % 50_000))
            var budget = Int(rng.next() % 4) // deliveries accepted before this feed stops
            let events = wire[i..<(i + n)].withUnsafeBytes { bytes in
                pair.server.feed(bytes, into: buffer) { part in
                    got.append(contentsOf: part)
                    budget -= 1
                    return budget > 0
                }
            }
            #expect(events.isEmpty)
            i += n
            if i == wire.count && n == 0 && got.count < sent.count && events.isEmpty && budget > 0 { break } // stuck
        }
        #expect(got.count == sent.count)
        #expect(got == sent)
    }
}
