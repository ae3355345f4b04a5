internal import COpenSSL

/// Why a TLS context could not be built or a TLS connection failed, with a message a person
/// can act on ("the peer's certificate was not accepted: certificate has expired").
public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The configuration or its files are unusable (missing PEM file, key not matching the
        /// certificate, a client engine without a server name to verify …).
        case configuration
        /// We did not accept the peer's certificate (unknown CA, expired, wrong host name).
        case peerCertificateRejected
        /// The peer sent no certificate although one is required.
        case peerCertificateMissing
        /// The peer ended the connection with a fatal alert (it refused our certificate, our
        /// protocol versions, …); the alert's description is in the message.
        case alertReceived
        /// The connection closed before the handshake finished.
        case unexpectedEOF
        /// Any other handshake failure (no common protocol version or cipher, plain HTTP sent to
        /// a TLS port, malformed records).
        case handshakeFailed
        /// A failure after the handshake (a corrupt record, a renegotiation attempt).
        case protocolError
        /// Data written after `close()`.
        case closed
    }

    public let code: Code
    public let message: String
    /// The X.509 verification result (`X509_V_ERR_*`) when a certificate was refused.
    public let verifyResult: Int?

    public init(_ code: Code, _ message: String, verifyResult: Int? = nil) {
        self.code = code
        self.message = message
        self.verifyResult = verifyResult
    }

    public var description: String { "TLS: \(message)" }
}

/// OpenSSL's thread-local error queue, read into our errors. Every engine clears it before an
/// OpenSSL call (`clear()`), so an error left by another connection on the same thread is
/// never reported as ours.
enum OpenSSLErrors {
    struct Entry {
        let code: UInt
        /// `ERR_LIB_*`: reason codes are only unique within their library.
        let library: Int32
        let reason: Int32
        let text: String
    }

    static func clear() { ERR_clear_error() }

    /// Takes every queued error, oldest first.
    static func take() -> [Entry] {
        var entries: [Entry] = []
        while true {
            var data: UnsafePointer<CChar>?
            var flags: Int32 = 0
            let e = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if e == 0 { break }
            var text = ERR_reason_error_string(e).map { String(cString: $0) } ?? "OpenSSL error \(e)"
            if flags & ERR_TXT_STRING != 0, let data, data.pointee != 0 {
                text += " (\(String(cString: data)))"
            }
            entries.append(Entry(code: e, library: tr_err_lib(e), reason: tr_err_reason(e), text: text))
        }
        return entries
    }

    /// The queued errors as one line ("what" when the queue is empty).
    static func takeMessage(or what: String) -> String {
        let texts = take().map(\.text)
        return texts.isEmpty ? what : texts.joined(separator: "; ")
    }
}
