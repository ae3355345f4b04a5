import Synchronization
import TLS

/// The TLS side of a listener: the context new connections are accepted with. A reload
/// (`replace`) swaps it; connections accepted before keep the context they started with, so
/// nothing is dropped (docs/tls.md, "Reloading certificates").
public final class ListenerTLS: Sendable, Hashable {
    private let context: Mutex<TLSContext>

    public init(_ context: TLSContext) { self.context = Mutex(context) }

    /// Builds the context from the configuration's files.
    /// - Throws: `TLSError` naming the file that is missing or does not fit.
    public convenience init(_ configuration: TLSConfiguration) throws(TLSError) {
        self.init(try TLSContext(configuration))
    }

    /// The context the next accepted connection uses.
    public var current: TLSContext { context.withLock { $0 } }

    /// Uses `new` for connections accepted from now on.
    public func replace(_ new: TLSContext) { context.withLock { $0 = new } }

    public static func == (a: ListenerTLS, b: ListenerTLS) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}
