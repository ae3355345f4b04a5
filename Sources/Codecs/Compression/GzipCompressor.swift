private import CZlib

/// One reusable gzip (RFC 1952) deflate stream, for compressing outbound request bodies.
/// Owning and not thread-safe: keep one per serial queue. The `z_stream` lives at a fixed heap
/// address because zlib keeps a pointer back to it.
public final class GzipCompressor {
    private let stream: UnsafeMutablePointer<z_stream>
    public let level: Int32

    /// - Parameter level: zlib level 1 (fastest, the default) … 9.
    public init(level: Int32 = 1) {
        self.level = level
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits 15 + 16: a gzip wrapper instead of zlib's.
        let rc = tr_deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY)
        precondition(rc == Z_OK, "deflateInit2 failed (\(rc)): out of memory")
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Compresses `input` as one complete gzip member.
    public func compress(_ input: [UInt8]) -> [UInt8] {
        deflateReset(stream)
        var out = [UInt8](repeating: 0, count: Int(deflateBound(stream, uLong(input.count))) + 32)
        let written: Int = input.withUnsafeBytes { i in
            out.withUnsafeMutableBytes { o in
                stream.pointee.next_in = UnsafeMutablePointer(mutating: i.baseAddress?.assumingMemoryBound(to: Bytef.self))
                stream.pointee.avail_in = uInt(i.count)
                stream.pointee.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(o.count)
                let rc = deflate(stream, Z_FINISH)
                precondition(rc == Z_STREAM_END, "deflate with a deflateBound-sized buffer must finish (\(rc))")
                return o.count - Int(stream.pointee.avail_out)
            }
        }
        out.removeSubrange(written...)
        return out
    }
}
