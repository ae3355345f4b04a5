// TEMPORARY placeholder until branch transport-h2 (Sources/Transport/HTTP2/) is merged:
// delete this whole file then. It only lets the HTTP/1.1 server compile and refuse h2c.

/// HTTP/2 settings (placeholder).
public struct HTTP2Configuration: Sendable {
    public init() {}
}

/// Placeholder HTTP/2 engine: closes the connection.
package final class HTTP2ServerEngine: ProtocolEngine {
    package init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTP2Configuration) {}
    package init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTP2Configuration,
                 upgrade: H2CUpgrade) throws {
        throw HTTP2Unavailable()
    }
    struct HTTP2Unavailable: Error {}
    package func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition { .closeNow }
    package func drainOutput(into out: inout [UInt8], limit: Int) {}
    package var hasPendingOutput: Bool { false }
    package var disposition: EngineDisposition { .closeNow }
    package var inFlightRequests: Int { 0 }
    package func peerClosed() -> EngineDisposition { .closeNow }
    package func beginShutdown() -> EngineDisposition { .closeNow }
    package func timeout(_ kind: TimeoutKind) -> EngineDisposition { .closeNow }
}
