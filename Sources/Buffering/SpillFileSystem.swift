import Glibc

/// A failed file operation: which operation, on which path, and the errno.
public struct FileError: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let path: String
    public let errno: Int32

    public init(_ operation: String, _ path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    /// True for "the disk is full" (ENOSPC, EDQUOT): treated like the disk cap.
    public var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }

    public var description: String { "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// The file access the spill tier needs. Behind a protocol so tests can inject torn writes,
/// ENOSPC, EIO and bit flips (see `Tests/BufferingTests`). All calls are synchronous and are only
/// made from a queue's I/O queue (or the `spill` command), never from a network loop.
public protocol SpillFileSystem: Sendable {
    /// Creates `path` and any missing parents.
    func createDirectory(_ path: String) throws
    /// Names (not paths) of the entries of `path`, without "." and "..".
    func listDirectory(_ path: String) throws -> [String]
    /// Opens `path` for reading and writing, creating it when `create` is set.
    func open(_ path: String, create: Bool) throws -> any SpillFile
    func rename(_ from: String, to: String) throws
    func remove(_ path: String) throws
    /// Flushes a directory's entries (after creating, renaming or removing files in it).
    func syncDirectory(_ path: String) throws
}

/// An open file. Positional I/O only (`pwrite`/`pread`), so no shared offset.
public protocol SpillFile: AnyObject {
    func size() throws -> Int
    /// Writes all of `bytes` at `offset` (a short write is an error).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws
    /// Reads up to `buffer.count` bytes at `offset`; returns fewer only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int
    /// fdatasync.
    func sync() throws
    func truncate(to size: Int) throws
    func close()
}

/// The real file system: open/pwrite/pread/fdatasync, EINTR retried.
public struct PosixFileSystem: SpillFileSystem {
    public init() {}

    public func createDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw FileError("mkdir", prefix, errno: errno) }
        }
    }

    public func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw FileError("opendir", path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func open(_ path: String, create: Bool) throws -> any SpillFile {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0)
        while true {
            let fd = Glibc.open(path, flags, 0o644)
            if fd >= 0 { return PosixFile(fd: fd, path: path) }
            if errno != EINTR { throw FileError("open", path, errno: errno) }
        }
    }

    public func rename(_ from: String, to: String) throws {
        if Glibc.rename(from, to) != 0 { throw FileError("rename", from, errno: errno) }
    }

    public func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw FileError("unlink", path, errno: errno) }
    }

    public func syncDirectory(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw FileError("open", path, errno: errno) }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw FileError("fsync", path, errno: errno) }
    }
}

final class PosixFile: SpillFile {
    private var fd: Int32
    let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close() }

    func size() throws -> Int {
        var st = stat()
        if fstat(fd, &st) != 0 { throw FileError("fstat", path, errno: errno) }
        return Int(st.st_size)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("pwrite", path, errno: errno)
            }
            if n == 0 { throw FileError("pwrite", path, errno: EIO) }
            done += n
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("pread", path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    func sync() throws {
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw FileError("fdatasync", path, errno: errno) }
        }
    }

    func truncate(to size: Int) throws {
        while ftruncate(fd, off_t(size)) != 0 {
            if errno != EINTR { throw FileError("ftruncate", path, errno: errno) }
        }
    }

    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}
