import Foundation
import Logging
import Testing
@testable import Transport

/// A bounded h2load run against a real server, for a throughput figure; off unless
/// `TRACERELAY_H2LOAD=1` is set (run it in release: see the report/README of the branch).
/// It prints h2load's summary for h2c prior knowledge and, as the reference measured in the
/// same run, HTTP/1.1 on the same server with the same client.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["TRACERELAY_H2LOAD"] != nil))
struct HTTP2ThroughputTests {
    @Test func h2loadThroughput() throws {
        let duration = ProcessInfo.processInfo.environment["TRACERELAY_H2LOAD_SECONDS"] ?? "5"
        let handler = ClosureHandler { request, respond in
            respond(HTTPResponse(status: request.body.count == 50_000 ? 202 : 400))
        }
        let server = HTTPServer(configuration: HTTPServerConfiguration(), handler: handler, logger: Logger(label: "test.h2.load"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        defer { server.shutdownAndWait(grace: .seconds(2)) }
        let url = "http://127.0.0.1:\(server.boundPorts[0])/upload"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("h2load-body-\(getpid()).json")
        try Data((0..<50_000).map { UInt8(ascii: "a") + UInt8($0 % 26) }).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        for (label, extra) in [("h2c prior knowledge -c 32 -m 10", ["-m", "10"]), ("HTTP/1.1 reference -c 32", ["--h1"])] {
            let r = try HTTP2ServerSocketTests.run(HTTP2ServerSocketTests.h2load,
                                                   ["-c", "32", "-t", "1", "-D", duration, "--warm-up-time=1", "-d", file.path] + extra + [url])
            let summary = r.output.split(separator: "\n").filter {
                $0.hasPrefix("finished in") || $0.hasPrefix("requests:") || $0.hasPrefix("status codes:") || $0.hasPrefix("traffic:")
            }
            print("[h2load] \(label):\n  " + summary.joined(separator: "\n  "))
            #expect(r.status == 0)
            #expect(r.output.contains(" 0 failed, 0 errored"), "\(r.output)")
        }
    }
}
