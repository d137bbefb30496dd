import Foundation
import SanaFormat

// How SanaTransformer2DModel streams its blocks: the forward pass hands each block to a loader-driven loop, so a
// block's weights live only while it runs. The loader decides when to read the next one; with prefetching, block
// i+1 is read from the source on a background thread while block i computes (peak: two blocks of weights).

/// Supplies blocks 0 ..< count in order to `body`; each block is released when `body` returns.
public protocol SanaTransformerBlockLoader: Sendable {
    func forEachBlock(_ count: Int, _ load: @escaping @Sendable (Int) throws -> SanaTransformerBlock,
                      _ body: (SanaTransformerBlock) throws -> Void) throws
}

/// Loads each block right before it runs: one block of weights resident at a time.
public struct SequentialBlockLoader: SanaTransformerBlockLoader {
    public init() {}

    public func forEachBlock(_ count: Int, _ load: @escaping @Sendable (Int) throws -> SanaTransformerBlock,
                             _ body: (SanaTransformerBlock) throws -> Void) throws {
        for i in 0 ..< count { try body(try load(i)) }
    }
}

/// Reads block i+1 on a background thread while block i computes: two blocks of weights resident, and the read
/// (decompression, dequantization, page faults) overlaps compute.
public struct PrefetchingBlockLoader: SanaTransformerBlockLoader {
    public init() {}

    public func forEachBlock(_ count: Int, _ load: @escaping @Sendable (Int) throws -> SanaTransformerBlock,
                             _ body: (SanaTransformerBlock) throws -> Void) throws {
        guard count > 0 else { return }
        var next: PendingBlock? = PendingBlock { try load(0) }
        for i in 0 ..< count {
            guard let pending = next else { break }
            let block = try pending.wait()
            next = i + 1 < count ? PendingBlock { try load(i + 1) } : nil
            do {
                try body(block)
            } catch {
                _ = try? next?.wait()  // let the in-flight read finish before its memory is dropped
                throw error
            }
        }
    }
}

/// One block being read on a background thread.
private final class PendingBlock: @unchecked Sendable {
    // `result` is written once by the worker before `done` is signalled and read only after waiting on `done`.
    private var result: Result<SanaTransformerBlock, Error> = .failure(CancellationError())
    private let done = DispatchSemaphore(value: 0)

    init(_ work: @escaping @Sendable () throws -> SanaTransformerBlock) {
        Thread.detachNewThread { [self] in
            result = Result { try work() }
            done.signal()
        }
    }

    func wait() throws -> SanaTransformerBlock {
        done.wait()
        done.signal()  // a second wait returns at once
        return try result.get()
    }
}
