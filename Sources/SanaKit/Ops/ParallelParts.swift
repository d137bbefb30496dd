// Attention heads in parallel, each head's small sgemm calls on one OpenBLAS thread.
//
// Why: the attention cores call sgemm once or twice per head on small matrices (32×32 key statistics, a few hundred
// caption keys). Left multi-threaded, OpenBLAS wakes its workers for each call and they then spin (sched_yield) for a
// while before sleeping — on a 2-core machine that spinning competed with the integer GEMM threads and showed as
// ~20 % of the process's samples in `perf` (docs/BENCHMARKS.md). Splitting the heads over our own workers with
// OpenBLAS at one thread keeps both cores busy with useful work and leaves OpenBLAS's pool asleep.
import COpenBLAS
import CSanaKernels
import Foundation

/// Lets unsafe pointers cross into the concurrent workers; each worker writes disjoint parts (per head).
struct SendablePointer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Calls body(worker, heads) for a partition of 0 ..< count over up to sana_get_threads() workers, OpenBLAS
/// single-threaded meanwhile (restored after). `worker` indexes per-worker scratch.
func forEachHeadInParallel(_ count: Int, _ body: @Sendable (_ worker: Int, _ heads: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let workers = max(1, min(Int(sana_get_threads()), count))
    let blasThreads = openblas_get_num_threads()
    if blasThreads != 1 { openblas_set_num_threads(1) }
    defer { if blasThreads != 1 { openblas_set_num_threads(blasThreads) } }
    if workers == 1 { return body(0, 0 ..< count) }
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        body(w, (w * count / workers) ..< ((w + 1) * count / workers))
    }
}
