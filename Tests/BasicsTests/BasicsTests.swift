import Foundation
import Testing
import Basics

@Suite struct BasicsTests {
    @Test func jsonQuotedEscapesWhatCouldBreakALine() throws {
        let nasty = "a\"b\\c\nd\re\tf\u{01}g\u{7F}h\u{85}i\u{2028}j\u{2029}k€🙂"
        let quoted = jsonQuoted(nasty)
        // Valid JSON that decodes to the same text…
        let back = try JSONSerialization.jsonObject(with: Data(quoted.utf8), options: [.fragmentsAllowed]) as? String
        #expect(back == nasty)
        // …with nothing a line splitter could break on.
        #expect(quoted.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count == 1)
        #expect(!quoted.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029 })
        #expect(quoted.contains("\\u007f") && quoted.contains("\\u0085") && quoted.contains("\\u2028"))
        #expect(jsonQuoted("plain") == "\"plain\"")
    }

    @Test func trimmingOWSTrimsSpacesAndTabsOnly() {
        #expect(" \t gzip \t".trimmingOWS() == "gzip")
        #expect("\ngzip\n".trimmingOWS() == "\ngzip\n")
        #expect("   ".trimmingOWS() == "")
        #expect(Substring("a b").trimmingOWS() == "a b")
    }

    @Test func clocksMoveForwardAndAgree() {
        let m0 = Clock.monotonicNanos(), w = Clock.wallNanos()
        #expect(Clock.monotonicNanos() >= m0)
        #expect(abs(Double(w) / 1e9 - Date().timeIntervalSince1970) < 5)
        #expect(Clock.wallMillis() / 1000 == UInt64(Clock.wallSeconds()) || Clock.wallMillis() / 1000 == UInt64(Clock.wallSeconds()) + 1)
    }
}
