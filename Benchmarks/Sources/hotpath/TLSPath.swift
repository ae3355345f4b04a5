import BenchFixtures
import Glibc
import TLS

/// The `tls-roundtrip` path: a Zipkin JSON body through two `TLSEngine`s, as an HTTPS ingest
/// connection moves it — the client encrypts it, the server decrypts it from 64 KiB reads with
/// the zero-copy `feed(_:into:deliver:)`, and a short answer goes back. The handshake is done
/// once, in the set-up.
enum TLSPath {
    /// A throwaway self-signed P-256 certificate for `localhost` (valid to 2126), for this
    /// benchmark only: nothing trusts it.
    static let certificate = """
        -----BEGIN CERTIFICATE-----
        MIIBlDCCATugAwIBAgIUTXa3lbla/0st2Y/+5qsLVbgQGx0wCgYIKoZIzj0EAwIw
        FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTIzMDAyNVoYDzIxMjYxMTA3
        MjMwMDI1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
        PQMBBwNCAAROOZ4nJm7kqGTs3VJpAUgd95aLHKDP5HGA+tnAuplHGGWSyTq+8QpH
        Vyu/8caaw2Tt6Bw/Nx/y0FCS+aqNMeDYo2kwZzAdBgNVHQ4EFgQUYmqwo7oIM1Cp
        F0WfZ5675odKZ1gwHwYDVR0jBBgwFoAUYmqwo7oIM1CpF0WfZ5675odKZ1gwDwYD
        VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZIzj0EAwID
        RwAwRAIgLK7XTvy9/lZiCbeiZox0dq1Atdfc9qBwGTMkhMB9HkACIACJG+umt3ge
        jZQKUczbxRYvUi8d6duHxftyhd/gfdfD
        -----END CERTIFICATE-----

        """
    static let privateKey = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2V5dBVktThom6Swd
        x+qNS3omNkfwLg3odH9KZOw/lPShRANCAAROOZ4nJm7kqGTs3VJpAUgd95aLHKDP
        5HGA+tnAuplHGGWSyTq+8QpHVyu/8caaw2Tt6Bw/Nx/y0FCS+aqNMeDY
        -----END PRIVATE KEY-----

        """

    static func roundTrip(spans: Int) -> () -> Int {
        let cert = temporaryFile(certificate), key = temporaryFile(privateKey)
        defer { unlink(cert); unlink(key) }
        let server = try! TLSEngine(server: TLSContext(.server(certificateChain: cert, privateKey: key, alpn: ["http/1.1"])))
        let client = try! TLSEngine(client: TLSContext(.client(caFile: cert, alpn: ["http/1.1"])), serverName: "localhost")
        // Handshake: shuttle until both are established.
        for _ in 0..<10 where client.state == .handshaking || server.state == .handshaking {
            _ = server.feed(client.drainCiphertext())
            _ = client.feed(server.drainCiphertext())
        }
        precondition(client.state == .established && server.state == .established, "TLS handshake failed")
        let body = ZipkinFixtures.v2JSON(spans: spans).body
        let answer = Array("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".utf8)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        var wire: [UInt8] = []
        var back: [UInt8] = []
        return {
            try! client.write(body)
            wire.removeAll(keepingCapacity: true)
            client.drainCiphertext(into: &wire)
            var received = 0
            wire.withUnsafeBytes { all in
                var at = 0
                while at < all.count { // socket reads of 64 KiB
                    let n = min(64 << 10, all.count - at)
                    server.feed(UnsafeRawBufferPointer(rebasing: all[at..<at + n]), into: scratch) { received += $0.count; return true }
                    at += n
                }
            }
            try! server.write(answer)
            back.removeAll(keepingCapacity: true)
            let answerWire = server.drainCiphertext()
            _ = answerWire.withUnsafeBytes { client.feed($0, plaintext: &back) }
            precondition(received == body.count && back.count == answer.count, "TLS round trip lost bytes")
            return received
        }
    }

    private static func temporaryFile(_ text: String) -> String {
        var template = Array("/tmp/hotpath-tls.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0, "mkstemp failed")
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress!, $0.count - 1) }
        close(fd)
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
