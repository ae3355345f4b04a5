import Testing
@testable import Buffering

@Suite struct BufferingPlaceholder { @Test func builds() {} }
