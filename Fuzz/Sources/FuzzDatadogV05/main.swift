import Codecs
import Spans

/// libFuzzer entry: Datadog v0.5 must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? DatadogV05.decode(body, metadata: BatchMetadata(format: .datadogV05))
    return 0
}
