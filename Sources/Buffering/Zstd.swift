private import CZstd

/// Errors from the zstd wrapper; `message` is zstd's own error name.
public struct ZstdError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { "zstd: \(message)" }
}

/// One reusable zstd compression context (owning; not thread-safe — keep one per queue/thread).
///
/// Reusing a context avoids re-allocating zstd's tables for every frame, which matters for
/// 1 MB frames at several hundred MB/s.
public final class ZstdCompressor {
    private let context: OpaquePointer
    public let level: Int32

    public init(level: Int32 = 1) {
        guard let ctx = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        context = ctx
        self.level = level
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 0)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Upper bound of the compressed size of `count` input bytes.
    public static func bound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Compresses `input` as one zstd frame into `output` (which must hold `bound(input.count)`),
    /// returning the number of bytes written.
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = ZSTD_compress2(context, output.baseAddress, output.count, input.baseAddress, input.count)
        if ZSTD_isError(n) != 0 { throw ZstdError(message: String(cString: ZSTD_getErrorName(n))) }
        return n
    }

    /// Convenience: compresses a byte array as one frame.
    public func compress(_ input: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.bound(input.count))
        let n = try input.withUnsafeBytes { i in try out.withUnsafeMutableBytes { o in try compress(i, into: o) } }
        out.removeSubrange(n...)
        return out
    }
}

/// One reusable zstd decompression context (owning; not thread-safe).
public final class ZstdDecompressor {
    private let context: OpaquePointer

    public init() {
        guard let ctx = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        context = ctx
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses one complete frame into exactly `output.count` bytes; throws when the frame is
    /// malformed or its content size differs from `output.count` (so a frame header that lies is caught).
    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        let n = ZSTD_decompressDCtx(context, output.baseAddress, output.count, input.baseAddress, input.count)
        if ZSTD_isError(n) != 0 { throw ZstdError(message: String(cString: ZSTD_getErrorName(n))) }
        if n != output.count { throw ZstdError(message: "decompressed \(n) bytes, expected \(output.count)") }
    }

    /// The content size a frame's header declares (what `ZSTD_compress2` always records), nil
    /// when the header does not say or is not a zstd frame header. Checked before allocating for
    /// a frame whose size comes from elsewhere (a spill frame header), so a lying header cannot
    /// make the reader allocate a gigabyte for a few bytes of input.
    public static func declaredContentSize(_ input: UnsafeRawBufferPointer) -> Int? {
        let n = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        // ZSTD_CONTENTSIZE_UNKNOWN and _ERROR are the two largest UInt64 values.
        guard n < UInt64.max - 1, n <= UInt64(Int.max) else { return nil }
        return Int(n)
    }

    /// Convenience: decompresses a frame whose decompressed size is known.
    public func decompress(_ input: [UInt8], size: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        try input.withUnsafeBytes { i in try out.withUnsafeMutableBytes { o in try decompress(i, into: o) } }
        return out
    }
}
