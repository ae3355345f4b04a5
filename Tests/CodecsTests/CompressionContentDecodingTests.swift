import TestSupport
import Foundation
import Testing
@testable import Codecs
import Spans

@Suite struct CompressionContentDecodingTests {
    /// Runs a real command-line compressor (gzip, zstd) over `input`.
    static func cli(_ tool: String, _ args: [String], _ input: [UInt8]) throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/\(tool)")
        p.arguments = args
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        try p.run()
        let writer = Thread { inPipe.fileHandleForWriting.write(Data(input)); try? inPipe.fileHandleForWriting.close() }
        writer.start()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        return Array(out)
    }

    static var haveCLIs: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/gzip") && FileManager.default.isExecutableFile(atPath: "/usr/bin/zstd")
    }

    @Test(arguments: [("gzip", "ddtrace_v04.msgpack.gz"), ("x-gzip", "ddtrace_v04.msgpack.gz"),
                      ("deflate", "ddtrace_v04.msgpack.zlib"), ("deflate", "ddtrace_v04.msgpack.rawdeflate"),
                      ("zstd", "ddtrace_v04.msgpack.zst"), ("ZSTD ", "ddtrace_v04.msgpack.zst")])
    func decodesCommittedCLIOutputs(encoding: String, file: String) throws {
        let plain = try DD.fixture("ddtrace_v04.msgpack")
        let out = try ContentDecoding.decode(try DD.fixture(file), contentEncoding: encoding)
        #expect(out == plain)
        #expect(try DatadogV04.decode(out, metadata: .init(format: .datadogV04)).count == 4)
    }

    @Test func identityAndNilReturnTheBodyUnchanged() throws {
        let body: [UInt8] = [1, 2, 3]
        #expect(try ContentDecoding.decode(body, contentEncoding: nil) == body)
        #expect(try ContentDecoding.decode(body, contentEncoding: "identity") == body)
        #expect(try ContentDecoding.decode(body, contentEncoding: "") == body)
        // No copy: the returned array shares the buffer.
        let out = try ContentDecoding.decode(body, contentEncoding: nil)
        body.withUnsafeBufferPointer { a in out.withUnsafeBufferPointer { b in #expect(a.baseAddress == b.baseAddress) } }
    }

    @Test func unknownEncodingsAreUnsupported() {
        let e = #expect(throws: DecodeError.self) { try ContentDecoding.decode([1], contentEncoding: "br") }
        #expect(e?.code == .unsupported)
        #expect(e?.message.contains("br") == true)
        let e2 = #expect(throws: DecodeError.self) { try ContentDecoding.decode([1], contentEncoding: "gzip, gzip, gzip, gzip") }
        #expect(e2?.code == .unsupported)
    }

    @Test func randomPayloadsRoundTripThroughRealCLIs() throws {
        try #require(Self.haveCLIs)
        var rng = SplitMix64(seed: 77)
        for size in [0, 1, 1000, 300_000] {
            // Semi-compressible: repeated words with random noise, like span text.
            let words = ["trace", "span", "http.method", "GET", "/api/v1", "service", "\u{0}"]
            var plain: [UInt8] = []
            while plain.count < size {
                if rng.next() % 4 == 0 { plain.append(UInt8(truncatingIfNeeded: rng.next())) }
                else { plain += Array(words[Int(rng.next() % UInt64(words.count))].utf8) }
            }
            plain = Array(plain.prefix(size))
            let gz = try Self.cli("gzip", ["-c", "-6"], plain)
            let zst = try Self.cli("zstd", ["-q", "-c", "-3"], plain)
            #expect(try ContentDecoding.decode(gz, contentEncoding: "gzip") == plain)
            #expect(try ContentDecoding.decode(zst, contentEncoding: "zstd") == plain)
            // Concatenated gzip members and zstd frames are one body each.
            #expect(try ContentDecoding.decode(gz + gz, contentEncoding: "gzip") == plain + plain)
            #expect(try ContentDecoding.decode(zst + zst, contentEncoding: "zstd") == plain + plain)
            // Layered: zstd applied last is undone first.
            let layered = try Self.cli("zstd", ["-q", "-c"], gz)
            #expect(try ContentDecoding.decode(layered, contentEncoding: "gzip, zstd") == plain)
        }
    }

    @Test func bombsStopAtTheCap() throws {
        let gz = try DD.fixture("bomb_200MiB_zeros.gz")
        let e1 = #expect(throws: DecodeError.self) { try ContentDecoding.decode(gz, contentEncoding: "gzip") }
        #expect(e1?.code == .tooLarge)
        let zst = try DD.fixture("bomb_1GiB_zeros.zst")
        let e2 = #expect(throws: DecodeError.self) { try ContentDecoding.decode(zst, contentEncoding: "zstd") }
        #expect(e2?.code == .tooLarge)
        // maxBytes alone (ratio allowed): stops at 8 MiB.
        let limits = DecompressionLimits(maxBytes: 8 << 20, maxRatio: 1_000_000)
        let e3 = #expect(throws: DecodeError.self) { try ContentDecoding.decode(gz, contentEncoding: "x-gzip", limits: limits) }
        #expect(e3?.code == .tooLarge)
        #expect(e3?.message.contains("8388608") == true)
        let e4 = #expect(throws: DecodeError.self) { try ContentDecoding.decode(zst, contentEncoding: "zstd", limits: limits) }
        #expect(e4?.code == .tooLarge)
    }

    @Test func streamedZstdBombWithoutContentSizeStops() throws {
        try #require(Self.haveCLIs)
        let zeros = [UInt8](repeating: 0, count: 12 << 20)
        let streamed = try Self.cli("zstd", ["-q", "-c", "-1", "--no-content-size"], zeros)
        let limits = DecompressionLimits(maxBytes: 4 << 20, maxRatio: 10_000_000)
        let e = #expect(throws: DecodeError.self) { try ContentDecoding.decode(streamed, contentEncoding: "zstd", limits: limits) }
        #expect(e?.code == .tooLarge)
        // …while the cap applies only beyond the output actually produced.
        #expect(try ContentDecoding.decode(streamed, contentEncoding: "zstd", limits: .init(maxBytes: 12 << 20, maxRatio: 10_000_000)).count == 12 << 20)
    }

    @Test func ratioIsWaivedForSmallOutputs() throws {
        try #require(Self.haveCLIs)
        let zeros = [UInt8](repeating: 0x41, count: 500_000)   // ratio ~ 1000×, below the 1 MiB floor
        let gz = try Self.cli("gzip", ["-c", "-9"], zeros)
        #expect(try ContentDecoding.decode(gz, contentEncoding: "gzip").count == zeros.count)
        #expect(throws: DecodeError.self) {
            try ContentDecoding.decode(gz, contentEncoding: "gzip", limits: .init(maxRatio: 200, ratioFloorBytes: 0))
        }
    }

    @Test(arguments: ["gzip", "deflate", "zstd"])
    func truncatedAndMutatedInputsFailCleanly(encoding: String) throws {
        let file = ["gzip": "ddtrace_v04.msgpack.gz", "deflate": "ddtrace_v04.msgpack.zlib", "zstd": "ddtrace_v04.msgpack.zst"][encoding]!
        let valid = try DD.fixture(file)
        var rng = SplitMix64(seed: 3)
        var failures = 0
        for round in 0..<1500 {
            var b = valid
            if round % 2 == 0 { b.removeLast(Int(rng.next() % UInt64(b.count)) + 1) }
            else { for _ in 0..<3 { b[Int(rng.next() % UInt64(b.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) } }
            do throws(DecodeError) {
                _ = try ContentDecoding.decode(b, contentEncoding: encoding, limits: .init(maxBytes: 1 << 20))
            } catch {
                #expect(error.code == .malformed || error.code == .tooLarge, "\(error)")
                failures += 1
            }
        }
        #expect(failures > 700)
    }

    @Test func truncatedGzipNamesTheProblem() throws {
        let gz = try DD.fixture("ddtrace_v04.msgpack.gz")
        let e = #expect(throws: DecodeError.self) { try ContentDecoding.decode(Array(gz.prefix(500)), contentEncoding: "gzip") }
        #expect(e?.message.contains("truncated") == true)
        let e2 = #expect(throws: DecodeError.self) { try ContentDecoding.decode(gz + [1, 2, 3], contentEncoding: "deflate") }
        #expect(e2?.code == .malformed)
    }
}
