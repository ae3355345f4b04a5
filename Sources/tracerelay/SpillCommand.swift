import Basics
import ArgumentParser
import Buffering
import Codecs
import Glibc

/// Prints the spans of a `file` backend's directory (zstd NDJSON segments, oldest first).
/// Returns false when the directory holds no such file (then it is a spill directory).
func catSpanFiles(_ directory: String) throws -> Bool {
    guard let dir = opendir(directory) else { return false }
    var names: [String] = []
    while let e = readdir(dir) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name.hasPrefix("spans-") && name.hasSuffix(".ndjson.zst") { names.append(name) }
    }
    closedir(dir)
    guard !names.isEmpty else { return false }
    for name in names.sorted() {
        let path = directory + "/" + name
        guard let f = fopen(path, "rb") else { throw ValidationError("cannot open \(path)") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        fclose(f)
        do {
            let text = try ContentDecoding.decode(bytes, contentEncoding: "zstd",
                                                  limits: DecompressionLimits(maxBytes: 1 << 36, maxRatio: 1 << 20))
            text.withUnsafeBytes { p in var off = 0; while off < p.count { let n = write(1, p.baseAddress! + off, p.count - off); if n <= 0 { break }; off += n } }
        } catch {
            FileHandleLike.stderr("BAD \(path): \(error)\n")
        }
    }
    return true
}

enum FileHandleLike {
    static func stderr(_ s: String) {
        var s = s
        s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

/// `tracerelay spill ls|verify|cat DIR`: inspect spill segments without a running relay.
/// DIR is the spill directory (one folder per backend) or one backend's folder.
struct SpillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spill",
        abstract: "Inspect spill segments (read-only).",
        subcommands: [List.self, Verify.self, Cat.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Segments: records, spans, bytes, ratio, oldest age.")
        @Argument(help: "Spill directory or one backend's directory.") var directory: String

        func run() throws {
            let segments = try SpillInspector.list(directory)
            let now = Clock.wallMillis()
            print(pad("SEGMENT", 48), pad("BACKEND", 14), pad("FRAMES", 7), pad("RECORDS", 9), pad("SPANS", 10),
                  pad("INPUT", 10), pad("ON DISK", 10), pad("RATIO", 6), pad("AGE", 8), "STATUS")
            var totals = (records: 0, spans: 0, raw: 0, disk: 0)
            var oldest: UInt64? = nil
            for s in segments {
                let age = s.createdAtMillis > 0 && now > s.createdAtMillis ? Double(now - s.createdAtMillis) / 1000 : 0
                let status = s.error ?? (s.tornTail ? "torn tail" : s.damagedRegions > 0 ? "\(s.damagedRegions) damaged" : "ok")
                print(pad(tail(s.path, 48), 48), pad(s.backend, 14), pad("\(s.frames)", 7), pad("\(s.records)", 9), pad("\(s.spans)", 10),
                      pad(bytes(s.rawBytes), 10), pad(bytes(s.fileBytes), 10), pad(fixed(s.ratio, 2), 6), pad(duration(age), 8), status)
                totals.records += s.records
                totals.spans += s.spans
                totals.raw += s.rawBytes
                totals.disk += s.fileBytes
                if s.createdAtMillis > 0 { oldest = min(oldest ?? .max, s.createdAtMillis) }
            }
            let ratio = totals.disk > 0 ? Double(totals.raw) / Double(totals.disk) : 0
            let age = oldest.map { now > $0 ? Double(now - $0) / 1000 : 0 } ?? 0
            print("\(segments.count) segments, \(totals.records) records, \(totals.spans) spans, \(bytes(totals.raw)) input in \(bytes(totals.disk)) (ratio \(fixed(ratio, 2))), oldest \(duration(age))")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "verify", abstract: "Check every frame's checksums and decompress it; exit 1 on any problem.")
        @Argument(help: "Spill directory or one backend's directory.") var directory: String

        func run() throws {
            let (frames, problems) = try SpillInspector.verify(directory)
            for p in problems { print("BAD \(p)") }
            print("\(frames) frames ok, \(problems.count) problems")
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Cat: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cat", abstract: "Dump records as JSON lines (damaged frames are reported on stderr).")
        @Argument(help: "Spill directory or one backend's directory; or a `file` backend's directory (its spans-*.ndjson.zst files are printed, oldest first).") var directory: String

        func run() throws {
            if try catSpanFiles(directory) { return }
            let problems = try SpillInspector.dump(directory) { print($0) }
            for p in problems { writeStderr("BAD \(p)\n") }
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
private func tail(_ s: String, _ n: Int) -> String { s.count <= n ? s : "…" + s.suffix(n - 1) }

private func fixed(_ x: Double, _ digits: Int) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let v = (x * p).rounded() / p
    var s = "\(v)"
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    }
    return s
}

private func bytes(_ n: Int) -> String {
    let d = Double(n)
    if n >= 1 << 30 { return fixed(d / Double(1 << 30), 1) + " GiB" }
    if n >= 1 << 20 { return fixed(d / Double(1 << 20), 1) + " MiB" }
    if n >= 1 << 10 { return fixed(d / Double(1 << 10), 1) + " KiB" }
    return "\(n) B"
}

private func duration(_ s: Double) -> String {
    if s >= 3600 { return fixed(s / 3600, 1) + "h" }
    if s >= 60 { return fixed(s / 60, 1) + "m" }
    return fixed(s, 1) + "s"
}

private func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
