/// The chunked transfer coding's framing (RFC 9112 §7.1), shared by the server's request
/// parser and the client's response parser: chunk-size lines, the CRLF after each chunk's
/// data, the last chunk and the trailer section. The owner stores the data, checks its own
/// size limits and reads or drops the trailer fields; chunk extensions are ignored.
struct ChunkedDecoder {
    private enum State {
        case size
        case data(remaining: Int)
        case dataEnd
        case trailers(bytes: Int)
    }

    enum Problem: Error {
        case sizeLineTooLong
        case sizeLine(ChunkLineProblem)
        case dataNotFollowedByCRLF
        case trailersTooLarge
        case trailerLineWithoutCRLF
    }

    /// What `step` found.
    enum Step {
        /// The rest of the input is an incomplete element: call again with more.
        case needMore
        /// A chunk of `size` bytes begins (the data follows as `.data`).
        case chunkStart(size: Int)
        /// Chunk data `p[range]`.
        case data(Range<Int>)
        /// A trailer field line `p[start..<end]` (without its line end).
        case trailer(start: Int, end: Int)
        /// The last chunk and the trailer section were read: the body is complete.
        case end
        case failure(Problem)
    }

    /// Accept line ends without CR (lenient, for responses).
    let bareLF: Bool
    /// Largest trailer section.
    let maxTrailerBytes: Int
    private var state = State.size

    init(bareLF: Bool, maxTrailerBytes: Int) {
        self.bareLF = bareLF
        self.maxTrailerBytes = maxTrailerBytes
    }

    /// Reading chunk data or its framing, not yet the trailers.
    var inChunks: Bool { if case .trailers = state { false } else { true } }

    /// Decodes the next element of `p` at `i`, advancing `i` past what it used.
    mutating func step(_ p: UnsafeRawBufferPointer, _ i: inout Int) -> Step {
        let n = p.count
        switch state {
        case .size:
            guard let lf = findByte(p, 0x0A, i, n) else {
                return n - i > 4096 ? .failure(.sizeLineTooLong) : .needMore
            }
            switch parseChunkSizeLine(p, i, lf, bareLF: bareLF) {
            case .failure(let e): return .failure(.sizeLine(e))
            case .success(let size):
                i = lf + 1
                state = size == 0 ? .trailers(bytes: 0) : .data(remaining: size)
                return size == 0 ? step(p, &i) : .chunkStart(size: size)
            }
        case .data(let remaining):
            guard i < n else { return .needMore }
            let take = min(remaining, n - i)
            state = take == remaining ? .dataEnd : .data(remaining: remaining - take)
            i += take
            return .data((i - take)..<i)
        case .dataEnd:
            if bareLF && i < n && p[i] == 0x0A {
                i += 1
                state = .size
                return step(p, &i)
            }
            if n - i < 2 { return .needMore }
            guard p[i] == 0x0D && p[i + 1] == 0x0A else { return .failure(.dataNotFollowedByCRLF) }
            i += 2
            state = .size
            return step(p, &i)
        case .trailers(let seen):
            guard let lf = findByte(p, 0x0A, i, n) else {
                return seen + (n - i) > maxTrailerBytes ? .failure(.trailersTooLarge) : .needMore
            }
            let lineLength = lf + 1 - i
            if seen + lineLength > maxTrailerBytes { return .failure(.trailersTooLarge) }
            let le: Int
            if lf > i && p[lf - 1] == 0x0D {
                le = lf - 1
            } else if bareLF {
                le = lf
            } else {
                return .failure(.trailerLineWithoutCRLF)
            }
            let start = i
            i = lf + 1
            if le == start {
                state = .size
                return .end
            }
            state = .trailers(bytes: seen + lineLength)
            return .trailer(start: start, end: le)
        }
    }
}
