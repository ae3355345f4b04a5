internal import CNghttp2

// The callbacks of an nghttp2 session, from C to Swift. libnghttp2 calls C-convention functions
// inside `mem_recv` / `mem_send`; each engine registers a table of them
// (`NGHTTP2Session.Callbacks.server` / `.client`) whose entries are closure literals naming the
// engine type and calling the forwarders below. The forwarders recover the engine from
// `user_data` (unretained: see NGHTTP2Session for why that is sound), turn the C arguments into
// Swift values and call the engine through `NGHTTP2SessionOwner`. They are generic over the
// engine type and inlined, so each table entry compiles to a direct call into its engine: this
// is the per-frame path, and it costs what a hand-written callback would.

/// What an engine does with the events of its nghttp2 session. Every method runs inside a call
/// the engine itself made on the session, on the connection's queue.
protocol NGHTTP2SessionOwner: AnyObject {
    /// A header block starts (a HEADERS frame; server: a request's headers or its trailers).
    func beginHeaders(_ frame: NGHTTP2Frame)
    /// One decoded header field of a HEADERS frame's block.
    func header(_ frame: NGHTTP2Frame, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>)
        -> NGHTTP2HeaderVerdict
    /// Payload bytes of a DATA frame (never empty).
    func data(streamID: Int32, _ chunk: UnsafeBufferPointer<UInt8>)
    func frameReceived(_ frame: NGHTTP2Frame)
    func frameSent(_ frame: NGHTTP2Frame)
    /// nghttp2 dropped a queued frame (`libError` says why), e.g. a request's HEADERS after GOAWAY.
    func frameNotSent(_ frame: NGHTTP2Frame, libError: Int32)
    func streamClosed(streamID: Int32, errorCode: UInt32)
    /// The data provider of an outgoing body: copy up to `length` bytes into `buffer`, set
    /// `NGHTTP2_DATA_FLAG_EOF` in `flags` at the end (`nghttp2CopyBody`); a negative nghttp2
    /// error fails the stream.
    func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                  flags: UnsafeMutablePointer<UInt32>) -> Int
}

extension NGHTTP2SessionOwner {
    // Only the server looks at header blocks starting, only the client at frames not sent;
    // each leaves the other's entry out of its table.
    func beginHeaders(_ frame: NGHTTP2Frame) {}
    func frameNotSent(_ frame: NGHTTP2Frame, libError: Int32) {}
}

/// What `NGHTTP2SessionOwner.header` wants done with the rest of the header block.
enum NGHTTP2HeaderVerdict {
    /// Go on.
    case accept
    /// End the connection with GOAWAY `ENHANCE_YOUR_CALM`.
    case goaway
}

/// The frame a callback is about: a view of nghttp2's `nghttp2_frame`, valid during the callback.
struct NGHTTP2Frame {
    let raw: UnsafePointer<nghttp2_frame>

    var type: UInt8 { raw.pointee.hd.type }
    var streamID: Int32 { raw.pointee.hd.stream_id }
    var endsStream: Bool { raw.pointee.hd.flags & nghttp2FlagEndStream != 0 }
    /// HEADERS only: the block opens a request (not trailers).
    var isRequestHeaders: Bool { raw.pointee.headers.cat == NGHTTP2_HCAT_REQUEST }
    /// RST_STREAM only.
    var resetErrorCode: UInt32 { raw.pointee.rst_stream.error_code }
    /// GOAWAY only.
    var goawayErrorCode: UInt32 { raw.pointee.goaway.error_code }
    var goawayLastStreamID: Int32 { raw.pointee.goaway.last_stream_id }
}

/// The bodies of the C callbacks, one each, for any engine type. Without an owner (`user_data`
/// cleared) they fail, and nghttp2 ends the session.
enum NGHTTP2Forward {
    /// Recovers the owner and the frame, or fails the callback.
    @inline(__always)
    private static func forward<Owner: NGHTTP2SessionOwner>(
        _ userData: UnsafeMutableRawPointer?, _ frame: UnsafePointer<nghttp2_frame>?,
        _ body: (Owner, NGHTTP2Frame) -> Int32
    ) -> Int32 {
        guard let owner = NGHTTP2Session.owner(userData, as: Owner.self), let frame else { return nghttp2CallbackFailure }
        return body(owner, NGHTTP2Frame(raw: frame))
    }

    @inline(__always)
    static func beginHeaders<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ frame: UnsafePointer<nghttp2_frame>?,
                                                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
        forward(userData, frame) { (owner: Owner, f) in owner.beginHeaders(f); return 0 }
    }

    @inline(__always)
    static func header<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ session: OpaquePointer?,
                                                   _ frame: UnsafePointer<nghttp2_frame>?,
                                                   _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
                                                   _ value: UnsafePointer<UInt8>?, _ valueLength: Int,
                                                   _ userData: UnsafeMutableRawPointer?) -> Int32 {
        forward(userData, frame) { (owner: Owner, f) in
            guard f.type == nghttp2FrameHeaders else { return 0 }
            switch owner.header(f, name: nghttp2Bytes(name, nameLength), value: nghttp2Bytes(value, valueLength)) {
            case .accept:
                return 0
            case .goaway:
                _ = nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
                return nghttp2CallbackFailure
            }
        }
    }

    @inline(__always)
    static func frameReceived<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ frame: UnsafePointer<nghttp2_frame>?,
                                                          _ userData: UnsafeMutableRawPointer?) -> Int32 {
        forward(userData, frame) { (owner: Owner, f) in owner.frameReceived(f); return 0 }
    }

    @inline(__always)
    static func frameSent<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ frame: UnsafePointer<nghttp2_frame>?,
                                                      _ userData: UnsafeMutableRawPointer?) -> Int32 {
        forward(userData, frame) { (owner: Owner, f) in owner.frameSent(f); return 0 }
    }

    @inline(__always)
    static func frameNotSent<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ frame: UnsafePointer<nghttp2_frame>?,
                                                         _ libError: Int32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
        forward(userData, frame) { (owner: Owner, f) in owner.frameNotSent(f, libError: libError); return 0 }
    }

    @inline(__always)
    static func data<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ streamID: Int32, _ data: UnsafePointer<UInt8>?,
                                                 _ length: Int, _ userData: UnsafeMutableRawPointer?) -> Int32 {
        guard let owner = NGHTTP2Session.owner(userData, as: Owner.self) else { return nghttp2CallbackFailure }
        let chunk = nghttp2Bytes(data, length)
        if !chunk.isEmpty { owner.data(streamID: streamID, chunk) }
        return 0
    }

    @inline(__always)
    static func streamClosed<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ streamID: Int32, _ errorCode: UInt32,
                                                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
        guard let owner = NGHTTP2Session.owner(userData, as: Owner.self) else { return nghttp2CallbackFailure }
        owner.streamClosed(streamID: streamID, errorCode: errorCode)
        return 0
    }

    @inline(__always)
    static func readBody<Owner: NGHTTP2SessionOwner>(_: Owner.Type, _ streamID: Int32, _ buffer: UnsafeMutablePointer<UInt8>?,
                                                     _ length: Int, _ flags: UnsafeMutablePointer<UInt32>?,
                                                     _ userData: UnsafeMutableRawPointer?) -> Int {
        guard let owner = NGHTTP2Session.owner(userData, as: Owner.self), let buffer, let flags else {
            return Int(nghttp2CallbackFailure)
        }
        return owner.readBody(streamID: streamID, into: buffer, length: length, flags: flags)
    }
}
