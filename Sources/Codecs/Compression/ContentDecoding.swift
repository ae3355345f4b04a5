import Basics
import Spans

/// Caps on what a compressed body may expand to. Both are enforced *while* decompressing,
/// so a compression bomb stops with `.tooLarge` after at most `maxBytes` of output, never OOM.
public struct DecompressionLimits: Sendable, Hashable {
    /// Largest decompressed body accepted. Default 100 MiB.
    public var maxBytes: Int
    /// Largest accepted ratio of decompressed to compressed size. Default 200 (span JSON and
    /// msgpack compress 5–20× in practice; bombs compress ~1000×).
    public var maxRatio: Int
    /// Outputs up to this size are accepted whatever the ratio, because tiny bodies of
    /// repetitive spans legitimately compress far beyond `maxRatio`. Default 1 MiB.
    public var ratioFloorBytes: Int

    public init(maxBytes: Int = 100 << 20, maxRatio: Int = 200, ratioFloorBytes: Int = 1 << 20) {
        self.maxBytes = maxBytes
        self.maxRatio = maxRatio
        self.ratioFloorBytes = ratioFloorBytes
    }

    /// The output cap for a compressed input of `n` bytes.
    public func cap(forCompressed n: Int) -> Int {
        let (byRatio, overflow) = n.multipliedReportingOverflow(by: max(1, maxRatio))
        let ratioCap = overflow ? Int.max : byRatio
        return min(maxBytes, max(ratioCap, min(ratioFloorBytes, maxBytes)))
    }
}

/// Undoes HTTP `Content-Encoding`.
///
/// Supported: `gzip` / `x-gzip` (several concatenated members allowed), `deflate` (zlib-wrapped
/// as RFC 9110 says, falling back to raw deflate, which some clients send), `zstd` (several
/// frames allowed), and `identity` / none (the body is returned as is, without a copy).
/// A list such as `gzip, zstd` means zstd was applied last, so it is undone first: encodings are
/// undone in reverse order, at most 3 layers, all sharing one set of caps measured against the
/// body as received. Anything else is `.unsupported` (the caller answers 415).
public enum ContentDecoding {
    /// Sees the final decompressed output while it is produced: called with everything produced
    /// so far each time it grew. Throwing stops decompression there (the ingest stage counts
    /// spans this way, so a bomb of tiny spans stops at the span cap instead of being inflated whole).
    public typealias Inspector = (UnsafeRawBufferPointer) throws(DecodeError) -> Void

    /// - Parameter inspect: called with the decompressed prefix each time it grew (not for an
    ///   identity body: the caller has it whole already).
    public static func decode(_ body: [UInt8], contentEncoding: String?,
                              limits: DecompressionLimits = .init(), inspect: Inspector? = nil) throws(DecodeError) -> [UInt8] {
        guard let contentEncoding else { return body }
        var layers: [Encoding] = []
        for part in contentEncoding.split(separator: ",") {
            let name = part.trimmingOWS().lowercased()
            switch name {
            case "", "identity": continue
            case "gzip", "x-gzip": layers.append(.gzip)
            case "deflate": layers.append(.deflate)
            case "zstd": layers.append(.zstd)
            default:
                throw DecodeError(.unsupported, format: nil, offset: nil,
                                  "unsupported Content-Encoding \"\(name)\" (supported: gzip, x-gzip, deflate, zstd, identity)")
            }
        }
        if layers.isEmpty { return body }
        guard layers.count <= 3 else {
            throw DecodeError(.unsupported, format: nil, offset: nil, "Content-Encoding with \(layers.count) layers; at most 3 are undone")
        }
        let cap = limits.cap(forCompressed: body.count)
        var current = body
        for (i, layer) in layers.reversed().enumerated() {
            current = try decode(current, layer, cap: cap, limits: limits, wireSize: body.count,
                                 inspect: i == layers.count - 1 ? inspect : nil)
        }
        return current
    }

    /// Whether `contentEncoding` names anything but `identity` (an unknown coding counts: decoding it fails).
    public static func isEncoded(_ contentEncoding: String?) -> Bool {
        guard let contentEncoding else { return false }
        for part in contentEncoding.split(separator: ",") {
            let name = part.trimmingOWS()
            if !name.isEmpty && name.lowercased() != "identity" { return true }
        }
        return false
    }

    enum Encoding { case gzip, deflate, zstd }

