internal import Yams
import Basics

/// One value of a configuration document — a Yams node — with its path in the document and its
/// line, read through typed accessors (`string()`, `int(in:)`, `byteSize()`, `map()` …) that report
/// a problem to the file's `IssueSink` and return nil, so every error names where it is.
package struct ConfigNode {
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
        guard case .scalar(let s) = node, let v = Double(s.string.trimmingOWS()), v.isFinite else {
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
        guard case .scalar(let s) = node, let v = Int(s.string.trimmingOWS()) else {
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
        let t = sc.string.trimmingOWS()
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

    package func map() -> ConfigMapping? {
        guard case .mapping(let m) = node else {
            if isNull { return ConfigMapping(pairs: [], path: path, line: line, sink: sink) }
            error(.invalidValue, "expected a mapping, got \(kindName)")
            return nil
        }
        var pairs: [(String, ConfigNode)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else { error(.invalidValue, "mapping keys must be strings"); continue }
            pairs.append((ks.string, ConfigNode(node: v, path: child(ks.string), sink: sink)))
        }
        return ConfigMapping(pairs: pairs, path: path, line: line, sink: sink)
    }

    package func list() -> [ConfigNode]? {
        guard case .sequence(let seq) = node else {
            if isNull { return [] }
            error(.invalidValue, "expected a list, got \(kindName)")
            return nil
        }
        return seq.enumerated().map { ConfigNode(node: $0.element, path: "\(path)[\($0.offset)]", sink: sink) }
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

/// A mapping of a configuration document being read. Remembers which keys were read so the rest can be reported as
/// unknown fields (a warning each; Kuma and tracerelay ignore them).
package final class ConfigMapping {
    package let pairs: [(String, ConfigNode)]
    package let path: String
    package let line: Int?
    package let sink: IssueSink
    package var used: Set<String> = []

    package init(pairs: [(String, ConfigNode)], path: String, line: Int?, sink: IssueSink) {
        self.pairs = pairs
        self.path = path
        self.line = line
        self.sink = sink
    }

    package func has(_ key: String) -> Bool { pairs.contains { $0.0 == key } }

    /// The value for `key`; nil when absent or null. Marks the key as known.
    package subscript(_ key: String) -> ConfigNode? {
        used.insert(key)
        guard let v = pairs.first(where: { $0.0 == key })?.1, !v.isNull else { return nil }
        return v
    }

    package func required(_ key: String, _ what: String) -> ConfigNode? {
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

/// A number for messages: integral values without a fraction.
func fmt(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
}
