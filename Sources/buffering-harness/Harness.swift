import Buffering
import Dispatch
import Glibc
import Logging

/// Test harness around a `wal`-mode BackendQueue, for the kill -9 test (Tests/BufferingTests).
///   buffering-harness write DIR COUNT   enqueue records 0..<COUNT (many in flight), print
///                                       "ack N" once each is durable, then "done"; then wait
///   buffering-harness dump DIR          open (recover), print "rec N" for every record, "end"
enum Harness {
    static func main(_ args: [String]) {
        guard args.count >= 3 else { fail("usage: buffering-harness write DIR COUNT | dump DIR") }
        var logger = Logger(label: "buffering-harness", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        var config = QueueConfiguration(backend: "harness", directory: args[2], durability: .wal)
        config.memoryBytes = 1 << 20
        config.frameBytes = 256 << 10
        config.segmentBytes = 1 << 20
        let queue: BackendQueue
        do { queue = try BackendQueue(configuration: config, logger: logger) } catch { fail("open: \(error)") }
        switch args[1] {
        case "write":
            let count = Int(args.count > 3 ? args[3] : "1000") ?? 1000
            let window = DispatchSemaphore(value: 256)
            for i in 0..<count {
                window.wait()
                queue.enqueue(payload(i)) { result in
                    if case .success = result { say("ack \(i)\n") }
                    window.signal()
                }
            }
            for _ in 0..<256 { window.wait() }
            say("done\n")
            while true { sleep(60) }
        case "dump":
            var idle = 0
            while idle < 200 {
                let batch = queue.next(maxBytes: 1 << 20)
                if batch.isEmpty { idle += 1; usleep(5000); continue }
                idle = 0
                for d in batch {
                    say("rec \(String(decoding: d.record.metadata, as: UTF8.self))\n")
                    queue.ack(d)
                }
            }
            queue.shutdown()
            say("end\n")
        default:
            fail("unknown command \(args[1])")
        }
    }

    static func payload(_ i: Int) -> Record {
        var text = "{\"traceId\":\"\(i)\",\"name\":\"harness-span\",\"tags\":{\"mesh\":\"default\",\"i\":\"\(i)\"}}"
        while text.utf8.count < 200 { text += " " }
        return Record(bytes: Array(text.utf8), spanCount: 1, metadata: Array("\(i)".utf8))
    }

    static func say(_ s: String) {
        var s = s
        s.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    }

    static func fail(_ message: String) -> Never {
        say("error: \(message)\n")
        exit(2)
    }
}
