#if canImport(Glibc)
import Glibc
#endif
internal import COpenSSL

/// An OpenSSL `SSL_CTX` built from a `TLSConfiguration`: certificates and keys loaded, trust
/// set up, ALPN and session resumption configured. Engines are made from it, one per connection.
///
/// Immutable once built, and safe to share between threads and event loops (OpenSSL locks
/// the few things a context changes while in use: its session cache and reference count).
/// Reloading certificates means building a new context: connections made afterwards use the
/// new one, connections already open keep the one they were made with (each engine holds its
/// context), so a reload drops no connection.
///
/// Ownership: `ctx` is owned here and freed in `deinit`; the server ALPN list the selection
/// callback reads (`alpnList`) lives exactly as long, and engines keep the context alive.
public final class TLSContext: @unchecked Sendable {
    public let configuration: TLSConfiguration
    /// The `SSL_CTX *`.
    let ctx: OpaquePointer
    /// Server ALPN list for `tr_alpn_select`: 2-byte big-endian length, then the wire format.
    private let alpnList: UnsafeMutableBufferPointer<UInt8>?

    /// Session id context: a server that verifies client certificates refuses to resume
    /// sessions unless one is set.
    private static let sessionIDContext: [UInt8] = Array("tracerelay".utf8)

    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        try configuration.validate()
        self.configuration = configuration
        OpenSSLErrors.clear()
        let method = configuration.role == .server ? TLS_server_method() : TLS_client_method()
        guard let ctx = SSL_CTX_new(method) else {
            throw TLSError(.configuration, "cannot create an OpenSSL context: \(OpenSSLErrors.takeMessage(or: "unknown error"))")
        }
        self.ctx = ctx
        let wire = configuration.alpnWireFormat
        if configuration.role == .server && !wire.isEmpty {
            let list = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: wire.count + 2)
            list[0] = UInt8(wire.count >> 8)
            list[1] = UInt8(wire.count & 0xFF)
            _ = UnsafeMutableBufferPointer(rebasing: list[2...]).initialize(from: wire)
            alpnList = list
        } else {
            alpnList = nil
        }
        try configure(wire: wire) // on failure deinit frees what was made
    }

    deinit {
        SSL_CTX_free(ctx)
        alpnList?.deallocate()
    }

    private func configure(wire: [UInt8]) throws(TLSError) {
        let c = configuration
        let minimum = c.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard tr_ssl_ctx_configure(ctx, Int32(minimum)) == 1 else {
            throw TLSError(.configuration, "cannot set the TLS protocol versions: \(OpenSSLErrors.takeMessage(or: "unknown error"))")
        }
        if let chain = c.certificateChain, let key = c.privateKey {
            try Self.checkReadable(chain, what: "certificate chain")
            try Self.checkReadable(key, what: "private key")
            guard SSL_CTX_use_certificate_chain_file(ctx, chain) == 1 else {
                throw TLSError(.configuration, "cannot load the certificate chain \(chain): \(OpenSSLErrors.takeMessage(or: "not a PEM certificate"))")
            }
            let keyLoaded = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1
            let errors = OpenSSLErrors.take()
            let mismatch = errors.contains { $0.library == ERR_LIB_X509 && $0.reason == X509_R_KEY_VALUES_MISMATCH }
            guard keyLoaded || mismatch else {
                let why = errors.isEmpty ? "not a PEM private key" : errors.map(\.text).joined(separator: "; ")
                throw TLSError(.configuration, "cannot load the private key \(key): \(why)")
            }
            guard !mismatch, SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError(.configuration, "the private key \(key) does not belong to the certificate in \(chain)")
            }
        }
        switch c.role {
        case .server: try configureServer(wire: wire)
        case .client: try configureClient(wire: wire)
        }
    }

    private func configureServer(wire: [UInt8]) throws(TLSError) {
        let c = configuration
        if let ca = c.caFile {
            try loadTrust(ca)
            // Tell clients which CAs we accept, so one with several certificates picks right.
            if let names = SSL_load_client_CA_file(ca) { SSL_CTX_set_client_CA_list(ctx, names) }
            let mode = SSL_VERIFY_PEER | (c.requireClientCertificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0)
            SSL_CTX_set_verify(ctx, mode, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        // Resumption: the server-side session cache is on by default, and so are tickets.
        _ = Self.sessionIDContext.withUnsafeBufferPointer {
            SSL_CTX_set_session_id_context(ctx, $0.baseAddress, UInt32($0.count))
        }
        if let alpnList { tr_ssl_ctx_set_alpn_select(ctx, alpnList.baseAddress) }
    }

    private func configureClient(wire: [UInt8]) throws(TLSError) {
        let c = configuration
        if let ca = c.caFile {
            try loadTrust(ca)
        } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
            throw TLSError(.configuration, "cannot load the system CA roots: \(OpenSSLErrors.takeMessage(or: "unknown error"))")
        }
        SSL_CTX_set_verify(ctx, c.insecureSkipVerify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nil)
        if !wire.isEmpty {
            // Returns 0 on success (unlike most of OpenSSL).
            let r = wire.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(ctx, $0.baseAddress, UInt32($0.count)) }
            guard r == 0 else { throw TLSError(.configuration, "cannot set the ALPN list \(c.alpn)") }
        }
    }

    private func loadTrust(_ ca: String) throws(TLSError) {
        try Self.checkReadable(ca, what: "CA file")
        guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
            throw TLSError(.configuration, "cannot load the CA certificates in \(ca): \(OpenSSLErrors.takeMessage(or: "no PEM certificate found"))")
        }
    }

    /// A clearer message than OpenSSL's "system library" error for the common case.
    private static func checkReadable(_ path: String, what: String) throws(TLSError) {
        if access(path, R_OK) != 0 {
            let reason = String(cString: strerror(errno))
            throw TLSError(.configuration, "cannot read the \(what) \(path): \(reason)")
        }
    }
}
