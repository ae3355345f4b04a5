import Codecs
import Spans

/// libFuzzer entry: Datadog v0.4 (and re-encoding what decoded) must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    if let b = try? DatadogV04.decode(body, metadata: BatchMetadata(format: .datadogV04)) { var out: [UInt8] = []; DatadogV04.encode(b, into: &out); _ = try? DatadogV04.decode(out, metadata: BatchMetadata(format: .datadogV04)) }
    return 0
}