    static func decode(_ input: [UInt8], _ e: Encoding, cap: Int, limits: DecompressionLimits, wireSize: Int,
                       inspect: Inspector? = nil) throws(DecodeError) -> [UInt8] {
        if input.isEmpty { return [] }
        let result: Result<[UInt8], DecodeError> = input.withUnsafeBytes { raw in
            Result { () throws(DecodeError) -> [UInt8] in
                let sink = GrowingOutput(cap: cap, limits: limits, wireSize: wireSize, inputCount: raw.count)
                sink.inspect = inspect
                switch e {
                case .gzip:
                    let z = try ZlibInflater(windowBits: 15 + 16)
                    try z.inflate(raw, into: sink, multiMember: true, name: "gzip")
                case .deflate:
                    if ZlibInflater.looksLikeZlibHeader(raw) {
                        do throws(DecodeError) {
                            let z = try ZlibInflater(windowBits: 15)
                            try z.inflate(raw, into: sink, multiMember: false, name: "deflate")
                        } catch where error.code == .malformed && sink.produced == 0 {
                            // A raw stream can start with bytes that pass the zlib header check.
                            sink.reset()
                            let z = try ZlibInflater(windowBits: -15)
                            try z.inflate(raw, into: sink, multiMember: false, name: "deflate (raw)")
                        }
                    } else {
                        let z = try ZlibInflater(windowBits: -15)
                        try z.inflate(raw, into: sink, multiMember: false, name: "deflate (raw)")
                    }
                case .zstd:
                    let z = ZstdDecompressor.pool.take()
                    defer { ZstdDecompressor.pool.put(z) }
                    try z.decompress(raw, into: sink)
                }
                try sink.check()  // the inspector sees every byte, also when a codec ends without a final check
                return sink.finish()
            }
        }
        return try result.get()
    }
}

/// An output buffer that grows by doubling up to `cap + 1` bytes; producing more than `cap`
/// bytes is the bomb signal. Uninitialized heap memory (realloc), so growth costs no zero-fill;
/// `finish` copies the produced bytes into an array once. Freed in deinit, also on errors.
final class GrowingOutput {
    private(set) var base: UnsafeMutableRawPointer? = nil
    private(set) var capacity = 0
    var produced = 0
    let cap: Int
    let limits: DecompressionLimits
    let wireSize: Int
    let initial: Int
    /// Sees the produced prefix at every `check()` that follows growth.
    var inspect: ContentDecoding.Inspector?
    private var inspected = 0

    init(cap: Int, limits: DecompressionLimits, wireSize: Int, inputCount: Int) {
        self.cap = cap
        self.limits = limits
        self.wireSize = wireSize
        self.initial = max(1, min(cap + 1, max(inputCount &* 4, 16 << 10)))
    }

    deinit { Glibc.free(base) }

    func reset() { produced = 0; inspected = 0 }

    /// Free space after the produced bytes.
    var freeSpace: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base! + produced, count: capacity - produced)
    }

    /// Makes sure at least one free byte exists, growing the buffer; throws when full at the cap.
    func ensureSpace() throws(DecodeError) {
        if produced < capacity { return }
        if capacity > cap { throw tooLarge() }
        grow(to: capacity == 0 ? initial : min(capacity * 2, cap + 1))
    }

    private func grow(to n: Int) {
        guard let p = realloc(base, n) else { fatalError("out of memory growing a \(n)-byte decompression buffer") }
        base = p
        capacity = n
    }

    /// Pre-sizes the buffer when the format announces its output size.
    func expect(_ n: Int) {
        if capacity == 0, n > 0 { grow(to: min(cap + 1, n + 1)) }
    }

    func check() throws(DecodeError) {
        if produced > cap { throw tooLarge() }
        if let inspect, produced > inspected, let base {
            inspected = produced
            try inspect(UnsafeRawBufferPointer(start: base, count: produced))
        }
    }

    func tooLarge() -> DecodeError {
        DecodeError(.tooLarge, format: nil, offset: nil,
                    "decompressed body exceeds \(cap) bytes (limits: \(limits.maxBytes) bytes, \(limits.maxRatio)× the \(wireSize)-byte body)")
    }

    func finish() -> [UInt8] {
        let n = produced
        guard n > 0, let base else { return [] }
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            buf.baseAddress!.initialize(from: base.assumingMemoryBound(to: UInt8.self), count: n)
            count = n
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

