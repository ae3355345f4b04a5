/// Writes HTTP/1.1 responses: status line, the handler's headers minus the ones the framing
/// owns (`Content-Length`, `Connection`, `Date`, `Transfer-Encoding`), then those.
enum HTTP1ResponseSerializer {
    static let continueResponse: StaticString = "HTTP/1.1 100 Continue\r\n\r\n"
    static let switchingToH2C: StaticString = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"

    /// Appends `r` to `out`. `isHead`: no body bytes (the length still describes the body);
    /// `close`: `Connection: close`; HTTP/1.0 keep-alive is confirmed.
    static func append(_ r: HTTPResponse, isHead: Bool, close: Bool, version: HTTPVersion, to out: inout ByteQueue) {
        out.reserveCapacity(out.count + 160 + r.body.count)
        out.append(contentsOf: "HTTP/1.1 \(r.status) \(reasonPhrase(r.status))\r\n".utf8)
        for (name, value) in r.headers {
            let lower = name.lowercased()
            if lower == "content-length" || lower == "connection" || lower == "date" || lower == "transfer-encoding" { continue }
            out.append(contentsOf: name.utf8)
            out.append(0x3A); out.append(0x20)
            out.append(contentsOf: value.utf8)
            out.append(0x0D); out.append(0x0A)
        }
        let bodyAllowed = !(r.status < 200 || r.status == 204 || r.status == 304)
        if bodyAllowed {
            out.append(contentsOf: "Content-Length: \(r.body.count)\r\n".utf8)
        }
        out.append(contentsOf: HTTPDate.headerLine())
        if close {
            out.append("Connection: close\r\n")
        } else if version == .http1_0 {
            out.append("Connection: keep-alive\r\n")
        }
        out.append(0x0D); out.append(0x0A)
        if bodyAllowed && !isHead { out.append(contentsOf: r.body) }
    }
}
