import Testing
@testable import TLS

/// Certificates checked both ways: mTLS with the client's identity read out; unknown CAs,
/// expired certificates, missing client certificates and wrong host names refused with clear
/// errors on the refusing side and an alert on the other; `insecureSkipVerify` accepts.
@Suite struct TLSVerificationTests {
    @Test(arguments: ["whole", "byteByByte"])
    func mutualTLSExposesTheClientIdentity(delivery: String) throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(withCertificate: true), server: certs.server(clientCA: true, require: true),
                                  delivery: TLSEngineTests.delivery(delivery))
        pair.pump()
        let s = try #require(pair.serverHandshake, "\(pair.serverEvents)")
        #expect(s.peer == TLSPeerIdentity(uris: [TestCertificates.clientURI], dnsNames: ["collector.zone-eu-1.mesh"],
                                          commonName: "zone-eu-1 collector", verified: true))
        #expect(pair.clientHandshake?.peer?.dnsNames == ["localhost"])
        #expect(pair.clientError == nil && pair.serverError == nil)
    }

    @Test func optionalClientCertificateMayBeAbsent() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server(clientCA: true, require: false))
        pair.pump()
        #expect(pair.serverHandshake != nil && pair.serverHandshake?.peer == nil, "\(pair.serverEvents)")
    }

    @Test func clientRefusesAServerFromAnotherCA() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: .client(caFile: certs.otherCAFile), server: certs.server())
        pair.pump()
        let error = try #require(pair.clientError, "\(pair.clientEvents)")
        #expect(error.code == .peerCertificateRejected)
        #expect(error.message == "the server's certificate was not accepted: unable to get local issuer certificate")
        #expect(error.verifyResult == 20)
        #expect(pair.serverError?.code == .alertReceived)
        #expect(pair.serverError?.message.contains("unknown CA") == true, "\(String(describing: pair.serverError))")
    }

    @Test func clientUsesTheSystemRootsByDefault() throws {
        // Our test CA is not among the system's roots, so its server is refused.
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: .client(), server: certs.server())
        pair.pump()
        #expect(pair.clientError?.code == .peerCertificateRejected, "\(pair.clientEvents)")
    }

    @Test func serverRefusesAClientFromAnotherCA() throws {
        let certs = try TestCertificates.get()
        let client = TLSConfiguration.client(caFile: certs.caFile, certificateChain: certs.otherClientCert, privateKey: certs.otherClientKey)
        let pair = try EnginePair(client: client, server: certs.server(clientCA: true, require: true))
        pair.pump()
        let error = try #require(pair.serverError, "\(pair.serverEvents)")
        #expect(error.code == .peerCertificateRejected)
        #expect(error.message.hasPrefix("the client's certificate was not accepted: unable to"), "\(error.message)")
        // TLS 1.3: the client finished its side of the handshake, then reads the alert.
        #expect(pair.clientError?.code == .alertReceived, "\(pair.clientEvents)")
        #expect(pair.server.state == .failed(error))
    }

    @Test func expiredServerCertificateIsRefused() throws {
        let certs = try TestCertificates.get()
        let server = TLSConfiguration.server(certificateChain: certs.expiredServerCert, privateKey: certs.expiredServerKey)
        let pair = try EnginePair(client: certs.client(), server: server)
        pair.pump()
        let error = try #require(pair.clientError, "\(pair.clientEvents)")
        #expect(error.message == "the server's certificate was not accepted: certificate has expired")
        #expect(error.verifyResult == 10)
        #expect(pair.serverError?.message.contains("certificate expired") == true, "\(String(describing: pair.serverError))")
    }

    @Test func expiredClientCertificateIsRefused() throws {
        let certs = try TestCertificates.get()
        let client = TLSConfiguration.client(caFile: certs.caFile, certificateChain: certs.expiredClientCert, privateKey: certs.expiredClientKey)
        let pair = try EnginePair(client: client, server: certs.server(clientCA: true, require: true))
        pair.pump()
        #expect(pair.serverError?.message == "the client's certificate was not accepted: certificate has expired", "\(pair.serverEvents)")
        #expect(pair.serverHandshake == nil)
    }

    @Test func missingClientCertificateIsRefusedWhenRequired() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server(clientCA: true, require: true))
        pair.pump()
        let error = try #require(pair.serverError, "\(pair.serverEvents)")
        #expect(error.code == .peerCertificateMissing)
        #expect(error.message == "the client sent no certificate, and this server requires one (requireClientCertificate)")
        #expect(pair.clientError?.code == .alertReceived)
        #expect(pair.clientError?.message.contains("certificate required") == true, "\(String(describing: pair.clientError))")
    }

    @Test func hostNameMismatchIsRefused() throws {
        let certs = try TestCertificates.get()
        let pair = try EnginePair(client: certs.client(), server: certs.server(), serverName: "relay.example.com")
        pair.pump()
        let error = try #require(pair.clientError, "\(pair.clientEvents)")
        #expect(error.code == .peerCertificateRejected)
        #expect(error.message == "the server's certificate was not accepted: hostname mismatch (the certificate is not for relay.example.com)")
        #expect(error.verifyResult == 62)
        #expect(pair.serverHandshake?.serverName == nil) // refused before the server finished
    }

    @Test func ipAddressesAreCheckedAgainstIPSANsWithoutSNI() throws {
        let certs = try TestCertificates.get()
        let ok = try EnginePair(client: certs.client(), server: certs.server(), serverName: "127.0.0.1")
        ok.pump()
        #expect(ok.clientHandshake != nil, "\(ok.clientEvents)")
        #expect(ok.serverHandshake?.serverName == nil) // no SNI for IP literals
        let wrong = try EnginePair(client: certs.client(), server: certs.server(), serverName: "127.0.0.2")
        wrong.pump()
        #expect(wrong.clientError?.verifyResult == 64, "\(wrong.clientEvents)") // IP address mismatch
    }

    @Test func insecureSkipVerifyAcceptsAnyServerButSaysSo() throws {
        let certs = try TestCertificates.get()
        let server = TLSConfiguration.server(certificateChain: certs.otherServerCert, privateKey: certs.otherServerKey)
        let pair = try EnginePair(client: .client(insecureSkipVerify: true), server: server, serverName: nil)
        pair.pump()
        let c = try #require(pair.clientHandshake, "\(pair.clientEvents)")
        #expect(c.peer?.verified == false)
        #expect(c.peer?.dnsNames == ["localhost"])
    }
}
