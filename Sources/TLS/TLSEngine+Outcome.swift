internal import COpenSSL

/// What the engine reports about a handshake: its outcome when it succeeded, and a clear
/// error when it (or the connection after it) failed.
extension TLSEngine {
    /// Client: the session to resume on the next connection to the same server, if the
    /// server offered one (see `TLSSession` for when TLS 1.3 tickets arrive).
    public func resumableSession() -> TLSSession? {
        guard role == .client, let s = SSL_get1_session(ssl) else { return nil }
        guard SSL_SESSION_is_resumable(s) == 1 else {
            SSL_SESSION_free(s)
            return nil
        }
        return TLSSession(owning: s)
    }

    func describeHandshake() -> TLSHandshake {
        var alpnBytes: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnBytes, &alpnLength)
        let alpn = alpnBytes.flatMap { bytes in
            alpnLength == 0 ? nil : String(decoding: UnsafeBufferPointer(start: bytes, count: Int(alpnLength)), as: UTF8.self)
        }
        let sni = role == .server
            ? SSL_get_servername(ssl, Int32(TLSEXT_NAMETYPE_host_name)).map { String(cString: $0) }
            : serverName
        var peer: TLSPeerIdentity?
        if let cert = SSL_get1_peer_certificate(ssl) {
            defer { X509_free(cert) }
            let verified = SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER != 0
                && SSL_get_verify_result(ssl) == X509_V_OK
            peer = TLSPeerIdentity(certificate: cert, verified: verified)
        }
        return TLSHandshake(
            alpn: alpn,
            protocolVersion: String(cString: SSL_get_version(ssl)),
            cipherSuite: SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "",
            resumed: SSL_session_reused(ssl) == 1,
            serverName: sni,
            peer: peer)
    }

    /// Turns a failed OpenSSL call (`SSL_get_error` result `err`, and the error queue) into an
    /// error that says who refused what.
    func failure(_ err: Int32, handshaking: Bool) -> TLSError {
        let entries = OpenSSLErrors.take()
        let reasons = Set(entries.map(\.reason))
        let verify = SSL_get_verify_result(ssl)
        if reasons.contains(SSL_R_CERTIFICATE_VERIFY_FAILED) && verify != X509_V_OK {
            var why = String(cString: X509_verify_cert_error_string(verify))
            if let serverName, verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH {
                why += " (the certificate is not for \(serverName))"
            }
            let whose = role == .client ? "server" : "client"
            return TLSError(.peerCertificateRejected, "the \(whose)'s certificate was not accepted: \(why)",
                            verifyResult: Int(verify))
        }
        if reasons.contains(SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
            return TLSError(.peerCertificateMissing,
                            "the client sent no certificate, and this server requires one (requireClientCertificate)")
        }
        if let alert = entries.first(where: { $0.reason > SSL_AD_REASON_OFFSET }) {
            let long = String(cString: SSL_alert_desc_string_long(alert.reason - SSL_AD_REASON_OFFSET))
            let what = long == "unknown" ? alert.text : long
            return TLSError(.alertReceived, "the peer ended the TLS connection with the alert \"\(what)\"")
        }
        if reasons.contains(SSL_R_HTTP_REQUEST) || reasons.contains(SSL_R_HTTPS_PROXY_REQUEST) {
            return TLSError(.handshakeFailed, "the peer sent plain HTTP to a TLS port")
        }
        var detail = entries.isEmpty ? "OpenSSL reported error \(err) without details" : entries.map(\.text).joined(separator: "; ")
        if reasons.contains(SSL_R_WRONG_VERSION_NUMBER) { detail += " (is the peer speaking TLS?)" }
        return handshaking
            ? TLSError(.handshakeFailed, "the TLS handshake failed: \(detail)")
            : TLSError(.protocolError, "the TLS connection failed: \(detail)")
    }
}
