import Foundation

/// Runs command-line tools (openssl, curl) for the tests.
public enum Tool {
    /// Runs `tool` to completion with `stdin` as its input (then closed; none: /dev/null);
    /// returns its exit status and its output (stdout and stderr together).
    public static func run(_ tool: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
