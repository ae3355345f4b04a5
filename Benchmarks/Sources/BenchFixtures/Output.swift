import Glibc

/// Writes to standard error for the tools (Glibc's `stderr` is a mutable global that Swift 6's
/// strict concurrency will not touch).
public func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
