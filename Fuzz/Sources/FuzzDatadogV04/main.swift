import Codecs
import Spans

// SwiftPM links an executable's entry point as `<target>_main`; it hands control to libFuzzer's
// driver, which then calls `fuzz` below for every input.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzDatadogV04_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzz)
}

/// libFuzzer entry: Datadog v0.4 (and re-encoding what decoded) must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    if let b = try? DatadogV04.decode(body, metadata: BatchMetadata(format: .datadogV04)) { var out: [UInt8] = []; DatadogV04.encode(b, into: &out); _ = try? DatadogV04.decode(out, metadata: BatchMetadata(format: .datadogV04)) }
    return 0
}
