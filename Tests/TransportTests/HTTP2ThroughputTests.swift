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
    /// utime + stime of this process (the server; h2load is a child and not counted).
    static func processCPUSeconds() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After "(comm)": state is field 3, utime 14 and stime 15 → offsets 11 and 12 here.
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

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
            let cpuBefore = Self.processCPUSeconds()
            let r = try HTTP2ServerSocketTests.run(HTTP2ServerSocketTests.h2load,
                                                   ["-c", "32", "-t", "1", "-D", duration, "-d", file.path] + extra + [url])
            let summary = r.output.split(separator: "\n").filter {
                $0.hasPrefix("finished in") || $0.hasPrefix("requests:") || $0.hasPrefix("status codes:") || $0.hasPrefix("traffic:")
            }
            let cpu = Self.processCPUSeconds() - cpuBefore
            let done = r.output.split(separator: "\n").first { $0.hasPrefix("requests:") }
                .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Double($0) } ?? 0
            print("[h2load] \(label):\n  " + summary.joined(separator: "\n  ")
                  + "\n  server CPU \(cpu) s → \(Int(done / max(cpu, 0.001))) req per server CPU-second")
            #expect(r.status == 0)
            #expect(r.output.contains(" 0 failed, 0 errored"), "\(r.output)")
        }
    }
}
