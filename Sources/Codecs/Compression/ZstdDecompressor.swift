import Synchronization
private import CZstd
import Spans
#if canImport(Glibc)
import Glibc
#endif

/// One zstd decompression context, freed in deinit. Contexts are large (~100 KiB plus window
/// buffers) and reusable, so decoders borrow them from a small shared pool.
final class ZstdDecompressor: @unchecked Sendable {
    private let dctx: OpaquePointer
    /// Largest window accepted (2^27 = 128 MiB, zstd's default limit); larger frames are refused
    /// before allocating.
    static let windowLogMax: Int32 = 27

    init() {
        dctx = ZSTD_createDCtx()!
        _ = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, Self.windowLogMax)
    }

    deinit { ZSTD_freeDCtx(dctx) }

    static let pool = ContextPool<ZstdDecompressor>(limit: 8) { ZstdDecompressor() }

    /// Decompresses every frame of `input` into `sink`, enforcing its cap as output is produced.
    func decompress(_ input: UnsafeRawBufferPointer, into sink: GrowingOutput) throws(DecodeError) {
        _ = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only)
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if size != tr_zstd_contentsize_unknown() && size != tr_zstd_contentsize_error() && size < UInt64(Int.max / 2) {
            sink.expect(Int(size))
        }
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while true {
            try sink.ensureSpace()
            let out = sink.freeSpace
            var outBuf = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
            let rc = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
            sink.produced += outBuf.pos
            let outFull = outBuf.pos == outBuf.size
            if ZSTD_isError(rc) != 0 {
                let code = ZSTD_getErrorCode(rc)
                if code == ZSTD_error_frameParameter_windowTooLarge {
                    throw DecodeError(.tooLarge, format: nil, offset: inBuf.pos,
                                      "zstd: frame window exceeds 2^\(Self.windowLogMax) bytes")
                }
                let name = String(cString: ZSTD_getErrorName(rc))
                throw DecodeError(.malformed, format: nil, offset: inBuf.pos, "zstd: invalid compressed data: \(name)")
            }
            try sink.check()
            if rc == 0 && inBuf.pos == inBuf.size { return }   // last frame complete
            if inBuf.pos == inBuf.size && !outFull && rc != 0 {
                throw DecodeError(.malformed, format: nil, offset: inBuf.pos, "zstd: compressed body is truncated")
            }
        }
    }
}

/// A small lock-protected stack of reusable C contexts. Taking from an empty pool creates one;
/// returning to a full pool frees it.
/// The contexts are `Sendable` because a taken context is used by one thread at a time.
final class ContextPool<T: AnyObject & Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    private let limit: Int
    private let make: @Sendable () -> T

    init(limit: Int, make: @escaping @Sendable () -> T) {
        self.limit = limit
        self.make = make
    }

    func take() -> T {
        items.withLock { $0.popLast() } ?? make()
    }

    func put(_ item: T) {
        items.withLock { if $0.count < limit { $0.append(item) } }
    }
}
