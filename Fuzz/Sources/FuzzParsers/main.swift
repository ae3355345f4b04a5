@_spi(Fuzzing) import Buffering
import Codecs
import Routing
import Spans
@_spi(Fuzzing) import Transport
#if canImport(Glibc)
import Glibc
#endif

/// Every parser the relay runs on untrusted bytes. Each must decode or throw a `DecodeError`;
/// none may trap, hang or grow without bound.
let parsers: [String: @Sendable ([UInt8]) -> Void] = [
    "zipkin-v2-json": { _ = try? ZipkinJSONV2.decode($0, metadata: BatchMetadata(format: .zipkinV2JSON)) },
    "zipkin-proto3": { _ = try? ZipkinProto3.decode($0, metadata: BatchMetadata(format: .zipkinV2Proto)) },
    "zipkin-v1-json": { _ = try? ZipkinJSONV1.decode($0, metadata: BatchMetadata(format: .zipkinV1JSON)) },
    "datadog-v03-json": { _ = try? DatadogV03.decodeJSON($0, metadata: BatchMetadata(format: .datadogV03JSON)) },
    "datadog-v04": { body in
        // Whatever decodes must also re-encode and decode again.
        guard let b = try? DatadogV04.decode(body, metadata: BatchMetadata(format: .datadogV04)) else { return }
        var out: [UInt8] = []
        DatadogV04.encode(b, into: &out)
        _ = try? DatadogV04.decode(out, metadata: BatchMetadata(format: .datadogV04))
    },
    "datadog-v05": { _ = try? DatadogV05.decode($0, metadata: BatchMetadata(format: .datadogV05)) },
    "datadog-v07": { _ = try? DatadogV07.decode($0, metadata: BatchMetadata(format: .datadogV07)) },
    // `X-Tracerelay-Tags` from an upstream relay: parsed, or nil; what parses must format back
    // to a header that parses to the same tags.
    "tracerelay-tags": { body in
        guard let tags = TracerelayTagsHeader.parse(String(decoding: body, as: UTF8.self)) else { return }
        let again = TracerelayTagsHeader.parse(TracerelayTagsHeader.format(tags))
        precondition(again == tags, "tags header does not round-trip")
    },
    // The config loader: YAML → RelayConfig → RoutingTable, or a ConfigError.
    "config": { body in
        guard let config = try? RelayConfig.parse(yaml: String(decoding: body, as: UTF8.self)) else { return }
        _ = try? RoutingTable(config)
    },
    "content-decoding": { body in
        for enc in ["gzip", "deflate", "zstd"] {
            _ = try? ContentDecoding.decode(body, contentEncoding: enc, limits: DecompressionLimits(maxBytes: 1 << 20, maxRatio: 100))
        }
    },
    // Engines (first input byte: how the rest is cut into reads, and options; see the entry
    // points' documentation). The HTTP/1 parsers must give the same result whole or split.
    "http1-request": { TransportFuzz.http1Request($0) },
    "http1-response": { TransportFuzz.http1Response($0) },
    "h2-server": { TransportFuzz.h2Server($0) },
    "h2-client": { TransportFuzz.h2Client($0) },
    // A spill segment file: scanned and read to records or a clean error.
    "spill-segment": { SpillFuzz.segment($0) },
]

nonisolated(unsafe) var selected: (@Sendable ([UInt8]) -> Void)?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selected?(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point as `<target>_main`: pick the parser named by
/// FUZZ_TARGET, then hand control to libFuzzer's driver.
@_cdecl("FuzzParsers_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let name = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? ""
    if name == "list" {
        print(parsers.keys.sorted().joined(separator: " "))
        return 0
    }
    if name == "make-corpus" { // FUZZ_TARGET=make-corpus FuzzParsers DIR (see Corpus.swift)
        guard argc > 1, let dir = argv?[1] else { return 2 }
        return makeCorpus(String(cString: dir))
    }
    guard let parser = parsers[name] else {
        let msg = "set FUZZ_TARGET to one of: \(parsers.keys.sorted().joined(separator: ", "))\n"
        _ = msg.withCString { write(2, $0, strlen($0)) }
        return 2
    }
    selected = parser
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
