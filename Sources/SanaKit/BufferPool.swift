import Foundation

// Recycled activation storage for one model run.
//
// Why: a layer-by-layer run allocates a fresh output map for every layer and frees its input soon after. Arrays of a
// few MB and up come from mmap, so every one of them costs the kernel a page fault per 4 KiB and the zeroing of the
// page (`clear_page_erms`): in the DC-AE decoder about a third of the decode's CPU time was system time
// (docs/BENCHMARKS.md "DC-AE"). Keeping glibc from returning memory (MALLOC_MMAP_MAX_=0) only moved the zeroing into
// user space (`[Float](repeating: 0)`). What helps is handing a layer storage that is already mapped and that it
// overwrites without zeroing first: the array of a consumed input of the same size.
//
// Contract:
// - `take(count:)` returns an array of exactly `count` floats whose values are unspecified (stale values of an
//   earlier activation, or uninitialized memory): the caller writes every element before reading any.
// - `recycle(_:)` gives an array back once the tensor it holds is consumed. It is pooled only when nothing else
//   references its storage (a shared array is released, not pooled), so a pooled buffer can never alias a live
//   tensor; and even if it did, Swift's copy-on-write would copy before the first write.
// - Memory: pooled buffers are resident memory that a run without the pool would already have freed. A miss (no
//   pooled array of the requested size) releases every pooled array before allocating, and the pool holds at most
//   `maxBuffers`. So the pool never adds to the largest live set of a run whose steps take their outputs from it
//   in the order they were recycled; a step that allocates outside the pool should run after `drain()` (the DC-AE
//   decoder does so, see DCAEDecoderOp.step).
// The pool in effect is a task-local (`BufferPool.current`), set for the duration of one run with `withPool`; code
// with no pool in effect gets fresh uninitialized arrays and recycles nothing, as before.

/// A small recycling pool of float arrays (activation storage) for the duration of one run.
public final class BufferPool: @unchecked Sendable {  // mutable state behind `lock`
    /// What the pool did (tests and profiling).
    public struct Counters: Sendable, Equatable {
        public var hits = 0       // take served by a recycled array
        public var misses = 0     // take that allocated
        public var recycled = 0   // arrays kept by recycle
        public var released = 0   // arrays released: shared, too small, over maxBuffers, or evicted by a miss / drain
    }

    /// Arrays smaller than this are neither pooled nor taken from the pool: malloc reuses small blocks already.
    public let minimumCount: Int
    /// Most arrays held at once.
    public let maxBuffers: Int
    /// Test switch: when set, every array `take` returns is filled with this value first (e.g. .nan), so a kernel
    /// that reads its output before writing it shows up.
    public let poison: Float?

    private let lock = NSLock()
    private var free: [[Float]] = []  // most recently recycled last
    private var tally = Counters()

    public init(minimumCount: Int = 1 << 16, maxBuffers: Int = 4, poison: Float? = nil) {
        precondition(minimumCount >= 1 && maxBuffers >= 0, "BufferPool: bad limits")
        self.minimumCount = minimumCount
        self.maxBuffers = maxBuffers
        self.poison = poison
    }

    /// The pool in effect for the current task or thread (nil: no pooling).
    @TaskLocal public static var current: BufferPool?

    /// Runs `body` with `pool` (a new one by default) in effect; a new pool and what it holds are released when
    /// `body` returns.
    public static func withPool<R>(_ pool: BufferPool = BufferPool(), _ body: () throws -> R) rethrows -> R {
        try $current.withValue(pool, operation: body)
    }

    /// Runs `body` with the pool in effect, or with a new one (as `withPool`) when none is.
    public static func withCurrentOrNewPool<R>(_ body: () throws -> R) rethrows -> R {
        if current != nil { return try body() }
        return try withPool(BufferPool(), body)
    }

    /// An array of `count` floats with unspecified values, from the current pool if one is in effect.
    public static func uninitialized(count: Int) -> [Float] {
        if let pool = current { return pool.take(count: count) }
        return freshUninitialized(count)
    }

    /// Gives `array` back to the current pool (if any) and leaves it empty.
    public static func recycle(_ array: inout [Float]) {
        if let pool = current { pool.recycle(&array) } else { array = [] }
    }

    /// An array of exactly `count` floats with unspecified values: a pooled array of that size (the most recently
    /// recycled), else a fresh one, after releasing every pooled array (they are of other sizes).
    public func take(count: Int) -> [Float] {
        var out: [Float]
        if count < minimumCount {
            out = Self.freshUninitialized(count)
        } else {
            lock.lock()
            if let i = free.lastIndex(where: { $0.count == count }) {
                out = free.remove(at: i)
                tally.hits += 1
                lock.unlock()
            } else {
                tally.misses += 1
                tally.released += free.count
                free.removeAll()  // released before the new allocation, so the two never coexist
                lock.unlock()
                out = Self.freshUninitialized(count)
            }
        }
        if let poison { out.withUnsafeMutableBufferPointer { $0.update(repeating: poison) } }
        return out
    }

    /// Keeps `array` for a later `take` if it is large enough and nothing else references its storage; leaves
    /// `array` empty either way.
    public func recycle(_ array: inout [Float]) {
        let keep = array.count >= minimumCount && maxBuffers > 0 && Self.isUniquelyReferenced(&array)
        var given: [Float] = []
        swap(&given, &array)
        lock.lock()
        defer { lock.unlock() }
        guard keep else {
            tally.released += 1
            return
        }
        free.append(given)
        tally.recycled += 1
        if free.count > maxBuffers {
            free.removeFirst()  // the oldest
            tally.released += 1
        }
    }

    /// Releases every pooled array.
    public func drain() {
        lock.lock()
        defer { lock.unlock() }
        tally.released += free.count
        free.removeAll()
    }

    /// Bytes held in the pool now.
    public var pooledBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return free.reduce(0) { $0 + $1.count } * MemoryLayout<Float>.size
    }

    public var counters: Counters {
        lock.lock()
        defer { lock.unlock() }
        return tally
    }

    /// A new array of `count` floats whose memory is not written (the caller overwrites it).
    static func freshUninitialized(_ count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    /// True when `array`'s storage has no other reference (a copy of it elsewhere would make it shared).
    /// Array has no public uniqueness test, so its one stored property, the storage object, is checked directly
    /// (the layout is asserted; `BufferPoolTests.testSharedArraysAreNotPooled` checks the answer both ways).
    static func isUniquelyReferenced(_ array: inout [Float]) -> Bool {
        precondition(MemoryLayout<[Float]>.size == MemoryLayout<AnyObject>.size, "BufferPool: unexpected Array layout")
        var storage = unsafeBitCast(array, to: AnyObject.self)  // a second reference …
        array = []                                             // … and the array's own one dropped
        let unique = isKnownUniquelyReferenced(&storage)
        array = unsafeBitCast(storage, to: [Float].self)
        return unique
    }
}
