import BenchFixtures
import CSimdjsonRef
import Codecs
import Glibc
import Spans

/// Our Zipkin v2 JSON decoder against simdjson's On-Demand API visiting the same fields of the
/// same bytes, alternating in one process so both see the same machine load:
///   json-reference [SPANS [ITERATIONS [ROUNDS]]]      (defaults 1000, 200, 9)
/// Each round times ITERATIONS decodes with each, in thread CPU time (CLOCK_THREAD_CPUTIME_ID:
/// on this shared machine wall time mostly measures the other processes); the figure is the
/// median over rounds of ours ÷ simdjson (spans per CPU-second), with each side's median rate.
enum JSONReference {
    nonisolated(unsafe) static var checksum: UInt64 = 0

    static func main() {
        let args = CommandLine.arguments.dropFirst().map { Int($0) }
        guard args.allSatisfy({ ($0 ?? 0) > 0 }) else {
            printError("usage: json-reference [SPANS [ITERATIONS [ROUNDS]]]\n")
            exit(2)
        }
        let spanCount = args.count > 0 ? args[0]! : 1000
        let iterations = args.count > 1 ? args[1]! : 200
        let rounds = args.count > 2 ? args[2]! : 9
        let (json, spans) = ZipkinFixtures.v2JSON(spans: spanCount)
        let padded = json + [UInt8](repeating: 0x20, count: tr_simdjson_padding())

        func ours() -> Int { try! ZipkinJSONV2.decode(json, metadata: BatchMetadata(format: .zipkinV2JSON)).count }
        func simdjson() -> Int {
            var sum: UInt64 = 0
            let n = padded.withUnsafeBufferPointer { tr_simdjson_zipkin_scan($0.baseAddress, json.count, $0.count, &sum) }
            checksum &+= sum   // keeps the work live
            return Int(n)
        }
        precondition(ours() == spans, "our decoder read \(ours()) of \(spans) spans")
        precondition(simdjson() == spans, "simdjson read \(simdjson()) of \(spans) spans")

        func time(_ f: () -> Int) -> Double {
            let t0 = now()
            var n = 0
            for _ in 0..<iterations { n &+= f() }
            precondition(n == spans * iterations)
            return Double(n) / (now() - t0)
        }
        var oursRates: [Double] = [], refRates: [Double] = [], ratios: [Double] = []
        for round in 0..<rounds {
            // Alternate which goes first, so a load change mid-round does not favour one side.
            let (a, b) = round % 2 == 0 ? (time(ours), time(simdjson)) : { let r = time(simdjson); return (time(ours), r) }()
            oursRates.append(a)
            refRates.append(b)
            ratios.append(a / b)
        }
        let bytesPerSpan = Double(json.count) / Double(spans)
        func line(_ name: String, _ rate: Double) -> String {
            "\(name)  \(fmt(rate / 1e6, 2))M spans/s  \(fmt(rate * bytesPerSpan / 1e6, 0)) MB/s  (per CPU-second)"
        }
        print("Zipkin v2 JSON, \(spans) Envoy-like spans, \(json.count) B (\(Int(bytesPerSpan)) B/span); \(rounds) rounds × \(iterations) decodes each, medians")
        print(line("ours (ZipkinJSONV2.decode)         ", median(oursRates)))
        print(line("simdjson On-Demand, every field    ", median(refRates)))
        print("ratio ours/simdjson  \(fmt(median(ratios), 2))  (range \(fmt(ratios.min()!, 2))–\(fmt(ratios.max()!, 2)))")
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    static func fmt(_ x: Double, _ digits: Int) -> String {
        var p = 1.0
        for _ in 0..<digits { p *= 10 }
        let v = (x * p).rounded() / p
        return digits == 0 ? String(Int(v)) : String(v)
    }
}
