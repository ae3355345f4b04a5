import Codecs

/// Datadog v0.5 bodies for the generator, made from the relay's own v0.4 encoding: the v0.4
/// span maps are re-laid out as v0.5's 12-element arrays with strings moved to a table. Runs
/// once per template (speed does not matter; exactness does), so a tiny tree reader suffices.
enum DatadogV05Transcoder {
    indirect enum Value {
        case array([Value]), map([(Value, Value)]), str([UInt8]), uint(UInt64), int(Int64), double(Double), bool(Bool), null
    }

    struct Reader {
        let b: [UInt8]
        var i = 0
        mutating func byte() throws(LoadtestError) -> UInt8 {
            guard i < b.count else { throw LoadtestError("v0.4 → v0.5: truncated msgpack") }
            defer { i += 1 }
            return b[i]
        }
        mutating func be(_ n: Int) throws(LoadtestError) -> UInt64 {
            var v: UInt64 = 0
            for _ in 0..<n { v = v << 8 | UInt64(try byte()) }
            return v
        }
        mutating func bytes(_ n: Int) throws(LoadtestError) -> [UInt8] {
            guard i + n <= b.count else { throw LoadtestError("v0.4 → v0.5: truncated msgpack") }
            defer { i += n }
            return Array(b[i..<i + n])
        }
        mutating func value() throws(LoadtestError) -> Value {
            let t = try byte()
            switch t {
            case 0x00...0x7f: return .uint(UInt64(t))
            case 0x80...0x8f: return try map(Int(t & 0x0f))
            case 0x90...0x9f: return try array(Int(t & 0x0f))
            case 0xa0...0xbf: return .str(try bytes(Int(t & 0x1f)))
            case 0xc0: return .null
            case 0xc2: return .bool(false)
            case 0xc3: return .bool(true)
            case 0xca: return .double(Double(Float(bitPattern: UInt32(try be(4)))))
            case 0xcb: return .double(Double(bitPattern: try be(8)))
            case 0xcc: return .uint(try be(1))
            case 0xcd: return .uint(try be(2))
            case 0xce: return .uint(try be(4))
            case 0xcf: return .uint(try be(8))
            case 0xd0: return .int(Int64(Int8(truncatingIfNeeded: try be(1))))
            case 0xd1: return .int(Int64(Int16(truncatingIfNeeded: try be(2))))
            case 0xd2: return .int(Int64(Int32(truncatingIfNeeded: try be(4))))
            case 0xd3: return .int(Int64(bitPattern: try be(8)))
            case 0xd9: return .str(try bytes(Int(try be(1))))
            case 0xda: return .str(try bytes(Int(try be(2))))
            case 0xdb: return .str(try bytes(Int(try be(4))))
            case 0xdc: return try array(Int(try be(2)))
            case 0xdd: return try array(Int(try be(4)))
            case 0xde: return try map(Int(try be(2)))
            case 0xdf: return try map(Int(try be(4)))
            case 0xe0...0xff: return .int(Int64(Int8(bitPattern: t)))
            default: throw LoadtestError("v0.4 → v0.5: unsupported msgpack type 0x\(String(t, radix: 16))")
            }
        }
        mutating func array(_ n: Int) throws(LoadtestError) -> Value {
            var a: [Value] = []
            for _ in 0..<n { a.append(try value()) }
            return .array(a)
        }
        mutating func map(_ n: Int) throws(LoadtestError) -> Value {
            var m: [(Value, Value)] = []
            for _ in 0..<n { m.append((try value(), try value())) }
            return .map(m)
        }
    }

