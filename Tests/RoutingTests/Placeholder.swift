import Testing
@testable import Routing

@Suite struct RoutingPlaceholder { @Test func builds() {} }
