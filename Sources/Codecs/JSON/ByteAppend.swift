import Spans

extension Array where Element == UInt8 {
    /// Appends raw bytes with one memcpy. (`append(contentsOf:)` with an
    /// `UnsafeRawBufferPointer` goes element by element — about 1 ns per byte.)
    @inline(__always)
    mutating func appendBytes(_ b: UnsafeRawBufferPointer) {
        guard let p = b.baseAddress, b.count > 0 else { return }
        append(contentsOf: UnsafeBufferPointer(start: p.assumingMemoryBound(to: UInt8.self), count: b.count))
    }
}

extension SpanBatch {
    /// `intern` with a single memcpy (see `appendBytes`).
    @inline(__always)
    mutating func internBytes(_ b: UnsafeRawBufferPointer) -> Str {
        if b.isEmpty { return .empty }
        let off = storage.count
        storage.appendBytes(b)
        return Str(offset: UInt32(off), count: UInt32(b.count))
    }
}