    static func transcode(v04 body: [UInt8]) throws(LoadtestError) -> [UInt8] {
        var r = Reader(b: body)
        guard case .array(let traces) = try r.value() else { throw LoadtestError("v0.4 → v0.5: not an array of traces") }
        var table: [[UInt8]] = [[]]  // index 0 = "" (Datadog's convention)
        var index: [[UInt8]: UInt64] = [[]: 0]
        func idx(_ s: [UInt8]) -> UInt64 {
            if let i = index[s] { return i }
            let i = UInt64(table.count)
            table.append(s); index[s] = i
            return i
        }
        var spansOut: [UInt8] = []
        MessagePackWriter.writeArrayHeader(traces.count, into: &spansOut)
        for trace in traces {
            guard case .array(let spans) = trace else { throw LoadtestError("v0.4 → v0.5: trace is not an array") }
            MessagePackWriter.writeArrayHeader(spans.count, into: &spansOut)
            for span in spans {
                guard case .map(let fields) = span else { throw LoadtestError("v0.4 → v0.5: span is not a map") }
                var f: [String: Value] = [:]
                for (k, v) in fields { if case .str(let kb) = k { f[String(decoding: kb, as: UTF8.self)] = v } }
                func str(_ k: String) -> UInt64 { if case .str(let s)? = f[k] { return idx(s) }; return 0 }
                func num(_ k: String) -> Value { f[k] ?? .uint(0) }
                func writeNum(_ v: Value) {
                    switch v {
                    case .uint(let u): MessagePackWriter.writeUInt(u, into: &spansOut)
                    case .int(let i): MessagePackWriter.writeInt(i, into: &spansOut)
                    case .double(let d): MessagePackWriter.writeInt(Int64(d), into: &spansOut)
                    default: MessagePackWriter.writeUInt(0, into: &spansOut)
                    }
                }
                MessagePackWriter.writeArrayHeader(12, into: &spansOut)
                MessagePackWriter.writeUInt(str("service"), into: &spansOut)
                MessagePackWriter.writeUInt(str("name"), into: &spansOut)
                MessagePackWriter.writeUInt(str("resource"), into: &spansOut)
                // Ids and times keep 8-byte encodings (uint64 / int64) so sentinels stay patchable.
                writeNum(num("trace_id")); writeNum(num("span_id")); writeNum(num("parent_id"))
                writeNum(num("start")); writeNum(num("duration"))
                if case .bool(let e)? = f["error"] { MessagePackWriter.writeInt(e ? 1 : 0, into: &spansOut) } else { writeNum(num("error")) }
                if case .map(let meta)? = f["meta"] {
                    MessagePackWriter.writeMapHeader(meta.count, into: &spansOut)
                    for (k, v) in meta {
                        guard case .str(let kb) = k, case .str(let vb) = v else { throw LoadtestError("v0.4 → v0.5: meta is not strings") }
                        MessagePackWriter.writeUInt(idx(kb), into: &spansOut); MessagePackWriter.writeUInt(idx(vb), into: &spansOut)
                    }
                } else { MessagePackWriter.writeMapHeader(0, into: &spansOut) }
                if case .map(let metrics)? = f["metrics"] {
                    MessagePackWriter.writeMapHeader(metrics.count, into: &spansOut)
                    for (k, v) in metrics {
                        guard case .str(let kb) = k else { throw LoadtestError("v0.4 → v0.5: metric key is not a string") }
                        MessagePackWriter.writeUInt(idx(kb), into: &spansOut)
                        switch v {
                        case .double(let d): MessagePackWriter.writeDouble(d, into: &spansOut)
                        case .uint(let u): MessagePackWriter.writeDouble(Double(u), into: &spansOut)
                        case .int(let i): MessagePackWriter.writeDouble(Double(i), into: &spansOut)
                        default: MessagePackWriter.writeDouble(0, into: &spansOut)
                        }
                    }
                } else { MessagePackWriter.writeMapHeader(0, into: &spansOut) }
                MessagePackWriter.writeUInt(str("type"), into: &spansOut)
            }
        }
        var out: [UInt8] = []
        MessagePackWriter.writeArrayHeader(2, into: &out)
        MessagePackWriter.writeArrayHeader(table.count, into: &out)
        for s in table { s.withUnsafeBytes { MessagePackWriter.writeString($0, into: &out) } }
        out += spansOut
        return out
    }
}
