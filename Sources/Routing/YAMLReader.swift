internal import Yams

/// Collects findings while one file is read; shared by the readers of all its documents.
package final class IssueSink {
    package var issues: [ConfigIssue] = []
    package var document: Int? = nil
    package var resource: String? = nil

    package func add(_ sev: ConfigIssue.Severity, _ code: ConfigIssue.Code, _ path: String, _ line: Int?, _ msg: String) {
        issues.append(ConfigIssue(sev, code, document: document, resource: resource, path: path, line: line, message: msg))
    }
    package var hasErrors: Bool { issues.contains { $0.severity == .error } }
}

/// A YAML value with its path in the document, so every error names where it is.
package struct YValue {
    let node: Node
    package let path: String
    package let sink: IssueSink

    package var line: Int? { node.mark?.line }

    package func child(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    package func error(_ code: ConfigIssue.Code, _ msg: String) { sink.add(.error, code, path, line, msg) }

    package var kindName: String {
        switch node {
        case .scalar(let s): s.string.isEmpty || s.string == "~" || s.string == "null" ? "null" : "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    package var isNull: Bool {
        if case .scalar(let s) = node, s.style == .plain, ["", "~", "null", "Null", "NULL"].contains(s.string) { return true }
        return false
    }

    /// A scalar as text; reports an error and returns nil for a mapping or list.
    package func string() -> String? {
        guard case .scalar(let s) = node else { error(.invalidValue, "expected a string, got \(kindName)"); return nil }
        return s.string
    }

    package func nonEmptyString() -> String? {
        guard let s = string() else { return nil }
        if s.isEmpty { error(.invalidValue, "expected a non-empty string"); return nil }
        return s
    }

    package func double(in range: ClosedRange<Double>? = nil) -> Double? {
        guard case .scalar(let s) = node, let v = Double(s.string.trimmingSpaces), v.isFinite else {
            error(.invalidValue, "expected a number" + (range.map { " in \(fmt($0.lowerBound))...\(fmt($0.upperBound))" } ?? "") + ", got \(describe)")
            return nil
        }
        if let range, !range.contains(v) {
            error(.invalidValue, "expected a number in \(fmt(range.lowerBound))...\(fmt(range.upperBound)), got \(fmt(v))")
            return nil
        }
        return v
    }

    package func int(in range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let s) = node, let v = Int(s.string.trimmingSpaces) else {
            error(.invalidValue, "expected an integer in \(range.lowerBound)...\(range.upperBound), got \(describe)")
            return nil
        }
        guard range.contains(v) else {
            error(.invalidValue, "expected an integer in \(range.lowerBound)...\(range.upperBound), got \(v)")
            return nil
        }
        return v
    }

    package func bool() -> Bool? {
        if case .scalar(let s) = node {
            switch s.string {
            case "true", "True", "TRUE", "yes", "on": return true
            case "false", "False", "FALSE", "no", "off": return false
            default: break
            }
        }
        error(.invalidValue, "expected true or false, got \(describe)")
        return nil
    }

    /// A byte size: an integer or a number with a unit (KB, MB, GB, KiB, MiB, GiB).
    package func byteSize() -> Int? {
        guard case .scalar(let s) = node else { error(.invalidValue, "expected a byte size like 64MiB, got \(kindName)"); return nil }
        if let v = parseByteSize(s.string) { return v }
        error(.invalidValue, "expected a byte size like 67108864, 64MB or 64MiB, got '\(s.string)'")
        return nil
    }

    /// A duration in seconds: an integer (seconds) or a number with a unit (s, m, h, d).
    package func durationSeconds() -> Int? {
        guard case .scalar(let sc) = node else { error(.invalidValue, "expected a duration like 24h, got \(kindName)"); return nil }
        let t = sc.string
        let units: [(String, Int)] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)]
        if let v = Int(t), v >= 0 { return v }
        for (u, mult) in units where t.hasSuffix(u) {
            if let v = Int(t.dropLast(u.count)), v >= 0 { return v * mult }
        }
        error(.invalidValue, "expected a duration like 3600, 90m, 24h or 7d, got '\(t)'")
        return nil
    }

    /// A duration in milliseconds: an integer (seconds) or a number with a unit (ms, s, m, h).
    package func durationMillis() -> Int? {
        guard case .scalar(let sc) = node else { error(.invalidValue, "expected a duration like 200ms, got \(kindName)"); return nil }
        let t = sc.string.trimmingSpaces
        if let v = Double(t), v >= 0 { return Int(v * 1000) }
        for (u, mult) in [("ms", 1.0), ("s", 1000.0), ("m", 60_000.0), ("h", 3_600_000.0)] where t.hasSuffix(u) {
            if let v = Double(t.dropLast(u.count)), v >= 0 { return Int(v * mult) }
        }
        error(.invalidValue, "expected a duration like 200ms, 5s or 2m, got '\(t)'")
        return nil
    }

    /// Whether the value is a scalar (not a mapping or a list).
    package var isScalar: Bool { if case .scalar = node { return true }; return false }

    package var describe: String {
        if case .scalar(let s) = node { return "'\(s.string)'" }
        return kindName
    }

    package func map() -> YMap? {
        guard case .mapping(let m) = node else {
            if isNull { return YMap(pairs: [], path: path, line: line, sink: sink) }
            error(.invalidValue, "expected a mapping, got \(kindName)")
            return nil
        }
        var pairs: [(String, YValue)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else { error(.invalidValue, "mapping keys must be strings"); continue }
            pairs.append((ks.string, YValue(node: v, path: child(ks.string), sink: sink)))
        }
        return YMap(pairs: pairs, path: path, line: line, sink: sink)
    }

    package func list() -> [YValue]? {
        guard case .sequence(let seq) = node else {
            if isNull { return [] }
            error(.invalidValue, "expected a list, got \(kindName)")
            return nil
        }
        return seq.enumerated().map { YValue(node: $0.element, path: "\(path)[\($0.offset)]", sink: sink) }
    }

    /// A mapping of strings to strings (tags, zone maps), in file order.
    package func stringPairs() -> [TagPair]? {
        guard let m = map() else { return nil }
        var out: [TagPair] = []
        for (k, v) in m.pairs {
            m.used.insert(k)
            if let s = v.string() { out.append(TagPair(k, s)) }
        }
        return out
    }
}

