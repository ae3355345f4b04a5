import Basics

/// The `X-Tracerelay-Tags` header one relay sends the next: `k=v,k2=v2`, with `%`, `,` and `=`
/// inside keys and values percent-encoded (`%25`, `%2C`, `%3D`).
public enum TracerelayTagsHeader {
    public static let name = "X-Tracerelay-Tags"
    /// More tags than this in one header are refused (a relay sends a handful).
    public static let maxTags = 64

    /// Parses the header value; nil when malformed (a pair without `=`, an empty key, a bad
    /// escape, too many tags). White space (SP, HTAB) around pairs is ignored.
    public static func parse(_ value: String) -> [TagPair]? {
        var out: [TagPair] = []
        for part in value.split(separator: ",", omittingEmptySubsequences: true) {
            let p = part.trimmingOWS()
            if p.isEmpty { continue }
            guard let eq = p.firstIndex(of: "="), let k = decode(p[..<eq]), !k.isEmpty,
                  let v = decode(p[p.index(after: eq)...]) else { return nil }
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

    private static func decode(_ s: Substring) -> String? {
        guard s.contains("%") else { return String(s) }
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, it.prefix(2).allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                      let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                it = it.dropFirst(2)
                bytes.append(v)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
