import Foundation

/// Certificates made with the `openssl` CLI at test time, once per test process, into a
/// temporary directory: a CA, a server certificate for `localhost` (DNS SAN, plus IP 127.0.0.1),
/// a client certificate with the SPIFFE URI `spiffe://default/zone-eu-1/svc`, a second CA with
/// its own client and server certificates (the "wrong CA"), and expired server and client
/// certificates signed by the right CA. Shared by the TLS, Transport and Relay tests.
public struct TestCertificates: Sendable {
    public let directory: String
    public func path(_ name: String) -> String { directory + "/" + name }

    public var caFile: String { path("ca.pem") }
    public var serverCert: String { path("server.pem") }
    public var serverKey: String { path("server.key") }
    public var clientCert: String { path("client.pem") }
    public var clientKey: String { path("client.key") }
    public var otherCAFile: String { path("other-ca.pem") }
    public var otherServerCert: String { path("other-server.pem") }
    public var otherServerKey: String { path("other-server.key") }
    public var otherClientCert: String { path("other-client.pem") }
    public var otherClientKey: String { path("other-client.key") }
    public var expiredServerCert: String { path("expired-server.pem") }
    public var expiredServerKey: String { path("expired-server.key") }
    public var expiredClientCert: String { path("expired-client.pem") }
    public var expiredClientKey: String { path("expired-client.key") }

    public static let clientURI = "spiffe://default/zone-eu-1/svc"
    public static let openssl = "/usr/bin/openssl"

    /// Made on first use; a failure to make them fails every test that asks.
    public static let shared: Result<TestCertificates, CertificateError> = Result { () throws(CertificateError) in try make() }

    public static func get() throws -> TestCertificates { try shared.get() }

    public struct CertificateError: Error, CustomStringConvertible {
        public let description: String
    }

    private static func make() throws(CertificateError) -> TestCertificates {
        let dir = NSTemporaryDirectory() + "tracerelay-tls-\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch { throw CertificateError(description: "cannot create \(dir): \(error)") }
        let c = TestCertificates(directory: dir)
        try c.makeCA("ca", subject: "/CN=tracerelay test CA")
        try c.makeCA("other-ca", subject: "/CN=some other CA")
        try c.issue("server", by: "ca", subject: "/CN=localhost", days: 30, extensions: [
            "subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"])
        try c.issue("client", by: "ca", subject: "/CN=zone-eu-1 collector", days: 30, extensions: [
            "subjectAltName=URI:\(clientURI),DNS:collector.zone-eu-1.mesh", "extendedKeyUsage=clientAuth"])
        try c.issue("other-server", by: "other-ca", subject: "/CN=localhost", days: 30, extensions: [
            "subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"])
        try c.issue("other-client", by: "other-ca", subject: "/CN=intruder", days: 30, extensions: [
            "subjectAltName=URI:spiffe://default/zone-us-1/svc", "extendedKeyUsage=clientAuth"])
        // -days -1: valid from now, expired since yesterday.
        try c.issue("expired-server", by: "ca", subject: "/CN=localhost", days: -1, extensions: [
            "subjectAltName=DNS:localhost", "extendedKeyUsage=serverAuth"])
        try c.issue("expired-client", by: "ca", subject: "/CN=old collector", days: -1, extensions: [
            "subjectAltName=URI:spiffe://default/zone-eu-1/old", "extendedKeyUsage=clientAuth"])
        return c
    }

    private func makeCA(_ name: String, subject: String) throws(CertificateError) {
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", path("\(name).key"), "-out", path("\(name).pem"), "-days", "30", "-subj", subject])
    }

    private func issue(_ name: String, by ca: String, subject: String, days: Int, extensions: [String]) throws(CertificateError) {
        let ext = path("\(name).ext")
        do {
            try (extensions + ["basicConstraints=CA:FALSE"]).joined(separator: "\n")
                .write(toFile: ext, atomically: true, encoding: .utf8)
        } catch { throw CertificateError(description: "cannot write \(ext): \(error)") }
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", subject])
        try Self.openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
                          "-CAcreateserial", "-out", path("\(name).pem"), "-days", String(days), "-extfile", ext])
    }

    private static func openssl(_ arguments: [String]) throws(CertificateError) {
        let r: (status: Int32, output: String)
        do { r = try Tool.run(Self.openssl, arguments) } catch { throw CertificateError(description: "openssl: \(error)") }
        if r.status != 0 {
            throw CertificateError(description: "openssl \(arguments.joined(separator: " ")) failed: \(r.output)")
        }
    }
}
