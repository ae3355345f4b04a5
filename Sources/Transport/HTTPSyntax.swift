#if canImport(Glibc)
import Glibc
#endif

// Byte-level HTTP/1 syntax shared by the server engine (HTTP1Engine) and the client engine
// (HTTP1ClientEngine): one copy of each helper.

/// The first `byte` in `p[from..<to]` (memchr), as an index into `p`.
@inline(__always)
func findByte(_ p: UnsafeRawBufferPointer, _ byte: UInt8, _ from: Int, _ to: Int) -> Int? {
    guard from < to, let base = p.baseAddress else { return nil }
    guard let hit = memchr(base + from, Int32(byte), to - from) else { return nil }
    return base.distance(to: UnsafeRawPointer(hit))
}

/// `p[a..<b]` as text (empty when `b <= a`).
func string(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> String {
    String(decoding: UnsafeRawBufferPointer(rebasing: p[a..<max(a, b)]), as: UTF8.self)
}

/// Whether `p` holds the literal `s` at `at` (exact bytes).
func bytesEqual(_ p: UnsafeRawBufferPointer, _ at: Int, _ s: StaticString) -> Bool {
    let n = s.utf8CodeUnitCount
    guard at + n <= p.count else { return false }
    let sp = s.utf8Start
    for k in 0..<n where p[at + k] != sp[k] { return false }
    return true
}

@inline(__always) func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

@inline(__always) func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case 0x30...0x39: Int(b - 0x30)
    case 0x41...0x46: Int(b - 0x41 + 10)
    case 0x61...0x66: Int(b - 0x61 + 10)
    default: nil
    }
}

/// RFC 9110 tchar.
func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
    case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
    default: false
    }
}

/// `s` without the optional white space (SP, HTAB) around it.
func trimOWS(_ s: Substring) -> String {
    var t = s
    while let f = t.first, f == " " || f == "\t" { t = t.dropFirst() }
    while let l = t.last, l == " " || l == "\t" { t = t.dropLast() }
    return String(t)
}

/// Comma-separated list elements, trimmed and lower-cased.
func tokens(_ value: String) -> [String] {
    value.split(separator: ",").map { trimOWS($0).lowercased() }.filter { !$0.isEmpty }
}
