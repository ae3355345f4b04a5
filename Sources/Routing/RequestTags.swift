import Basics

/// The `X-Tracerelay-Tags` header one relay sends the next: `k=v,k2=v2`, with `%`, `,` and `=`
/// inside keys and values percent-encoded (`%25`, `%2C`, `%3D`).
public enum TracerelayTagsHeader {
    public static let name = "X-Tracerelay-Tags"
    /// More tags than this in one header are refused (a relay sends a handful).
    public static let maxTags = 64

    /// Parses the header value; nil when malformed (a pair without `=`, an empty key, a bad
    /// escape, too many tags). White space (SP, HTAB) around pairs is ignored.
    /// Works on the UTF-8 bytes, not on Characters: a combining mark right after `,` or `=`
    /// would otherwise fuse with it into one grapheme and hide the separator.
    public static func parse(_ value: String) -> [TagPair]? {
        var out: [TagPair] = []
        let bytes = Array(value.utf8)
        for part in bytes.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: true) {
            var p = part[...]
            while let f = p.first, f == 0x20 || f == 0x09 { p = p.dropFirst() }
            while let l = p.last, l == 0x20 || l == 0x09 { p = p.dropLast() }
            if p.isEmpty { continue }
            guard let eq = p.firstIndex(of: UInt8(ascii: "=")), let k = decode(p[..<eq]), !k.isEmpty,
                  let v = decode(p[(eq + 1)...]) else { return nil }
            out.append(TagPair(k, v))
            if out.count > maxTags { return nil }
        }
        return out
    }

    public static func format(_ tags: [TagPair]) -> String {
        tags.map { encode($0.key) + "=" + encode($0.value) }.joined(separator: ",")
    }

    /// `%`, `,` and `=` are percent-encoded, and so are spaces and control characters: a space
    /// at either end would be trimmed away by `parse`, and control characters cannot travel in
    /// a header value.
    private static func encode(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "%": out += "%25"
            case ",": out += "%2C"
            case "=": out += "%3D"
            case _ where u.value <= 0x20 || u.value == 0x7F:
                out += "%" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16, uppercase: true)
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    private static func decode(_ s: ArraySlice<UInt8>) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.count)
        var i = s.startIndex
        while i < s.endIndex {
            let b = s[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < s.endIndex, let hi = hexDigitValue(s[i + 1]), let lo = hexDigitValue(s[i + 2]) else { return nil }
                bytes.append(hi << 4 | lo)
                i += 3
            } else {
                bytes.append(b)
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
