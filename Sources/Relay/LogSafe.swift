/// Escapes control characters in a value that came from the wire (a service name, a trace id,
/// a header, a backend's answer) before it reaches a log line, so a client cannot end the line
/// and forge another one (`"web\n2026-01-01T00:00:00 critical tracerelay: FORGED"`).
///
/// `\n`, `\r`, `\t` are written as those two-character escapes, every other C0 control, DEL,
/// the C1 controls (U+0080–U+009F, NEL among them) and the Unicode line/paragraph separators
/// as `\u00XX` / `\u2028`. Backslashes are left alone, so escaping twice changes nothing. The
/// common case (nothing to escape) is one scan of the UTF-8 bytes and returns the string itself.
public func logSafe(_ s: String) -> String {
    var clean = true
    for b in s.utf8 where b < 0x20 || b == 0x7f || b == 0xc2 || b == 0xe2 {
        // 0xc2 / 0xe2 lead the C1 controls and U+2028/U+2029; most such sequences are harmless
        // (é is 0xc3…, but "¢" is 0xc2 0xa2): the slow path decides.
        clean = false
        break
    }
    if clean { return s }
    var out = ""
    out.reserveCapacity(s.utf8.count + 8)
    for u in s.unicodeScalars {
        switch u.value {
        case 0x0a: out += "\\n"
        case 0x0d: out += "\\r"
        case 0x09: out += "\\t"
        case 0x00..<0x20, 0x7f, 0x80...0x9f, 0x2028, 0x2029:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out
}
