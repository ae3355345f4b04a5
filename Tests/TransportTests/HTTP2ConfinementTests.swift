import Dispatch
import Testing
@testable import Transport

// The HTTP/2 engines are confined to their connection's queue, and debug builds enforce it: an
// entry point called from another thread stops the process (an nghttp2 session touched from two
// threads at once aborts somewhere inside libnghttp2 later, far from the cause). Each trap is
// paired with the same calls made on the queue, which must exit cleanly, so a pass means the
// confinement check fired, not something else. Release builds compile the check out.

#if DEBUG
@Suite struct HTTP2ConfinementTests {
    @Test func serverEngineOffItsQueueStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            let context = H2TestContext()
            let engine = HTTP2ServerEngine(context: context, handler: ClosureHandler { _, respond in respond(HTTPResponse(status: 204)) },
                                           configuration: HTTP2Configuration())
            var out: [UInt8] = []
            engine.drainOutput(into: &out, limit: 1 << 16)  // the test's thread, not context.queue
        }
    }

    @Test func serverEngineOnItsQueueRuns() async {
        await #expect(processExitsWith: .success) {
            let context = H2TestContext()
            let engine = HTTP2ServerEngine(context: context, handler: ClosureHandler { _, respond in respond(HTTPResponse(status: 204)) },
                                           configuration: HTTP2Configuration())
            let preface = context.queue.sync {
                var out: [UInt8] = []
                engine.drainOutput(into: &out, limit: 1 << 16)
                return out
            }
            precondition(!preface.isEmpty, "the server preface (SETTINGS) is pending from the start")
        }
    }

    @Test func clientEngineOffItsQueueStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            let queue = DispatchQueue(label: "test.h2.client.confinement")
            let engine = HTTP2ClientEngine(configuration: HTTPClientConfiguration(), queue: queue)
            _ = engine.receive(UnsafeRawBufferPointer(start: nil, count: 0))  // the test's thread, not `queue`
        }
    }

    @Test func clientEngineOnItsQueueRuns() async {
        await #expect(processExitsWith: .success) {
            let queue = DispatchQueue(label: "test.h2.client.confinement")
            let engine = HTTP2ClientEngine(configuration: HTTPClientConfiguration(), queue: queue)
            let state = queue.sync { engine.receive(UnsafeRawBufferPointer(start: nil, count: 0)) }
            precondition(state == .open, "a fresh client session is open")
        }
    }
}
#endif
