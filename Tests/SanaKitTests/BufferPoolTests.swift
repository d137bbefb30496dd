import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

/// BufferPool (Sources/SanaKit/BufferPool.swift): reuse happens, a pooled buffer never aliases a live array, misses
/// release what the pool holds, and the DC-AE decoder gives bit-identical results with recycled (poisoned) storage.
final class BufferPoolTests: XCTestCase {
    private func address(_ a: [Float]) -> UnsafePointer<Float>? { a.withUnsafeBufferPointer { $0.baseAddress } }

    func testTakeReusesRecycledStorageOfTheSameSize() {
        let pool = BufferPool(minimumCount: 16)
        var a = pool.take(count: 100)
        let storage = address(a)
        for i in 0 ..< a.count { a[i] = Float(i) }
        pool.recycle(&a)
        XCTAssertTrue(a.isEmpty)
        XCTAssertEqual(pool.pooledBytes, 400)
        let b = pool.take(count: 100)
        XCTAssertEqual(address(b), storage, "the recycled storage is handed out again")
        XCTAssertEqual(b.count, 100)
        XCTAssertEqual(pool.pooledBytes, 0)
        XCTAssertEqual(pool.counters, BufferPool.Counters(hits: 1, misses: 1, recycled: 1, released: 0))
    }

    func testMissReleasesPooledBuffersAndSmallArraysBypass() {
        let pool = BufferPool(minimumCount: 16, maxBuffers: 2)
        var a = pool.take(count: 100), b = pool.take(count: 100), c = pool.take(count: 100)
        pool.recycle(&a)
        pool.recycle(&b)
        pool.recycle(&c)  // over maxBuffers: the oldest goes
        XCTAssertEqual(pool.pooledBytes, 800)
        _ = pool.take(count: 50)  // no array of that size: everything pooled is released first
        XCTAssertEqual(pool.pooledBytes, 0)
        var small = pool.take(count: 8)
        pool.recycle(&small)
        XCTAssertEqual(pool.pooledBytes, 0, "arrays under minimumCount are not pooled")
        XCTAssertEqual(pool.counters, BufferPool.Counters(hits: 0, misses: 4, recycled: 3, released: 4))
    }

    /// An array whose storage is still referenced elsewhere (a live tensor's copy) is released, not pooled; and two
    /// takes never share storage.
    func testSharedArraysAreNotPooled() {
        var unique = (0 ..< 64).map(Float.init)
        XCTAssertTrue(BufferPool.isUniquelyReferenced(&unique))
        XCTAssertEqual(unique, (0 ..< 64).map(Float.init))
        let pool = BufferPool(minimumCount: 16)
        var a = (0 ..< 64).map(Float.init)
        let live = a  // a tensor still holding the same storage
        XCTAssertFalse(BufferPool.isUniquelyReferenced(&a))
        pool.recycle(&a)
        XCTAssertEqual(pool.pooledBytes, 0)
        var x = pool.take(count: 64)
        x.withUnsafeMutableBufferPointer { $0.update(repeating: -1) }
        XCTAssertEqual(live, (0 ..< 64).map(Float.init), "the live copy is untouched")
        let y = pool.take(count: 64)
        XCTAssertNotEqual(address(x), address(y))
    }

    func testNoPoolInEffectAllocatesAndRecyclesNothing() {
        XCTAssertNil(BufferPool.current)
        var a = BufferPool.uninitialized(count: 1 << 17)
        XCTAssertEqual(a.count, 1 << 17)
        BufferPool.recycle(&a)
        XCTAssertTrue(a.isEmpty)
        let pool = BufferPool()
        BufferPool.withPool(pool) {
            XCTAssertTrue(BufferPool.current === pool)
            BufferPool.withCurrentOrNewPool { XCTAssertTrue(BufferPool.current === pool) }
        }
        XCTAssertNil(BufferPool.current)
    }

    /// The decoder recycles its activations (ResBlock, up-sampling and attention steps take pooled storage) and the
    /// result is bit-identical to a decode that reuses nothing, with every handed-out buffer poisoned with NaN first
    /// (a kernel reading its output before writing it would show). Full-frame and tiled.
    func testDecoderWithRecycledStorageIsBitIdentical() throws {
        for name in AutoencoderDCTests.cases {
            let dir = Fixtures.path("dcae/\(name)")
            let ae = try AutoencoderDC(config: try AutoencoderDCConfig.load(path: dir + "/config.json"),
                                       source: try SafetensorsFile(path: dir + "/weights.safetensors"), parts: .decoder)
            let decoder = try XCTUnwrap(ae.decoder)
            let z = AutoencoderDCTilingTests.latent([2, ae.config.latentChannels, 19, 14])
            let overlap = AutoencoderDC.exactOverlapLatent(config: ae.config)
            let plan = DecodePlan(boundary: 0, tile: 5, haloCap: overlap)
            func decode(_ pool: BufferPool) throws -> (full: Tensor, tiled: Tensor) {
                try BufferPool.withPool(pool) { (try ae.decode(z), ae.tiledDecode(decoder, z, plan: plan)) }
            }
            let plain = try decode(BufferPool(minimumCount: 1, maxBuffers: 0))  // every take fresh
            let pool = BufferPool(minimumCount: 1, poison: .nan)
            let pooled = try decode(pool)
            let c = pool.counters
            print("DC-AE \(name) buffer pool: \(c)")
            // evit_small has one layer per stage: no two steps of the same size follow each other, nothing to reuse
            if name != "pixel_shuffle_evit_small" { XCTAssertGreaterThan(c.hits, 0, name) }
            XCTAssertEqual(pool.pooledBytes, 0, "a decode leaves the pool empty")
            for (a, b) in [(pooled.full, plain.full), (pooled.tiled, plain.tiled)] {
                XCTAssertEqual(a.shape, b.shape)
                XCTAssertEqual(a.data.map(\.bitPattern), b.data.map(\.bitPattern), name)
            }
        }
    }
}
