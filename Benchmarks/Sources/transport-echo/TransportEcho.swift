import Dispatch
import Logging
import TLS
import Transport
#if canImport(Glibc)
import Glibc
#endif

/// A bare `HTTPServer` for Benchmarks/http-vs-nginx.sh: `POST /api/v2/spans` → 202 once the
/// body is read, nothing else.
/// Usage: transport-echo --listen HOST:PORT [--listen …] [--loops N] [--shared-queues]
///        [--event-mode dispatchSources|epollPerLoop] [--tls-cert PEM --tls-key PEM]
/// With a certificate every listener serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN).
enum TransportEcho {
    static func main() {
        var listens: [String] = []
        var cert: String?, key: String?
        var config = HTTPServerConfiguration()
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            switch a {
            case "--listen": if let v = args.popFirst() { listens.append(v) }
            case "--loops": config.loops = args.popFirst().flatMap { Int($0) }
            case "--shared-queues": config.dedicatedConnectionQueues = false
            case "--tls-cert": cert = args.popFirst()
            case "--tls-key": key = args.popFirst()
            case "--event-mode":
                guard let m = args.popFirst().flatMap(HTTPEventMode.init(rawValue:)) else {
                    say("--event-mode takes one of: \(HTTPEventMode.allCases.map(\.rawValue).joined(separator: ", "))", to: 2)
                    exit(2)
                }
                config.eventMode = m
            default:
                say("usage: transport-echo --listen HOST:PORT [--loops N] [--shared-queues] [--event-mode dispatchSources|epollPerLoop] [--tls-cert PEM --tls-key PEM]", to: 2)
                exit(2)
            }
        }
        if listens.isEmpty { listens = ["127.0.0.1:9411"] }
        var router = EndpointRouter()
        router.register("POST", "/api/v2/spans") { request, respond in
            respond(HTTPResponse(status: 202, headers: [("Content-Type", "application/json")], body: Array("{}".utf8)))
        }
        var logger = Logger(label: "transport-echo")
        logger.logLevel = .warning
        let server = HTTPServer(configuration: config, handler: router, logger: logger)
        do {
            let tls = try cert.map { c in try ListenerTLS(.server(certificateChain: c, privateKey: key ?? c)) }
            try server.start(listeners: try listens.map { l in
                var a = try ListenAddress(parsing: l)
                a.tls = tls
                return a
            })
        } catch {
            say("transport-echo: \(error)", to: 2)
            exit(1)
        }
        say("listening on \(server.boundListeners.map { "\($0.host):\($0.port)" }.joined(separator: " "))", to: 1)
        signal(SIGTERM, SIG_IGN)
        let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        term.setEventHandler {
            server.shutdown(grace: .seconds(2)) { exit(0) }
        }
        term.activate()
        dispatchMain()
    }
}

private func say(_ line: String, to fd: Int32) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
