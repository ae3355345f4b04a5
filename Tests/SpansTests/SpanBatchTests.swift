import Testing
@testable import Spans

@Suite struct SpanBatchTests {
    @Test func traceIDParsesAndPrints() throws {
        let short = try #require(TraceID(hex: "1a"))
        #expect(short == TraceID(low: 0x1a))
        #expect(short.description == "000000000000001a")
        let long = try #require(TraceID(hex: "463AC35C9F6413AD48485A3953BB6124"))
        #expect(long.high == 0x463ac35c9f6413ad)
        #expect(long.low == 0x48485a3953bb6124)
        #expect(long.description == "463ac35c9f6413ad48485a3953bb6124")
        #expect(TraceID(hex: "xyz") == nil)
        #expect(TraceID(hex: "") == nil)
        #expect(TraceID(hex: String(repeating: "1", count: 33)) == nil)
    }

    @Test func strSlicesBodyAndInternsText() {
        var batch = SpanBatch(body: Array("hello world".utf8), metadata: .init(format: .zipkinV2JSON))
        let hello = batch.slice(0..<5)
        let extra = batch.intern("ünïcode")
        #expect(batch.string(hello) == "hello")
        #expect(batch.string(extra) == "ünïcode")
        #expect(batch.bodyCount == 11)
        #expect(batch.equals(hello, "hello"))
        #expect(!batch.equals(hello, "hellp"))
    }

    @Test func appendCopiesAcrossBatches() {
        var a = SpanBatch()
        var span = Span(traceID: TraceID(low: 1), id: 2)
        span.name = a.intern("get")
        span.tags = a.addTags([Tag(key: a.intern("http.method"), value: a.intern("GET"))])
        a.spans.append(span)
        var b = SpanBatch()
        _ = b.intern("padding so offsets differ")
        b.append(a.spans[0], from: a)
        #expect(b.string(b.spans[0].name) == "get")
        #expect(b.tagValue(b.spans[0], "http.method") == "GET")
        #expect(b.tag(b.spans[0], "http.method").map { b.string($0) } == "GET")
    }
}
