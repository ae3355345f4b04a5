import TestSupport
import Testing
@testable import Routing

@Suite struct TracerelayTagsHeaderTests {
    @Test func roundTripsAwkwardValues() {
        let tags = [TagPair("kuma.io/zone", "eu-1"), TagPair("odd,key", "a=b%c"), TagPair("empty", "")]
        let header = TracerelayTagsHeader.format(tags)
        #expect(header == "kuma.io/zone=eu-1,odd%2Ckey=a%3Db%25c,empty=")
        #expect(TracerelayTagsHeader.parse(header) == tags)
        #expect(TracerelayTagsHeader.parse(" a=1 , b=2 ") == [TagPair("a", "1"), TagPair("b", "2")])
        // Spaces at either end of a key or value, and control characters, survive the hop.
        let spaced = [TagPair(" k", "v "), TagPair("tab", "\t"), TagPair("route", "GET /a b")]
        #expect(TracerelayTagsHeader.format(spaced) == "%20k=v%20,tab=%09,route=GET%20/a%20b")
        #expect(TracerelayTagsHeader.parse(TracerelayTagsHeader.format(spaced)) == spaced)
    }

    @Test func rejectsMalformed() {
        for bad in ["a", "=v", "a=%zz", "a=%2", "a=%+f", "a=%-1", String(repeating: "k=v,", count: 65)] {
            #expect(TracerelayTagsHeader.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func randomizedRobustness() {
        var rng = SplitMix64(seed: 9)
        let alphabet = Array("ab=,%2C3D0\t ".utf8)
        for _ in 0..<2000 {
            let n = Int(rng.next() % 30)
            let s = String(decoding: (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }, as: UTF8.self)
            if let tags = TracerelayTagsHeader.parse(s) {
                #expect(TracerelayTagsHeader.parse(TracerelayTagsHeader.format(tags)) == tags)
            }
        }
    }
}
