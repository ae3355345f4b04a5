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
