import Dispatch
import Logging
import Routing
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Produces a backend's endpoint set (sorted endpoint URLs) now and whenever it changes. A
/// failed resolution keeps the last good set (logged, at most once a minute per kind).
protocol EndpointResolver: Sendable {
    /// Resolves once, synchronously (start: the first ring is built from it). nil when it
    /// failed; the caller keeps what it had.
    func resolveNow() -> [String]?
    /// Calls `onChange` (on a utility queue) with each new set; every `interval`.
    func start(onChange: @escaping @Sendable ([String]) -> Void)
    func stop()
}

/// The resolver a backend's `conf.resolver` asks for, or a fixed list.
func makeResolver(_ b: BackendConfig, logger: Logger) -> any EndpointResolver {
    switch b.endpoints.resolver {
    case .file(let path, let ms)?: FileEndpointResolver(path: path, intervalMillis: ms, logger: logger)
    case .dns(let host, let port, let ms)?: DNSEndpointResolver(hostname: host, port: port, intervalMillis: ms, logger: logger)
    case nil: StaticEndpoints(urls: b.urls.isEmpty ? [b.url].compactMap { $0 } : b.urls)
    }
}

/// `conf.urls`: never changes.
struct StaticEndpoints: EndpointResolver {
    let urls: [String]
    func resolveNow() -> [String]? { Array(Set(urls)).sorted() }
    func start(onChange: @escaping @Sendable ([String]) -> Void) {}
    func stop() {}
}

/// Polls a source every interval on a utility queue and reports a changed set; the common part
/// of the file and DNS resolvers.
final class PollingResolver: Sendable {
    /// Set up once in `start`, cancelled in `stop` (each called once, by the owning backend).
    private nonisolated(unsafe) let timer: DispatchSourceTimer
    private let last = Mutex<[String]?>(nil)
    private let activated = Atomic<Bool>(false)

    init(label: String, intervalMillis: Int) {
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: label, qos: .utility))
        timer.schedule(deadline: .now() + .milliseconds(intervalMillis), repeating: .milliseconds(intervalMillis))
    }

    func remember(_ set: [String]?) -> [String]? {
        if let set { last.withLock { $0 = set } }
        return set
    }

    func start(_ poll: @escaping @Sendable () -> [String]?, onChange: @escaping @Sendable ([String]) -> Void) {
        timer.setEventHandler { [weak self] in
            guard let self, let now = poll() else { return }
            let changed = self.last.withLock { l in
                defer { l = now }
                return l != now
            }
            if changed { onChange(now) }
        }
        activated.store(true, ordering: .relaxed)
        timer.activate()
    }

    func stop() { timer.cancel() }

    deinit {
        // libdispatch traps on releasing a source that was never activated.
        timer.cancel()
        if !activated.load(ordering: .relaxed) { timer.activate() }
    }
}

/// `resolver: {file: PATH}`: one `host:port` or URL per line, `#` starts a comment. Re-read
/// every interval (the file is small; reading beats trusting mtime granularity). An unreadable
/// file keeps the last set; an empty one means no endpoints (spans wait in the backend's queue).
final class FileEndpointResolver: EndpointResolver {
    let path: String
    private let poller: PollingResolver
    private let limited: RateLimitedLogger

    init(path: String, intervalMillis: Int, logger: Logger) {
        self.path = path
        poller = PollingResolver(label: "tracerelay.resolver.file", intervalMillis: intervalMillis)
        limited = RateLimitedLogger(logger: logger)
    }

    func resolveNow() -> [String]? { poller.remember(read()) }

    private func read() -> [String]? {
        let text: String
        do { text = try RelayConfig.readText(path) } catch {
            limited.log(.warning, key: "resolver.file", "cannot read the endpoints file; keeping the last endpoints",
                        metadata: ["path": "\(path)", "error": "\(error)"])
            return nil
        }
        let (urls, bad) = Self.parse(text)
        if !bad.isEmpty {
            limited.log(.warning, key: "resolver.file.line", "endpoints file lines that are neither host:port nor a URL were skipped",
                        metadata: ["path": "\(path)", "lines": "\(bad)"])
        }
        return urls
    }

    /// Endpoint URLs (sorted, unique) and the 1-based numbers of lines that are not endpoints.
    static func parse(_ text: String) -> (urls: [String], bad: [Int]) {
        var set = Set<String>(), bad: [Int] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            if let u = endpointURL(line) { set.insert(u) } else { bad.append(i + 1) }
        }
        return (set.sorted(), bad)
    }

    func start(onChange: @escaping @Sendable ([String]) -> Void) { poller.start({ [self] in read() }, onChange: onChange) }
    func stop() { poller.stop() }
}

/// `resolver: {dns: {hostname, port, interval}}`: the A/AAAA records of a headless Service
/// (one per ready pod), looked up with getaddrinfo on a utility queue. A failed lookup, or
/// one with no address, keeps the last set (a headless Service with no ready pod answers
/// NXDOMAIN: the relays then keep queueing for the last known pods rather than forget them).
final class DNSEndpointResolver: EndpointResolver {
    let hostname: String
    let port: Int
    private let poller: PollingResolver
    private let limited: RateLimitedLogger

    init(hostname: String, port: Int, intervalMillis: Int, logger: Logger) {
        self.hostname = hostname
        self.port = port
        poller = PollingResolver(label: "tracerelay.resolver.dns", intervalMillis: intervalMillis)
        limited = RateLimitedLogger(logger: logger)
    }

    func resolveNow() -> [String]? { poller.remember(lookup()) }

    private func lookup() -> [String]? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(hostname, nil, &hints, &res)
        guard rc == 0 else {
            limited.log(.warning, key: "resolver.dns", "DNS lookup of the backend's endpoints failed; keeping the last endpoints",
                        metadata: ["hostname": "\(hostname)", "error": "\(String(cString: gai_strerror(rc)))"])
            return nil
        }
        defer { freeaddrinfo(res) }
        var set = Set<String>()
        var p = res
        while let ai = p {
            if let host = Self.numericHost(ai.pointee) {
                set.insert(ai.pointee.ai_family == AF_INET6 ? "http://[\(host)]:\(port)" : "http://\(host):\(port)")
            }
            p = ai.pointee.ai_next
        }
        if set.isEmpty {
            limited.log(.warning, key: "resolver.dns.empty", "DNS answered no address for the backend's endpoints; keeping the last endpoints",
                        metadata: ["hostname": "\(hostname)"])
            return nil
        }
        return set.sorted()
    }

    private static func numericHost(_ ai: addrinfo) -> String? {
        var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let rc = getnameinfo(ai.ai_addr, ai.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST)
        guard rc == 0 else { return nil }
        return String(cString: buf)
    }

    func start(onChange: @escaping @Sendable ([String]) -> Void) { poller.start({ [self] in lookup() }, onChange: onChange) }
    func stop() { poller.stop() }
}
