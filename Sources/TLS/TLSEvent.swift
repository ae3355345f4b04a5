/// What happened while the engine read the peer's bytes.
public enum TLSEvent: Sendable, Equatable {
    /// The handshake finished: application data may flow (and queued writes were encrypted).
    case handshakeCompleted(TLSHandshake)
    /// The peer sent close_notify: it will send nothing more. Answer with `close()` when done.
    case closeNotifyReceived
    /// The connection failed and is unusable. Send what `drainCiphertext` still holds (often
    /// an alert telling the peer why), then close the socket.
    case failed(TLSError)
}

/// The outcome of a completed handshake.
public struct TLSHandshake: Sendable, Equatable {
    /// The negotiated application protocol (`h2`, `http/1.1`), or nil when none was agreed:
    /// then HTTP/1.1 is the convention.
    public var alpn: String?
    /// `TLSv1.3` or `TLSv1.2`.
    public var protocolVersion: String
    /// The cipher suite's OpenSSL name, e.g. `TLS_AES_256_GCM_SHA384`.
    public var cipherSuite: String
    /// The session was resumed (no full handshake).
    public var resumed: Bool
    /// The SNI host name: the one a client sent (server side), or the one we sent (client side).
    public var serverName: String?
    /// The peer's certificate identity; nil when it sent none (a client without certificate).
    public var peer: TLSPeerIdentity?
}
