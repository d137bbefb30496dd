// Writes a bundle (docs/FORMAT.md) to a temporary file next to the destination, then fsyncs and renames it into
// place. Until `finish` succeeds nothing exists under the final name; on failure (or if the writer is dropped
// unfinished) the temporary file is removed.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum BundleWriteError: Error, CustomStringConvertible {
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .io(p, r): return "\(p): \(r)"
        }
    }
}

public final class BundleWriter {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    /// Bytes of the data section written so far (including alignment padding).
    public private(set) var dataLength = 0
    private var finished = false

    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        temporaryPath = (dir as NSString).appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw BundleWriteError.io(path: path, reason: "cannot create \(temporaryPath): \(String(cString: strerror(errno)))")
        }
        // The preamble is written last; reserve its bytes.
        try write([UInt8](repeating: 0, count: BundleFormat.preambleSize))
    }

    deinit { abort() }

    /// Removes the temporary file (nothing was renamed into place).
    public func abort() {
        guard !finished else { return }
        finished = true
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporaryPath)
    }

    private func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = systemWrite(fd, base + done, bytes.count - done)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw BundleWriteError.io(path: temporaryPath, reason: String(cString: strerror(errno))) }
            done += n
        }
    }

    private func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Appends one frame at the next aligned offset; returns its record.
    public func appendFrame(_ frame: [UInt8]) throws -> FrameRecord {
        precondition(!finished, "BundleWriter: append after finish")
        let pad = (BundleFormat.alignment - dataLength % BundleFormat.alignment) % BundleFormat.alignment
        if pad > 0 { try write([UInt8](repeating: 0, count: pad)) }
        let offset = dataLength + pad
        try write(frame)
        dataLength = offset + frame.count
        return FrameRecord(offset: offset, size: frame.count, checksum: XXH64.hex(XXH64.hash(frame)))
    }

    /// Writes the header and the preamble, fsyncs, and renames the file into place.
    public func finish(header: BundleHeader) throws {
        precondition(!finished, "BundleWriter: finish twice")
        let json = [UInt8](try header.encoded())
        try write(json)
        var pre = [UInt8]()
        pre += BundleFormat.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { pre += $0 } }
        put(UInt32(header.version))
        put(UInt32(0))
        put(UInt64(BundleFormat.preambleSize))
        put(UInt64(dataLength))
        put(UInt64(BundleFormat.preambleSize + dataLength))
        put(UInt64(json.count))
        put(XXH64.hash(json))
        put(XXH64.hash(pre))
        precondition(pre.count == BundleFormat.preambleSize)
        guard pwrite(fd, pre, pre.count, 0) == pre.count else {
            throw BundleWriteError.io(path: temporaryPath, reason: String(cString: strerror(errno)))
        }
        guard fsync(fd) == 0 else { throw BundleWriteError.io(path: temporaryPath, reason: String(cString: strerror(errno))) }
        close(fd)
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            throw BundleWriteError.io(path: path, reason: "rename: \(String(cString: strerror(errno)))")
        }
        finished = true
        // Make the rename durable.
        let dir = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }
}

/// write(2), named apart from BundleWriter's own `write` methods.
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
