private import CNghttp2

// Small pieces both nghttp2 wrappers (HTTP2ServerEngine, HTTP2ClientEngine) use: one copy each.
// The callbacks themselves stay file-private in each engine's file, where they recover their
// own engine type from `user_data`.

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
