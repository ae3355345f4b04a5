import Codecs
import Spans

/// libFuzzer entry: Zipkin proto3 must either decode or throw a DecodeError; it must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? ZipkinProto3.decode(body, metadata: BatchMetadata(format: .zipkinV2Proto))
    return 0
}
