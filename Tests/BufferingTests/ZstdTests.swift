import Testing
@testable import Buffering

@Suite struct ZstdTests {
    @Test func roundTripReusesContexts() throws {
        let c = ZstdCompressor(level: 1)
        let d = ZstdDecompressor()
        for i in 0..<5 {
            let input = (0..<(1000 * (i + 1))).map { UInt8(truncatingIfNeeded: $0 % 17 + i) }
            let z = try c.compress(input)
            #expect(z.count < input.count)
            #expect(try d.decompress(z, size: input.count) == input)
        }
    }

    @Test func damagedInputThrows() throws {
        let input = Array(String(repeating: "{\"traceId\":\"abc\"}", count: 200).utf8)
        let z = try ZstdCompressor().compress(input)
        var bad = z
        bad[bad.count / 2] ^= 0xFF
        let d = ZstdDecompressor()
        // Either the decoder rejects it, or the size check does; it must never trap.
        _ = try? d.decompress(bad, size: input.count)
        #expect(throws: ZstdError.self) { try d.decompress(Array(z.prefix(z.count - 3)), size: input.count) }
        #expect(throws: ZstdError.self) { try d.decompress(z, size: input.count + 1) }
    }
}
