import Codecs
private import CZstd

/// `loadtest send --compress`: the request body's Content-Encoding. The relay decodes gzip,
/// deflate and zstd (`Sources/Codecs/Compression/ContentDecoding.swift`); the generator sends
/// gzip or zstd. Every request is compressed after its ids are patched (a template cannot be
/// compressed once: the patched bytes change the compressed stream), so this costs generator
/// CPU per request — the README notes how much.
public enum BodyCompression: String, Sendable, CaseIterable {
    case none, gzip, zstd

    /// The Content-Encoding header value (nil: none).
    public var contentEncoding: String? { self == .none ? nil : rawValue }
}

/// One compressor per sending thread (zlib's and zstd's contexts are reused across requests).
final class BodyCompressor {
    let kind: BodyCompression
    private let gzip: GzipCompressor?
    private let zstd: OpaquePointer?

    init(_ kind: BodyCompression) {
        self.kind = kind
        gzip = kind == .gzip ? GzipCompressor(level: 1) : nil
        if kind == .zstd {
            guard let ctx = ZSTD_createCCtx() else { fatalError("loadtest: ZSTD_createCCtx failed (out of memory)") }
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, 1)
            zstd = ctx
        } else {
            zstd = nil
        }
    }

    deinit { if let zstd { ZSTD_freeCCtx(zstd) } }

    /// The body as sent: unchanged for `.none`, else one gzip member or one zstd frame (level 1).
    func compress(_ body: [UInt8]) -> [UInt8] {
        switch kind {
        case .none: return body
        case .gzip: return gzip!.compress(body)
        case .zstd:
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(body.count))
            let n = body.withUnsafeBytes { i in
                out.withUnsafeMutableBytes { o in ZSTD_compress2(zstd, o.baseAddress, o.count, i.baseAddress, i.count) }
            }
            precondition(ZSTD_isError(n) == 0, "zstd with a ZSTD_compressBound-sized buffer cannot fail: \(String(cString: ZSTD_getErrorName(n)))")
            out.removeSubrange(n...)
            return out
        }
    }
}
