import Testing
@testable import Transport

@Suite struct HTTPHeadersTests {
    @Test func lookupIgnoresASCIICaseOnly() {
        let h = HTTPHeaders([("Content-Type", "application/json"), ("X-Tag", "a"), ("x-tag", "b"), ("a@b", "at")])
        #expect(h["content-type"] == "application/json")
        #expect(h["CONTENT-TYPE"] == "application/json")
        #expect(h.values("X-TAG") == ["a", "b"])
        #expect(h["content-typ"] == nil)
        // '@' (0x40) and '`' (0x60) differ only in bit 0x20 but are not letters: no match.
        #expect(h["a`b"] == nil)
        #expect(h["A@B"] == "at")
    }
}
