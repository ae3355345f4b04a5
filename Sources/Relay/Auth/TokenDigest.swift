internal import COpenSSL
import Spans

/// The SHA-256 digest of an ingest token: what the token store keeps and compares, never the
/// token itself. Both sides are hashed before they meet, so how long a comparison takes can
/// only tell about digests an attacker cannot invert, and `==` itself takes the same time
/// whichever bytes differ.
struct TokenDigest: Hashable, Sendable {
    static let byteCount = 32
    /// The digest as four words, so hashing and comparing stay short.
    private var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    /// SHA-256 of `token`'s UTF-8 bytes (OpenSSL's EVP), written straight into the words: no
    /// allocation on the request path.
    init(hashing token: String) {
        (w0, w1, w2, w3) = (0, 0, 0, 0)
        var token = token
        var length: UInt32 = 0
        let ok = token.withUTF8 { input in
            withUnsafeMutableBytes(of: &self) { out in
                precondition(out.count == Self.byteCount, "TokenDigest must be exactly the digest's 32 bytes")
                return EVP_Digest(input.baseAddress, input.count, out.baseAddress, &length, sha256, nil)
            }
        }
        // Cannot fail for SHA-256 on a working libcrypto; a broken one must not let anybody in.
        precondition(ok == 1 && length == UInt32(Self.byteCount), "OpenSSL could not compute SHA-256")
    }

    /// A digest given as 64 hexadecimal digits (`tokenSha256`, e.g. from `sha256sum`); nil otherwise.
    init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count == 2 * Self.byteCount else { return nil }
        // Each word holds its 8 digest bytes in memory order, as `init(hashing:)` writes them.
        let words = digits.withUnsafeBytes { all in
            (0..<4).compactMap { parseHex64(UnsafeRawBufferPointer(rebasing: all[$0 * 16..<($0 + 1) * 16])).map(UInt64.init(bigEndian:)) }
        }
        guard words.count == 4 else { return nil }
        (w0, w1, w2, w3) = (words[0], words[1], words[2], words[3])
    }

    static func == (a: TokenDigest, b: TokenDigest) -> Bool {
        withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in ConstantTime.equal(x, y) } }
    }

    func hash(into h: inout Hasher) {
        h.combine(w0)
        h.combine(w1)
        h.combine(w2)
        h.combine(w3)
    }
}

/// Comparisons whose duration does not depend on where two byte strings differ.
enum ConstantTime {
    /// Whether `a` and `b` hold the same bytes, reading every byte of both (OpenSSL's
    /// `CRYPTO_memcmp`) when their lengths match. Lengths are not secret here (callers compare
    /// digests of one fixed length); different lengths are unequal at once.
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard a.count > 0 else { return true }
        return CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in equal(x, y) } }
    }
}

/// SHA-256, fetched from OpenSSL's default provider once: the implicit fetch behind
/// `EVP_sha256()` would look the algorithm up again on every request. A fetched `EVP_MD` is
/// immutable and may be shared by every thread.
private nonisolated(unsafe) let sha256: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil) ?? EVP_sha256()
