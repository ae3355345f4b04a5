import Spans

/// Why a payload could not be decoded: which format, where (byte offset into the decoded
/// body, when known) and what was expected. Ingest turns it into a 400 with this message.
public struct DecodeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The bytes are not valid for the format (syntax, types, truncation).
        case malformed
        /// Valid syntax, but a value breaks the format's rules (e.g. an all-zero trace id).
        case invalidValue = "invalid_value"
        /// The decompressed body would exceed the size or ratio cap.
        case tooLarge = "too_large"
        /// A content or transfer encoding we do not handle.
        case unsupported
    }

    public var code: Code
    public var format: SpanFormat?
    /// Offset into the (decompressed) body where the problem was found.
    public var offset: Int?
    public var message: String

    public init(_ code: Code = .malformed, format: SpanFormat?, offset: Int?, _ message: String) {
        self.code = code
        self.format = format
        self.offset = offset
        self.message = message
    }

    public var description: String {
        var s = ""
        if let format { s += "\(format.rawValue): " }
        s += message
        if let offset { s += " (at byte \(offset))" }
        return s
    }
}
