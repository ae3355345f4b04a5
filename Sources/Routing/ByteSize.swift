import Basics

/// A byte size as configuration writes it: an integer, or a number with a unit — decimal (k/KB,
/// M/MB, G/GB) or binary (Ki/KiB, Mi/MiB, Gi/GiB), case-insensitive. Nil when it is not one or
/// does not fit.
func parseByteSize(_ text: String) -> Int? {
    let t = text.trimmingOWS()
    var digits = Substring(t)
    var unit = Substring("")
    if let i = t.firstIndex(where: { !($0.isNumber || $0 == ".") }) {
        digits = t[..<i]
        unit = t[i...].trimmingOWS()
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
