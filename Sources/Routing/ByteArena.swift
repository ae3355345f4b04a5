#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A reference to bytes in a `ByteArena`.
struct Bytes: Hashable, Sendable {
    var offset: Int32
    var count: Int32
    static let none = Bytes(offset: 0, count: -1)
    var isNone: Bool { count < 0 }
}

/// Immutable byte strings with stable addresses for the arena's lifetime, so the routing hot
/// path compares raw memory instead of Swift Strings. Built once, never mutated afterwards.
final class ByteArena: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let count: Int

    init(_ bytes: [UInt8]) {
        count = bytes.count
        base = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        bytes.withUnsafeBytes { if $0.count > 0 { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    }
    deinit { base.deallocate() }

    @inline(__always) func pointer(_ b: Bytes) -> UnsafeRawPointer { UnsafeRawPointer(base + Int(b.offset)) }

    @inline(__always) func equals(_ b: Bytes, _ p: UnsafeRawPointer?, _ n: Int) -> Bool {
        guard Int(b.count) == n else { return false }
        if n == 0 { return true }
        return fastEqual(base + Int(b.offset), p!, n)
    }

    func string(_ b: Bytes) -> String {
        b.count <= 0 ? "" : String(decoding: UnsafeRawBufferPointer(start: base + Int(b.offset), count: Int(b.count)), as: UTF8.self)
    }
}

/// Collects strings for a `ByteArena`, sharing equal ones.
struct ArenaBuilder {
    var bytes: [UInt8] = []
    var seen: [String: Bytes] = [:]
    mutating func add(_ s: String) -> Bytes {
        if let b = seen[s] { return b }
        let b = Bytes(offset: Int32(bytes.count), count: Int32(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
        seen[s] = b
        return b
    }
}

/// A resolved tag value during routing: pointer and length into batch storage, the request
/// context or the table's arena. `count < 0` means absent.
struct Slot {
    var ptr: UnsafeRawPointer?
    var count: Int
    var rank: Int
    static var absent: Slot { Slot(ptr: nil, count: -1, rank: Int.max) }
    @inline(__always) var isPresent: Bool { count >= 0 }
    var string: String? {
        guard count >= 0 else { return nil }
        return count == 0 ? "" : String(decoding: UnsafeRawBufferPointer(start: ptr, count: count), as: UTF8.self)
    }
}

@inline(__always) func bytesEqual(_ a: UnsafeRawPointer?, _ an: Int, _ b: UnsafeRawPointer?, _ bn: Int) -> Bool {
    guard an == bn else { return false }
    if an == 0 { return true }
    return fastEqual(a!, b!, an)
}

/// Byte equality for the short strings of tags, inlined (a libc call costs more than the compare).
@inline(__always) func fastEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
        i += 8
    }
    return i == n || loadWord(a + i, n - i) == loadWord(b + i, n - i)
}

/// Loads up to 8 bytes as a little-endian word, zero-padded (for quick prefix compares and hashing).
@inline(__always) func loadWord(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
    if n >= 8 { return p.loadUnaligned(as: UInt64.self) }
    if n >= 4 {
        // Two overlapping 4-byte loads rebuild the exact zero-padded word without a byte loop.
        let lo = UInt64(p.loadUnaligned(as: UInt32.self))
        let hi = UInt64(p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self))
        return lo | (hi << UInt64(8 * (n - 4)))
    }
    if n == 0 { return 0 }
    let b0 = UInt64(p.load(as: UInt8.self))
    let bm = UInt64(p.load(fromByteOffset: n >> 1, as: UInt8.self)) << UInt64(8 * (n >> 1))
    let bl = UInt64(p.load(fromByteOffset: n - 1, as: UInt8.self)) << UInt64(8 * (n - 1))
    return b0 | bm | bl
}

@inline(__always) func mix(_ h: UInt64, _ x: UInt64) -> UInt64 {
    let v = (h ^ x) &* 0x9E37_79B9_7F4A_7C15
    return (v << 29) | (v >> 35)
}

/// Hash of a byte string (8 bytes at a time).
@inline(__always) func hashBytes(_ seed: UInt64, _ p: UnsafeRawPointer?, _ n: Int) -> UInt64 {
    var h = mix(seed, UInt64(bitPattern: Int64(n)))
    guard let p, n > 0 else { return h }
    var i = 0
    while i + 8 <= n { h = mix(h, (p + i).loadUnaligned(as: UInt64.self)); i += 8 }
    if i < n { h = mix(h, loadWord(p + i, n - i)) }
    return h
}
