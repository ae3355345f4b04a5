import Basics
internal import CShims
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

/// Comma-separated list elements, trimmed and lower-cased.
func tokens(_ value: String) -> [String] {
    value.split(separator: ",").map { $0.trimmingOWS().lowercased() }.filter { !$0.isEmpty }
}

/// Why a field line is malformed (RFC 9110 §5.1, §5.5; RFC 9112 §5.2).
enum FieldLineProblem: Error {
    /// Starts with white space: obsolete line folding, not accepted.
    case folded
    /// No ':' or an empty name.
    case noName
    /// A name character that is not a tchar; the colon's offset.
    case badName(colon: Int)
    /// A control character in the value; the colon's offset.
    case badValue(colon: Int)
}

/// Splits the field line `p[ls..<le]` (without its line end): the colon's offset and the value
/// without the optional white space around it. Requests and responses share it.
func parseFieldLine(_ p: UnsafeRawBufferPointer, _ ls: Int, _ le: Int)
    -> Result<(colon: Int, valueStart: Int, valueEnd: Int), FieldLineProblem> {
    if ls < le && (p[ls] == 0x20 || p[ls] == 0x09) { return .failure(.folded) }
    guard let colon = findByte(p, 0x3A, ls, le), colon > ls else { return .failure(.noName) }
    for k in ls..<colon where !isTokenChar(p[k]) { return .failure(.badName(colon: colon)) }
    var vs = colon + 1
    var ve = le
    while vs < ve && (p[vs] == 0x20 || p[vs] == 0x09) { vs += 1 }
    while ve > vs && (p[ve - 1] == 0x20 || p[ve - 1] == 0x09) { ve -= 1 }
    for k in vs..<ve {
        let b = p[k]
        if (b < 0x20 && b != 0x09) || b == 0x7F { return .failure(.badValue(colon: colon)) }
    }
    return .success((colon, vs, ve))
}

enum ContentLengthProblem { case none, notANumber, conflicting }

/// Reads one `Content-Length` field value into `length` (RFC 9110 §8.6: a list of identical
/// numbers is that number; earlier lines must agree). More than 18 digits reads as `Int.max`,
/// which every body limit refuses.
func mergeContentLength(_ value: String, into length: inout Int?) -> ContentLengthProblem {
    for part in value.split(separator: ",", omittingEmptySubsequences: false) {
        let t = part.trimmingOWS()
        guard !t.isEmpty, t.utf8.allSatisfy(isDigit) else { return .notANumber }
        let v = t.utf8.count > 18 ? Int.max : Int(t)!
        if let cl = length, cl != v { return .conflicting }
        length = v
    }
    return .none
}

/// Parses a chunk-size line `p[start..<lf]` ("size[;ext]" and its line end; `bareLF` accepts a
/// line end without CR). Chunk extensions are ignored. Requests and responses share it.
func parseChunkSizeLine(_ p: UnsafeRawBufferPointer, _ start: Int, _ lf: Int, bareLF: Bool) -> Result<Int, ChunkLineProblem> {
    let le: Int
    if lf > start && p[lf - 1] == 0x0D {
        le = lf - 1
    } else if bareLF {
        le = lf
    } else {
        return .failure(.noCRLF)
    }
    var k = start
    var size = 0
    var digits = 0
    while k < le, let d = hexDigitValue(p[k]) {
        if digits >= 15 { return .failure(.tooLarge) }
        size = size << 4 | Int(d)
        digits += 1
        k += 1
    }
    guard digits > 0 else { return .failure(.notHex) }
    // Optional whitespace, then chunk extensions (";name=value"), which we ignore.
    while k < le && (p[k] == 0x20 || p[k] == 0x09) { k += 1 }
    if k < le && p[k] != 0x3B { return .failure(.trailingGarbage) }
    return .success(size)
}

enum ChunkLineProblem: Error {
    case noCRLF, tooLarge, notHex, trailingGarbage

    var message: String {
        switch self {
        case .noCRLF: "chunk-size line does not end with CRLF"
        case .tooLarge: "chunk size too large"
        case .notHex: "chunk size is not a hex number"
        case .trailingGarbage: "unexpected character after the chunk size"
        }
    }
}

/// Bytes queued for a socket, drained from the front. After a full drain the buffer keeps at
/// most `retainedCapacity` bytes of capacity, so a connection that once carried a large
/// message does not hold the memory while idle.
struct ByteQueue {
    private(set) var bytes: [UInt8] = []
    private var start = 0
    let retainedCapacity: Int

    init(retainedCapacity: Int) { self.retainedCapacity = retainedCapacity }

    var count: Int { bytes.count - start }
    var isEmpty: Bool { start == bytes.count }
    var capacity: Int { bytes.capacity }

    mutating func append(_ b: UInt8) { bytes.append(b) }
    mutating func append<S: Sequence>(contentsOf s: S) where S.Element == UInt8 { bytes.append(contentsOf: s) }
    mutating func append(contentsOf s: UnsafeRawBufferPointer) { bytes.append(contentsOf: s) }
    mutating func append(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
    mutating func reserveCapacity(_ n: Int) { bytes.reserveCapacity(start + n) }

    /// Moves up to `limit` bytes to the end of `dest`; when `dest` is empty and everything fits,
    /// the buffers are swapped instead of copied.
    mutating func drain(into dest: inout [UInt8], limit: Int) {
        let available = count
        guard available > 0, limit > 0 else { return }
        if dest.isEmpty && start == 0 && available <= limit {
            swap(&dest, &bytes)
            clear()
        } else {
            let n = min(available, limit)
            dest.append(contentsOf: bytes[start..<(start + n)])
            start += n
            if start == bytes.count { clear() }
        }
    }

    /// Drops everything.
    mutating func clear() {
        start = 0
        if bytes.capacity > retainedCapacity {
            bytes = []
        } else {
            bytes.removeAll(keepingCapacity: true)
        }
    }

    /// Writes the queued bytes to `fd` until they are gone or the socket is full; `refill` is
    /// asked for more each time the queue runs empty (it appends nothing when it has none), and
    /// `sent` hears of each successful `send`. Returns false when the socket is full (EAGAIN).
    mutating func send(to fd: Int32, refill: (inout [UInt8]) -> Void, sent: (Int) -> Void) throws(SystemCallError) -> Bool {
        while true {
            if isEmpty {
                clear()
                refill(&bytes)
                if bytes.isEmpty { return true }
            }
            let offset = start
            let r: IOResult<Int>
            do {
                r = try bytes.withUnsafeBytes { p throws(SystemCallError) in
                    try syscall("send") { Glibc.send(fd, p.baseAddress! + offset, p.count - offset, Int32(MSG_NOSIGNAL)) }
                }
            } catch {
                throw (error as? SystemCallError) ?? SystemCallError(call: "send", errno: EIO)
            }
            switch r {
            case .wouldBlock: return false
            case .done(let n):
                start += n
                sent(n)
            }
        }
    }
}
