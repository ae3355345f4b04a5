import Testing
@testable import Relay

@Suite struct RelayPlaceholder { @Test func builds() {} }
