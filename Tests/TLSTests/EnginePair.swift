import TestSupport
@testable import TLS

/// A client and a server engine connected in memory: `pump` carries each side's ciphertext to
/// the other, whole or in pieces, and collects what each side received.
final class EnginePair {
    enum Delivery {
        /// Everything pending at once.
        case whole
        /// One byte per `feed`.
        case byteByByte
        /// Random piece sizes from a seeded generator.
        case randomSplits(seed: UInt64)
    }

    let client: TLSEngine
    let server: TLSEngine
    private(set) var clientPlaintext: [UInt8] = []
    private(set) var serverPlaintext: [UInt8] = []
    private(set) var clientEvents: [TLSEvent] = []
    private(set) var serverEvents: [TLSEvent] = []
    private let delivery: Delivery
    private var rng: SplitMix64

    init(client: TLSEngine, server: TLSEngine, delivery: Delivery = .whole) {
        self.client = client
        self.server = server
        self.delivery = delivery
        if case .randomSplits(let seed) = delivery {
            rng = SplitMix64(seed: seed, printing: "EnginePair random splits")
        } else {
            rng = SplitMix64(seed: 0)
        }
    }

    /// Builds both contexts and engines (the client verifying `serverName`).
    convenience init(client: TLSConfiguration, server: TLSConfiguration, serverName: String? = "localhost",
                     session: TLSSession? = nil, delivery: Delivery = .whole) throws {
        try self.init(client: TLSEngine(client: TLSContext(client), serverName: serverName, resuming: session),
                      server: TLSEngine(server: TLSContext(server)), delivery: delivery)
    }

    /// Moves ciphertext both ways until neither side has any left; returns the rounds it took.
    @discardableResult
    func pump(maxRounds: Int = 1000) -> Int {
        for round in 0..<maxRounds {
            let c = client.drainCiphertext()
            let s = server.drainCiphertext()
            if c.isEmpty && s.isEmpty { return round }
            deliver(c, to: server, plaintext: &serverPlaintext, events: &serverEvents)
            deliver(s, to: client, plaintext: &clientPlaintext, events: &clientEvents)
        }
        return maxRounds
    }

    private func deliver(_ bytes: [UInt8], to engine: TLSEngine, plaintext: inout [UInt8], events: inout [TLSEvent]) {
        var i = 0
        while i < bytes.count {
            let n: Int
            switch delivery {
            case .whole: n = bytes.count
            case .byteByByte: n = 1
            case .randomSplits: n = Int(rng.next() % 64) + 1
            }
            let end = min(bytes.count, i + n)
            events += bytes[i..<end].withUnsafeBytes { engine.feed($0, plaintext: &plaintext) }
            i = end
        }
    }

    var clientHandshake: TLSHandshake? { Self.handshake(in: clientEvents) }
    var serverHandshake: TLSHandshake? { Self.handshake(in: serverEvents) }
    var clientError: TLSError? { Self.error(in: clientEvents) }
    var serverError: TLSError? { Self.error(in: serverEvents) }

    static func handshake(in events: [TLSEvent]) -> TLSHandshake? {
        for case .handshakeCompleted(let h) in events { return h }
        return nil
    }

    static func error(in events: [TLSEvent]) -> TLSError? {
        for case .failed(let e) in events { return e }
        return nil
    }

    func takeClientPlaintext() -> [UInt8] { defer { clientPlaintext = [] }; return clientPlaintext }
    func takeServerPlaintext() -> [UInt8] { defer { serverPlaintext = [] }; return serverPlaintext }
}

/// The configurations most tests start from.
extension TestCertificates {
    func server(clientCA: Bool = false, require: Bool = false, alpn: [String] = TLSConfiguration.httpProtocols) -> TLSConfiguration {
        .server(certificateChain: serverCert, privateKey: serverKey, clientCA: clientCA ? caFile : nil,
                requireClientCertificate: require, alpn: alpn)
    }

    func client(withCertificate: Bool = false, alpn: [String] = TLSConfiguration.httpProtocols) -> TLSConfiguration {
        .client(caFile: caFile, certificateChain: withCertificate ? clientCert : nil,
                privateKey: withCertificate ? clientKey : nil, alpn: alpn)
    }
}
