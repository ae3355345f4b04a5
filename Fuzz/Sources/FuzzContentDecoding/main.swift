import Codecs
import Spans

// SwiftPM links an executable's entry point as `<target>_main`; it hands control to libFuzzer's
// driver, which then calls `fuzz` below for every input.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzContentDecoding_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzz)
}

/// libFuzzer entry: content decoding (gzip, deflate, zstd with small caps) must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    for enc in ["gzip", "deflate", "zstd"] { _ = try? ContentDecoding.decode(body, contentEncoding: enc, limits: DecompressionLimits(maxBytes: 1 << 20, maxRatio: 100)) }
    return 0
}
