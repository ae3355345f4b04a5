private import CZlib
import Spans

/// One zlib inflate stream (gzip, zlib or raw deflate by `windowBits`), freed in deinit.
/// The `z_stream` lives at a fixed heap address because zlib keeps a pointer back to it.
final class ZlibInflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private let windowBits: Int32

    init(windowBits: Int32) throws(DecodeError) {
        self.windowBits = windowBits
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let rc = tr_inflateInit2(stream, windowBits)
        if rc != Z_OK {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw DecodeError(.malformed, format: nil, offset: nil, "zlib inflateInit2 failed (\(rc))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// RFC 1950 header check: CM = 8, CINFO ≤ 7, and the 16-bit header is a multiple of 31.
    static func looksLikeZlibHeader(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 2 else { return false }
        let cmf = b[0], flg = b[1]
        return cmf & 0x0f == 8 && cmf >> 4 <= 7 && (UInt16(cmf) << 8 | UInt16(flg)) % 31 == 0
    }

    /// Inflates all of `input` into `sink`, enforcing its cap as output is produced.
    func inflate(_ input: UnsafeRawBufferPointer, into sink: GrowingOutput, multiMember: Bool, name: String) throws(DecodeError) {
        guard input.count < Int(UInt32.max) else {
            throw DecodeError(.tooLarge, format: nil, offset: nil, "\(name) body of \(input.count) bytes is too large")
        }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        while true {
            try sink.ensureSpace()
            let out = sink.freeSpace
            stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(out.count)
            let rc = CZlib.inflate(stream, Z_NO_FLUSH)
            sink.produced += out.count - Int(stream.pointee.avail_out)
            stream.pointee.next_out = nil
            try sink.check()
            let consumed = input.count - Int(stream.pointee.avail_in)
            switch rc {
            case Z_STREAM_END:
                if stream.pointee.avail_in == 0 { return }
                if multiMember {
                    // Another gzip member follows (`cat a.gz b.gz`); gzip(1) accepts this.
                    inflateReset(stream)
                    continue
                }
                throw DecodeError(.malformed, format: nil, offset: consumed,
                                  "\(name): \(stream.pointee.avail_in) bytes after the end of the compressed stream")
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // No progress possible: either the output is full (grow and retry) or input ran out.
                if sink.produced == sink.capacity { continue }
                throw DecodeError(.malformed, format: nil, offset: consumed, "\(name): compressed body is truncated")
            default:
                let msg = stream.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw DecodeError(.malformed, format: nil, offset: consumed, "\(name): invalid compressed data: \(msg)")
            }
        }
    }
}
