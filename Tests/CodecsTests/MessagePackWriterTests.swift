import TestSupport
import Testing
@testable import Codecs
import Spans

@Suite struct MessagePackWriterTests {
    typealias W = MessagePackWriter

    @Test func usesTheSmallestEncoding() {
        func bytes(_ f: (inout [UInt8]) -> Void) -> [UInt8] { var o: [UInt8] = []; f(&o); return o }
        #expect(bytes { W.writeUInt(127, into: &$0) } == [0x7f])
        #expect(bytes { W.writeUInt(128, into: &$0) } == [0xcc, 0x80])
        #expect(bytes { W.writeUInt(65536, into: &$0) } == [0xce, 0, 1, 0, 0])
        #expect(bytes { W.writeInt(-32, into: &$0) } == [0xe0])
        #expect(bytes { W.writeInt(-33, into: &$0) } == [0xd0, 0xdf])
        #expect(bytes { W.writeInt(Int64.min, into: &$0) } == [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0])
        #expect(bytes { W.writeString("abc", into: &$0) } == [0xa3, 0x61, 0x62, 0x63])
        #expect(bytes { W.writeArrayHeader(16, into: &$0) } == [0xdc, 0, 16])
        #expect(bytes { W.writeMapHeader(70000, into: &$0) } == [0xdf, 0, 1, 0x11, 0x70])
    }

    @Test func randomValuesRoundTripThroughTheReader() throws {
        var rng = SplitMix64(seed: 1)
        for _ in 0..<500 {
            let u = rng.next() >> (rng.next() % 64)
            let i = Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64)
            let d = Double(bitPattern: rng.next() & 0x7fef_ffff_ffff_ffff)
            let s = String(repeating: "é", count: Int(rng.next() % 40_000))
            var out: [UInt8] = []
            W.writeArrayHeader(4, into: &out)
            W.writeUInt(u, into: &out); W.writeInt(i, into: &out); W.writeDouble(d, into: &out); W.writeString(s, into: &out)
            try out.withUnsafeBytes { raw in
                var r = MessagePackReader(raw)
                #expect(try r.readArrayHeader() == 4)
                #expect(try r.readUInt64Bits() == u)
                #expect(try r.readInt64() == i)
                #expect(try r.readDouble() == d)
                let range = try r.readStringRange()
                #expect(String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self) == s)
                #expect(r.isAtEnd)
            }
        }
    }
}
