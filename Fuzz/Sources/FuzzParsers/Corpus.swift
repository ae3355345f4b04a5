@_spi(Fuzzing) import Buffering
import Dispatch
import Logging
@_spi(Fuzzing) import Transport
#if canImport(Glibc)
import Glibc
#endif

// The seed corpora of the engine targets, kept in Fuzz/Corpus/<target>/ and regenerated with
//   FUZZ_TARGET=make-corpus <FuzzParsers binary> Fuzz/Corpus        (Fuzz/make-corpus.sh)
// Each seed starts with the control byte(s) its target reads (see the entry points in
// Sources/Transport/FuzzEntryPoints.swift and Sources/Buffering/FuzzEntryPoints.swift).

/// Writes every seed below `dir`; returns the process exit code.
func makeCorpus(_ dir: String) -> CInt {
    var seeds: [(target: String, name: String, bytes: [UInt8])] = []
    func add(_ target: String, _ name: String, _ control: [UInt8], _ text: String) {
        seeds.append((target, name, control + Array(text.utf8)))
    }

    // HTTP/1.1 requests as clients send them (control: split seed, 0x40 h2c allowed, 0x80 small limits).
    add("http1-request", "post-length", [0x03], "POST /api/v2/spans HTTP/1.1\r\nHost: relay:9411\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")
    add("http1-request", "post-chunked-trailer", [0x02], "POST /api/v2/spans HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\n[1]\r\n0\r\nX-Checksum: abc\r\n\r\n")
    add("http1-request", "pipelined", [0x05], "GET /status HTTP/1.1\r\nHost: a\r\n\r\nHEAD /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
        + "POST /v0.4/traces HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Type: application/msgpack\r\nContent-Length: 1\r\n\r\n\u{90}"
        + "GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    add("http1-request", "http10-keepalive", [0x01], "\r\nPOST /api/v1/spans HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\n[{}]GET / HTTP/1.0\r\n\r\n")
    add("http1-request", "h2c-upgrade", [0x46], "GET / HTTP/1.1\r\nHost: relay\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        + "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    add("http1-request", "small-limits-chunked", [0x84], "PUT /v0.5/traces HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n" + String(repeating: "x", count: 500) + "\r\n0\r\n\r\n")

    // Responses backends send (control: split seed, 0x80 the request is HEAD, 0x40 small limits).
    add("http1-response", "ok-length", [0x03], "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    add("http1-response", "chunked-trailer", [0x02], "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n2;x=y\r\n:1\r\n1\r\n}\r\n0\r\nX-T: 1\r\n\r\n")
    add("http1-response", "continue-then-204", [0x05], "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n")
    add("http1-response", "until-eof", [0x04], "HTTP/1.0 500 Internal Server Error\nServer: x\n\n{\"error\":\"boom\"}")
    add("http1-response", "close-bare-lf-chunked", [0x01], "HTTP/1.1 429 Too Many Requests\nRetry-After: 1\nConnection: close\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n")
    add("http1-response", "head", [0x83], "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")

    // A real HTTP/2 conversation between our client and server engines, 1–4 requests.
    for n in 1...4 {
        let (client, server) = TransportFuzz.h2Conversation(requests: n)
        // h2-server prepends the 24-byte client magic itself.
        seeds.append(("h2-server", "conversation-\(n)", [0x07] + client.dropFirst(TransportFuzz.clientMagicLength)))
        seeds.append(("h2-client", "conversation-\(n)", [0x07, UInt8(n - 1)] + server))
        // The same as frame records (the structure-aware mode: mutations keep frames framed).
        let frames = Array(client.dropFirst(TransportFuzz.clientMagicLength))
        seeds.append(("h2-server", "records-\(n)", [0x47] + TransportFuzz.records(fromFrames: frames)))
        seeds.append(("h2-client", "records-\(n)", [0x07, UInt8(n - 1) | 4] + TransportFuzz.records(fromFrames: server)))
    }
    let (client, _) = TransportFuzz.h2Conversation(requests: 4)
    seeds.append(("h2-server", "conversation-4-split-small-limits", [0x82] + client.dropFirst(TransportFuzz.clientMagicLength)))

    // Spill segments written by the real queue (wal mode, so every record is on disk), as they
    // are (control 0) and with checksum repair (1); and one frame of raw records (7: compressed,
    // counted and checksummed by the entry point).
    for (i, segment) in spillSegments().enumerated() {
        seeds.append(("spill-segment", "segment-\(i)", [0x00] + segment))
        seeds.append(("spill-segment", "segment-\(i)-repair", [0x01] + segment))
    }
    seeds.append(("spill-segment", "raw-records", [0x07] + rawRecordSegment()))

    for s in seeds {
        let path = "\(dir)/\(s.target)"
        mkdir(path, 0o755)
        guard let f = fopen("\(path)/\(s.name)", "wb") else {
            print("cannot write \(path)/\(s.name)")
            return 1
        }
        _ = s.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }
    print("wrote \(seeds.count) seeds below \(dir)")
    return 0
}

/// Segments a wal-mode BackendQueue writes for 60 small records (several frames: 4 KiB frames).
private func spillSegments() -> [[UInt8]] {
    var template = Array("/tmp/fuzz-spill-XXXXXX".utf8CString)
    guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else { return [] }
    var config = QueueConfiguration(backend: "seed", directory: dir, durability: .wal)
    config.frameBytes = 4 << 10
    config.segmentBytes = 16 << 10
    var logger = Logger(label: "fuzz-corpus")
    logger.logLevel = .critical
    guard let queue = try? BackendQueue(configuration: config, logger: logger) else { return [] }
    let done = DispatchGroup()
    for i in 0..<60 {
        done.enter()
        let text = "{\"traceId\":\"\(i)\",\"name\":\"seed-span\",\"tags\":{\"mesh\":\"default\"}}" + String(repeating: " ", count: i * 7)
        queue.enqueue(Record(bytes: Array(text.utf8), spanCount: 1 + i % 3, metadata: i % 2 == 0 ? Array("meta\(i)".utf8) : [])) { _ in done.leave() }
    }
    done.wait()
    queue.shutdown()
    var segments: [[UInt8]] = []
    let backendDir = config.backendDirectory
    let names = ((try? PosixFileSystem().listDirectory(backendDir)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    for name in names {
        guard let f = fopen("\(backendDir)/\(name)", "rb") else { continue }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        fclose(f)
        segments.append(bytes)
        unlink("\(backendDir)/\(name)")
    }
    return segments
}

/// A segment with one frame whose payload is raw (uncompressed) records; checksums and counts
/// are left zero for the entry point's repair modes to fill in.
private func rawRecordSegment() -> [UInt8] {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    let name = Array("seed".utf8)
    var out = Array("TRSPILL".utf8) + [0] + le(UInt16(1)) + le(UInt16(name.count)) + le(UInt64(1_700_000_000_000)) + name + le(UInt32(0))
    var raw: [UInt8] = []
    for seq in UInt64(7)...9 {
        let meta = Array("m\(seq)".utf8), payload = Array("{\"span\":\(seq)}".utf8)
        raw += le(seq) + le(UInt64(1_700_000_000_000)) + le(UInt32(1)) + le(UInt16(meta.count)) + le(UInt32(payload.count)) + meta + payload
    }
    out += le(UInt32(0x5246_5254)) + le(UInt32(raw.count)) + [UInt8](repeating: 0, count: 36) + raw
    return out
}
