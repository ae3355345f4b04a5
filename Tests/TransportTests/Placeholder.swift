import Testing
@testable import Transport

@Suite struct TransportPlaceholder { @Test func builds() {} }
