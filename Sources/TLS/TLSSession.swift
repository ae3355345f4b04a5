internal import COpenSSL

/// A resumable TLS session (an `SSL_SESSION *`, owned: one reference, released in `deinit`),
/// taken from a client engine after its handshake and handed to the next client engine for the
/// same server, which then skips the full handshake when the server agrees.
///
/// Keep sessions per server (host, port and client context): a session only resumes with the
/// server that issued it. With TLS 1.3 a server may send its tickets after the handshake; an
/// engine has them once it has read the first application data, so take the session at the
/// end of a connection rather than right after the handshake. A session whose connection
/// failed stops being resumable once that engine is freed (OpenSSL's rule; see `TLSEngine`).
public final class TLSSession: @unchecked Sendable {
    /// The `SSL_SESSION *`; OpenSSL reference-counts it under its own lock.
    let session: OpaquePointer

    /// Takes over one reference to `session`.
    init(owning session: OpaquePointer) { self.session = session }

    deinit { SSL_SESSION_free(session) }
}
