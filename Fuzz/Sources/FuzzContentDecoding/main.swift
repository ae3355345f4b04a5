import Codecs
import Spans

/// libFuzzer entry: content decoding (gzip, deflate, zstd with small caps) must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    for enc in ["gzip", "deflate", "zstd"] { _ = try? ContentDecoding.decode(body, contentEncoding: enc, limits: DecompressionLimits(maxBytes: 1 << 20, maxRatio: 100)) }
    return 0
}
