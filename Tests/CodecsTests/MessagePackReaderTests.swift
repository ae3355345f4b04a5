import TestSupport
import Testing
@testable import Codecs
import Spans

@Suite struct MessagePackReaderTests {
    func read<R>(_ bytes: [UInt8], _ body: (inout MessagePackReader) throws(DecodeError) -> R) throws(DecodeError) -> R {
        let r: Result<R, DecodeError> = bytes.withUnsafeBytes { raw in
            Result { () throws(DecodeError) -> R in
                var reader = MessagePackReader(raw, format: .datadogV04)
                let v = try body(&reader)
                precondition(reader.isAtEnd)
                return v
            }
        }
        return try r.get()
    }

    @Test func integersOfEveryWidth() throws {
        let cases: [([UInt8], UInt64)] = [
            ([0x05], 5), ([0xff], UInt64(bitPattern: -1)), ([0xcc, 0xfe], 254), ([0xcd, 0x01, 0x02], 258),
            ([0xce, 0, 1, 0, 0], 65536), ([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], .max),
            ([0xd0, 0x80], UInt64(bitPattern: -128)), ([0xd1, 0xff, 0xfe], UInt64(bitPattern: -2)),
            ([0xd2, 0xff, 0xff, 0xff, 0xfd], UInt64(bitPattern: -3)),
            ([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], 1 << 63), ([0xc0], 0),
        ]
        for (bytes, want) in cases {
            #expect(try read(bytes) { r throws(DecodeError) in try r.readUInt64Bits() } == want, "\(bytes)")
        }
        #expect(try read([0xcb] + withUnsafeBytes(of: (12.0).bitPattern.bigEndian, Array.init)) { r throws(DecodeError) in try r.readInt64() } == 12)
    }

    @Test func floatsAndIntsReadAsDouble() throws {
        #expect(try read([0xca] + withUnsafeBytes(of: Float(0.25).bitPattern.bigEndian, Array.init)) { r throws(DecodeError) in try r.readDouble() } == 0.25)
        #expect(try read([0xd0, 0xfe]) { r throws(DecodeError) in try r.readDouble() } == -2)
        #expect(try read([0xcf, 0, 0, 0, 1, 0, 0, 0, 0]) { r throws(DecodeError) in try r.readDouble() } == 4294967296)
    }

    @Test func stringsAreRangesOfTheInput() throws {
        let long = [UInt8](repeating: 0x61, count: 300)
        var bytes: [UInt8] = [0xa2, 0x68, 0x69, 0xd9, 1, 0x78, 0xda, 0x01, 0x2c] + long + [0xc4, 1, 0x7a, 0xc0]
        bytes += [0xdb, 0, 0, 0, 1, 0x79]
        let ranges = try read(bytes) { r throws(DecodeError) in
            [try r.readStringRange(), try r.readStringRange(), try r.readStringRange(), try r.readStringRange(),
             try r.readStringRange(), try r.readStringRange()]
        }
        #expect(ranges.map(\.count) == [2, 1, 300, 1, 0, 1])
        #expect(ranges[0] == 1..<3)
    }

    @Test func skipWalksEveryType() throws {
        var w: [UInt8] = []
        MessagePackWriter.writeArrayHeader(8, into: &w)
        MessagePackWriter.writeMapHeader(20, into: &w)
        for i in 0..<20 { MessagePackWriter.writeString("k\(i)", into: &w); MessagePackWriter.writeInt(Int64(i) * -1000, into: &w) }
        MessagePackWriter.writeDouble(1.5, into: &w)
        MessagePackWriter.writeBool(true, into: &w)
        MessagePackWriter.writeNil(into: &w)
        w += [0xd4, 1, 2, 0xc7, 2, 1, 0xaa, 0xbb, 0xd8, 1] + [UInt8](repeating: 0, count: 16)
        MessagePackWriter.writeString(String(repeating: "x", count: 70_000), into: &w)
        try read(w) { r throws(DecodeError) in try r.skip() }
    }

    @Test func truncationsAreErrorsWithOffsets() throws {
        let e = #expect(throws: DecodeError.self) { try read([0xcd, 0x01]) { r throws(DecodeError) in try r.readUInt64Bits() } }
        #expect(e?.offset == 0)
        #expect(e?.message.contains("truncated") == true)
        let e2 = #expect(throws: DecodeError.self) { try read([0x92, 0xa5, 0x61]) { r throws(DecodeError) in _ = try r.readArrayHeader(); return try r.readStringRange() } }
        #expect(e2?.offset == 1)
        let e3 = #expect(throws: DecodeError.self) { try read([0xc1]) { r throws(DecodeError) in try r.skip() } }
        #expect(e3?.message.contains("0xc1") == true)
    }

    /// Random bytes: each `skip` either fails or consumes at least one byte and stays inside.
    @Test func skippingRandomBytesAdvancesOrFails() {
        let seed: UInt64 = 9
        var rng = SplitMix64(seed: seed)
        for round in 0..<3000 {
            let bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            bytes.withUnsafeBytes { raw in
                var r = MessagePackReader(raw)
                while !r.isAtEnd {
                    let before = r.position
                    if (try? r.skip()) == nil { break }
                    if r.position <= before || r.position > raw.count {
                        Issue.record("seed \(seed) round \(round): skip moved \(before) → \(r.position) in \(bytes)")
                        return
                    }
                }
            }
        }
    }
}
