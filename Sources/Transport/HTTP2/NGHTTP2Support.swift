internal import CNghttp2

// Small pieces both nghttp2 engines (HTTP2ServerEngine, HTTP2ClientEngine) and their callbacks
// use: one copy each. The session itself (creation, input, output, teardown) is NGHTTP2Session.

/// What a callback returns when the engine cannot go on (nghttp2 tears the session down).
let nghttp2CallbackFailure = NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
let nghttp2FlagEndStream = UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)
let nghttp2FrameHeaders = UInt8(NGHTTP2_HEADERS.rawValue)
let nghttp2FrameData = UInt8(NGHTTP2_DATA.rawValue)
let nghttp2FrameRSTStream = UInt8(NGHTTP2_RST_STREAM.rawValue)
let nghttp2FrameGoaway = UInt8(NGHTTP2_GOAWAY.rawValue)

/// nghttp2's text for a library error code (`NGHTTP2_ERR_*`).
func nghttp2ErrorText(_ code: Int32) -> String {
    String(cString: nghttp2_strerror(code))
}

/// nghttp2's text for an HTTP/2 error code (RST_STREAM / GOAWAY).
func http2ErrorCodeText(_ code: UInt32) -> String {
    String(cString: nghttp2_http2_strerror(code))
}

/// Bytes a callback is handed (a header name or value, a DATA chunk) as a buffer; empty for NULL.
@inline(__always)
func nghttp2Bytes(_ start: UnsafePointer<UInt8>?, _ count: Int) -> UnsafeBufferPointer<UInt8> {
    UnsafeBufferPointer(start: start, count: start == nil ? 0 : count)
}

/// The body of a data provider's read callback: copies the next bytes of `body` (from
/// `offset`, which advances) into nghttp2's frame buffer and flags EOF once all are out.
/// nghttp2 asks no more than the peer's flow-control windows allow. Returns the bytes copied.
func nghttp2CopyBody(_ body: UnsafeBufferPointer<UInt8>, offset: inout Int,
                     into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                     flags: UnsafeMutablePointer<UInt32>) -> Int {
    let n = min(length, body.count - offset)
    if n > 0 {
        buffer.update(from: body.baseAddress! + offset, count: n)
        offset += n
    }
    if offset == body.count { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
    return n
}

/// The header fields of one HEADERS submission, laid out in one buffer; nghttp2 copies them
/// during the submit call, so the list only has to live that long.
struct NGHTTP2HeaderList {
    private var storage: [UInt8] = []
    private var fields: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []

    init() {}

    mutating func append(_ name: String, _ value: String) {
        append(name: name.utf8, value: value.utf8)
    }

    mutating func append(name: some Collection<UInt8>, value: some Collection<UInt8>) {
        let n = storage.count
        storage.append(contentsOf: name)
        let v = storage.count
        storage.append(contentsOf: value)
        fields.append((n, v - n, v, storage.count - v))
    }

    /// Calls `body` with the list as nghttp2 wants it (`nghttp2_nv` array and count).
    mutating func withNameValues<R>(_ body: (UnsafeMutablePointer<nghttp2_nv>, Int) -> R) -> R {
        let fields = self.fields
        return storage.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            var nva = fields.map {
                nghttp2_nv(name: base + $0.name, value: base + $0.value, namelen: $0.nameLength,
                           valuelen: $0.valueLength, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nva.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }
}
