// A read-only memory-mapped file with explicit page release, and overflow-checked size arithmetic.
// Readers map whole files but touch only what is asked and release it afterwards (madvise), so resident memory
// stays near what is being decoded, not the file size.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Overflow-checked arithmetic on sizes read from untrusted files: nil on overflow or negative inputs.
public enum Checked {
    public static func add(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }

    public static func mul(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }

    /// The element count of a shape; nil on overflow or a negative dimension. A scalar (empty shape) has 1.
    public static func product(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard let p = mul(n, d) else { return nil }
            n = p
        }
        return n
    }
}

/// A memory-mapped, read-only file. Callers validate ranges before asking for bytes.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeRawPointer?

    /// Maps the whole file. Throws a message (the caller wraps it in its own typed error).
    public init(path: String) throws(MappedFileError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw MappedFileError(reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MappedFileError(reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw MappedFileError(reason: "not a regular file") }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw MappedFileError(reason: String(cString: strerror(errno))) }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The bytes of `range`, which must lie inside the file (checked by the caller against `size`).
    public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "MappedFile: range \(range) outside 0..<\(size)")
        guard let base, !range.isEmpty else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Hints that `range` will be read soon (one sequential read ahead of decoding a layer).
    public func willNeed(_ range: Range<Int>) { advise(range, MADV_WILLNEED) }

    /// Drops the pages of `range` from this process's resident set. The mapping is read-only and private, so
    /// nothing is lost: a later access faults the pages in again from the page cache or the file.
    public func release(_ range: Range<Int>) { advise(range, MADV_DONTNEED) }

    private func advise(_ range: Range<Int>, _ advice: Int32) {
        guard let base, !range.isEmpty, range.lowerBound >= 0, range.upperBound <= size else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        let end = min(size, (range.upperBound + page - 1) / page * page)
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, advice)
    }
}

public struct MappedFileError: Error, Sendable {
    public let reason: String
}
