import Codecs
import Spans

/// libFuzzer entry: Datadog v0.3 JSON must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? DatadogV03.decodeJSON(body, metadata: BatchMetadata(format: .datadogV03JSON))
    return 0
}
