import TestSupport

/// The certificates live in TestSupport (the Transport and Relay tests use them too); this
/// alias keeps the TLS tests' files free of a TestSupport import each.
typealias TestCertificates = TestSupport.TestCertificates
