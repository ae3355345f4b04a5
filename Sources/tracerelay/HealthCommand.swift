import ArgumentParser
import Dispatch
import Logging
import Synchronization
import Transport

/// `tracerelay health`: asks a relay's admin listener whether it is ready, for container
/// health checks (the image then needs no curl).
struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Ask a running relay whether it is ready: exit 0 when GET /health/ready answers 200, else 1.",
        discussion: "For HEALTHCHECK and probes: `tracerelay health --url http://127.0.0.1:9901/health/ready`.")

    @Option(name: .long, help: ArgumentHelp("URL of the admin listener's readiness endpoint.", valueName: "url"))
    var url: String = "http://127.0.0.1:9901/health/ready"

    @Option(name: .long, help: "Seconds to wait for the answer.")
    var timeout: Double = 3

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        do { _ = try ClientEndpoint(url: url) } catch { throw ValidationError("--url \(url): \(error)") }
    }

    func run() throws {
        let endpoint = try ClientEndpoint(url: url)
        var config = HTTPClientConfiguration()
        config.connectTimeout = timeout
        config.responseTimeout = timeout
        config.poolSize = 1
        var quiet = Logger(label: "tracerelay.health")
        quiet.logLevel = .critical
        let group = EventLoopGroup(loopCount: 1)
        let client = HTTPClient(endpoint: endpoint, configuration: config, group: group, logger: quiet)
        defer { client.shutdown() }
        let answer = Mutex<Result<ClientResponse, ClientError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        client.send(ClientRequest(method: "GET", path: endpoint.path)) { r in
            answer.withLock { $0 = r }
            done.signal()
        }
        // The client's own timeouts answer first; this only guards against a lost completion.
        guard done.wait(timeout: .now() + .milliseconds(Int(timeout * 2000) + 1000)) == .success,
              let result = answer.withLock({ $0 }) else {
            printError("tracerelay health: no answer from \(url) within \(timeout) s")
            throw ExitCode(1)
        }
        switch result {
        case .success(let r) where r.status == 200:
            print("ready (\(url))")
        case .success(let r):
            printError("tracerelay health: \(url) answered \(r.status): \(String(decoding: r.body.prefix(500), as: UTF8.self))")
            throw ExitCode(1)
        case .failure(let e):
            printError("tracerelay health: \(url): \(e)")
            throw ExitCode(1)
        }
    }
}
