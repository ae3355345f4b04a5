import Testing
@testable import Codecs

@Suite struct CodecsPlaceholder { @Test func builds() {} }
