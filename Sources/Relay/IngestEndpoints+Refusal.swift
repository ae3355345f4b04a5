import Basics
import Codecs
import Dispatch
import Routing
import Spans
import Synchronization
import Transport

// Refusals: why a request is refused before its batch reaches the consumer, and how that is
// answered and counted.
extension IngestEndpoints {
    /// Why a request is refused before its batch reaches the consumer.
    struct Refusal: Error {
        var status: Int
        var code: String
        var message: String
        var retryAfter: Int? = nil
        /// Spans known to be in the request (for the drop count of a Datadog 200).
        var spans = 0
        /// Sent with the answer (`WWW-Authenticate` of a 401).
        var headers: [(name: String, value: String)] = []

        static func overloaded(_ message: String) -> Refusal {
            Refusal(status: 503, code: "overloaded", message: message, retryAfter: 1)
        }
        var isOverload: Bool { code == "overloaded" }
        var isTooManySpans: Bool { code == "too_many_spans" }
    }

    /// Answers a refused request and counts it. Datadog tracers that do not ask for real
    /// statuses get the agent's 200 for a request it would drop (too many spans, overload).
    func refuse(_ r: Refusal, _ req: HTTPRequest, _ decoder: Decoder, _ endpoint: String, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        refuse(r, req, format: decoder.format.rawValue, datadog: decoder.isDatadog, endpoint: endpoint, respond)
    }

    func refuse(_ r: Refusal, _ req: HTTPRequest, format: String, datadog: Bool, endpoint: String,
                        _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let hideFromTracer = datadog && (r.isOverload || r.isTooManySpans) && req.headers["datadog-send-real-http-status"] == nil
        stats.record(format, listener: req.listener) {
            $0.requests += 1
            $0.rejectedRequests += 1
            $0.refused[r.code, default: 0] += 1
            if r.isOverload { $0.overloaded += 1 }
            if r.isTooManySpans { $0.tooManySpans += 1 }
            if hideFromTracer { $0.droppedSpans += r.spans }
        }
        configuration.refusalLog?.refused(code: r.code, status: r.status, message: r.message, listener: req.listener, format: format)
        if hideFromTracer { return respond(datadogOK(nil, endpoint)) }
        let retry = r.retryAfter.map { [("Retry-After", String($0))] } ?? []
        respond(.error(r.status, code: r.code, message: r.message, headers: retry + r.headers))
    }
}
