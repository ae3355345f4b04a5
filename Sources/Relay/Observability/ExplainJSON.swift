import Basics
import Routing

/// The JSON answer of `tracerelay explain --json` and `GET /api/routes`: one object with the
/// backend, the matched resource, the region and sampling decisions and the reasons.
public func explanationJSON(_ e: Explanation) -> String {
    func str(_ s: String?) -> String { s.map(jsonQuoted) ?? "null" }
    func obj(_ pairs: [TagPair]) -> String { "{" + pairs.map { jsonQuoted($0.key) + ":" + jsonQuoted($0.value) }.joined(separator: ",") + "}" }
    var f: [String] = []
    f.append("\"backend\":" + str(e.backend))
    f.append("\"matched\":" + (e.matched.map { "{\"type\":\(jsonQuoted($0.type)),\"name\":\(jsonQuoted($0.name))}" } ?? "null"))
    f.append("\"region\":" + str(e.region))
    f.append("\"refused\":" + str(e.refused))
    f.append("\"sampled\":" + (e.sampled ? "true" : "false"))
    f.append("\"selectedBackend\":" + str(e.selectedBackend))
    f.append("\"backendRegion\":" + str(e.backendRegion))
    f.append("\"fallback\":" + (e.decision.usedFallback ? "true" : "false"))
    f.append("\"samplingReason\":" + jsonQuoted(e.samplingReason))
    f.append("\"addedTags\":" + obj(e.addedTags))
    f.append("\"tags\":" + obj(e.resolvedTags))
    f.append("\"candidates\":[" + e.candidates.map {
        "{\"type\":\(jsonQuoted($0.resource.type)),\"name\":\(jsonQuoted($0.resource.name)),\"matched\":\($0.matched),\"detail\":\(jsonQuoted($0.detail))}"
    }.joined(separator: ",") + "]")
    f.append("\"reasons\":[" + e.notes.map(jsonQuoted).joined(separator: ",") + "]")
    return "{" + f.joined(separator: ",") + "}"
}

/// The question of `GET /api/routes?tag=k=v&tag=…&request_tag=k=v&trace_id=hex&debug=1&sampling_priority=n`,
/// parsed from the query string (values percent-decoded; `+` is a space).
struct RouteQuery: Equatable {
    var tags: [TagPair] = []
    var requestTags: [TagPair] = []
    var traceID: String?
    var debug = false
    var samplingPriority: Int8?

    /// Parses `query`; throws a message naming the parameter that is wrong.
    init(query: String) throws(RouteQueryError) {
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let eq = part.utf8.firstIndex(of: UInt8(ascii: "=")) // bytes: "=" + a combining mark is one Character
            let name = Self.decode(eq.map { part[..<$0] } ?? part[...])
            let value = eq.map { Self.decode(part[part.utf8.index(after: $0)...]) } ?? ""
            switch name {
            case "tag", "request_tag":
                guard let i = value.utf8.firstIndex(of: UInt8(ascii: "=")), i != value.startIndex else {
                    throw RouteQueryError(message: "\(name) expects key=value, got '\(value)'")
                }
                let pair = TagPair(String(value[..<i]), String(value[value.utf8.index(after: i)...]))
                if name == "tag" { tags.append(pair) } else { requestTags.append(pair) }
            case "trace_id": traceID = value
            case "debug": debug = value == "1" || value == "true" || value.isEmpty
            case "sampling_priority":
                guard let p = Int8(value) else { throw RouteQueryError(message: "sampling_priority expects -128...127, got '\(value)'") }
                samplingPriority = p
            default:
                throw RouteQueryError(message: "unknown parameter '\(name)'; use tag, request_tag, trace_id, debug, sampling_priority")
            }
        }
    }

    /// Percent-decoding of one query component; an invalid escape stays as written.
    static func decode(_ s: Substring) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == UInt8(ascii: "+") { out.append(UInt8(ascii: " ")); continue }
            if c == UInt8(ascii: "%"), it.count >= 2, let h = hexDigitValue(it[it.startIndex]), let l = hexDigitValue(it[it.startIndex + 1]) {
                out.append(h << 4 | l)
                it = it.dropFirst(2)
                continue
            }
            out.append(c)
        }
        return String(decoding: out, as: UTF8.self)
    }
}

struct RouteQueryError: Error { var message: String }
