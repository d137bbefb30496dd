// libzstd through CZstd: one frame per buffer, content size and content checksum always on.
import CZstd

/// A compression context (not thread-safe: one per worker).
public final class ZstdCompressor {
    private let ctx: OpaquePointer
    public let level: Int32

    public init(level: Int32) {
        guard let c = ZSTD_createCCtx() else { preconditionFailure("ZSTD_createCCtx: out of memory") }
        ctx = c
        self.level = level
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_contentSizeFlag, 1)
    }

    deinit { ZSTD_freeCCtx(ctx) }

    /// One zstd frame holding `src`. `rawLiterals` stores the literals uncompressed (no Huffman stage): the frame is
    /// larger but decompresses at memory-copy speed. Still a standard frame; any zstd reader takes it.
    public func compress(_ src: UnsafeRawBufferPointer, rawLiterals: Bool = false) -> [UInt8] {
        // ZSTD_c_literalCompressionMode (experimental parameter 5): ZSTD_ps_auto 0, ZSTD_ps_disable 2. The system
        // header hides the names behind ZSTD_STATIC_LINKING_ONLY; the numbers are stable in libzstd ≥ 1.5.
        ZSTD_CCtx_setParameter(ctx, ZSTD_cParameter(rawValue: 1002), rawLiterals ? 2 : 0)
        let cap = ZSTD_compressBound(src.count)
        var out = [UInt8](repeating: 0, count: cap)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_compress2(ctx, dst.baseAddress, cap, src.baseAddress, src.count)
        }
        // Compressing into a ZSTD_compressBound buffer cannot fail except on allocation failure.
        precondition(ZSTD_isError(n) == 0, "ZSTD_compress2: \(String(cString: ZSTD_getErrorName(n)))")
        out.removeSubrange(n...)
        return out
    }
}

public enum Zstd {
    public static var versionString: String { String(cString: ZSTD_versionString()) }

    /// Decompresses exactly one frame of `src` (which must be the whole frame, nothing more) into `dst`, which must
    /// be exactly the frame's content size. Returns nil on success, else what was wrong.
    public static func decompressFrame(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> String? {
        guard src.count > 0, let sp = src.baseAddress else { return "empty frame" }
        let content = ZSTD_getFrameContentSize(sp, src.count)
        if content == ZSTD_CONTENTSIZE_ERROR { return "not a zstd frame" }
        if content == ZSTD_CONTENTSIZE_UNKNOWN { return "frame without content size" }
        guard content == UInt64(dst.count) else { return "frame content size \(content), expected \(dst.count)" }
        let frameSize = ZSTD_findFrameCompressedSize(sp, src.count)
        if ZSTD_isError(frameSize) != 0 { return "bad frame: \(String(cString: ZSTD_getErrorName(frameSize)))" }
        guard frameSize == src.count else { return "frame is \(frameSize) bytes, record says \(src.count)" }
        if dst.count == 0 { return nil }
        let n = ZSTD_decompress(dst.baseAddress, dst.count, sp, src.count)
        if ZSTD_isError(n) != 0 { return String(cString: ZSTD_getErrorName(n)) }
        return n == dst.count ? nil : "decompressed \(n) bytes, expected \(dst.count)"
    }
}
