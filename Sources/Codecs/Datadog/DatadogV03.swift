import Spans

/// Datadog's `/v0.3/traces`: the same array of traces of span maps as v0.4, sent either as
/// msgpack (identical to v0.4 on the wire) or as JSON.
public enum DatadogV03 {
    /// Decodes a msgpack v0.3 body (same rules and mapping as `DatadogV04.decode`).
    public static func decodeMsgpack(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        try DDMsgpackTraces.decode(body, metadata: metadata, format: .datadogV04)
    }
}
