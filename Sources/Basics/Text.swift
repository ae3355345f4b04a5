/// Small text helpers used on cold paths (headers, config, command output). Hot paths work on bytes.

extension StringProtocol {
    /// The text without the optional white space (SP, HTAB) around it — HTTP's OWS, and what
    /// config values and comma-separated lists are trimmed of.
    public func trimmingOWS() -> Substring {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return Substring(s)
    }
}

/// `s` as a JSON string literal: quoted, with `"`, `\` and control characters escaped (RFC 8259 §7).
/// DEL, the C1 controls and U+2028/U+2029 are escaped too although JSON allows them raw: tools
/// that split lines on them (log shippers, Python's `splitlines`) must not see a line break
/// inside one log record.
/// The one cold-path JSON string writer (error bodies, `/status`, command output). The encoders'
/// byte-level writer in Codecs is the hot-path one.
public func jsonQuoted<S: StringProtocol>(_ s: S) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

/// The value of one ASCII hex digit (`0-9`, `a-f`, `A-F`), or nil: chunk sizes, percent-escapes
/// in headers and query strings.
@inlinable
public func hexDigitValue(_ b: UInt8) -> UInt8? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// RFC 9110 `tchar`: the bytes of a method, a header name or a token.
@inlinable
public func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
    case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
    default: false
    }
}