/// A YAML mapping being read. Remembers which keys were read so the rest can be reported as
/// unknown fields (a warning each; Kuma and tracerelay ignore them).
package final class YMap {
    package let pairs: [(String, YValue)]
    package let path: String
    package let line: Int?
    package let sink: IssueSink
    package var used: Set<String> = []

    package init(pairs: [(String, YValue)], path: String, line: Int?, sink: IssueSink) {
        self.pairs = pairs
        self.path = path
        self.line = line
        self.sink = sink
    }

    package func has(_ key: String) -> Bool { pairs.contains { $0.0 == key } }

    /// The value for `key`; nil when absent or null. Marks the key as known.
    package subscript(_ key: String) -> YValue? {
        used.insert(key)
        guard let v = pairs.first(where: { $0.0 == key })?.1, !v.isNull else { return nil }
        return v
    }

    package func required(_ key: String, _ what: String) -> YValue? {
        if let v = self[key] { return v }
        sink.add(.error, .missingField, path.isEmpty ? key : path + "." + key, line, "missing required field '\(key)' (\(what))")
        return nil
    }

    package func ignore(_ keys: String...) { used.formUnion(keys) }

    /// Warns about every key not read, naming the field.
    package func finish() {
        for (k, v) in pairs where !used.contains(k) {
            sink.add(.warning, .unknownField, v.path, v.line, "unknown field '\(k)' ignored")
        }
    }
}

func fmt(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

func parseByteSize(_ text: String) -> Int? {
    let t = text.trimmingSpaces
    var digits = Substring(t)
    var unit = Substring("")
    if let i = t.firstIndex(where: { !($0.isNumber || $0 == ".") }) {
        digits = t[..<i]
        unit = t[i...].trimmingSpaces
    }
    guard let n = Double(digits), n >= 0 else { return nil }
    let mult: Double
    switch unit.lowercased() {
    case "", "b": mult = 1
    case "kb", "k": mult = 1e3
    case "mb", "m": mult = 1e6
    case "gb", "g": mult = 1e9
    case "kib", "ki": mult = 1024
    case "mib", "mi": mult = 1024 * 1024
    case "gib", "gi": mult = 1024 * 1024 * 1024
    default: return nil
    }
    let v = n * mult
    guard v < 9e18 else { return nil }
    return Int(v)
}

/// RFC 3339 time (`2024-01-02T03:04:05.5Z`, `+02:00` offsets) → nanoseconds since the epoch.
/// Kuma writes `creationTime`/`modificationTime` this way; only their order matters here.
func parseRFC3339(_ text: String) -> Int64? {
    let b = Array(text.utf8)
    func num(_ r: Range<Int>) -> Int? {
        guard r.upperBound <= b.count else { return nil }
        var v = 0
        for i in r { guard b[i] >= 48, b[i] <= 57 else { return nil }; v = v * 10 + Int(b[i] - 48) }
        return v
    }
    guard b.count >= 19, b[4] == 45, b[7] == 45, b[10] == 84 || b[10] == 116 || b[10] == 32, b[13] == 58, b[16] == 58,
          let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16), let s = num(17..<19),
          (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61 else { return nil }
    var i = 19
    var nanos: Int64 = 0
    if i < b.count, b[i] == 46 {
        i += 1
        var digits = 0
        while i < b.count, b[i] >= 48, b[i] <= 57 {
            if digits < 9 { nanos = nanos * 10 + Int64(b[i] - 48); digits += 1 }
            i += 1
        }
        guard digits > 0 else { return nil }
        while digits < 9 { nanos *= 10; digits += 1 }
    }
    var offset = 0
    if i < b.count, b[i] == 90 || b[i] == 122 { i += 1 }
    else if i < b.count, b[i] == 43 || b[i] == 45 {
        guard let oh = num((i + 1)..<(i + 3)), i + 3 < b.count, b[i + 3] == 58, let om = num((i + 4)..<(i + 6)) else { return nil }
        offset = (oh * 60 + om) * 60 * (b[i] == 43 ? 1 : -1)
        i += 6
    } else { return nil }
    guard i == b.count else { return nil }
    // Days from civil (Howard Hinnant's algorithm).
    let yy = mo <= 2 ? y - 1 : y
    let era = (yy >= 0 ? yy : yy - 399) / 400
    let yoe = yy - era * 400
    let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146097 + doe - 719468
    let secs = Int64(days) * 86400 + Int64(h * 3600 + mi * 60 + s - offset)
    return secs * 1_000_000_000 + nanos
}
