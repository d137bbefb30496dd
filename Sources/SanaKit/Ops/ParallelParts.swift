// Work split over our own workers, each part's sgemm calls on one OpenBLAS thread: the attention heads, and the
// column blocks of the float products (`Linear.apply` on f32 / unpacked weights).
//
// Why: OpenBLAS's own workers, once woken by a multi-threaded call, spin (sched_yield) for up to 2^28 cycles
// (OpenBLAS's THREAD_TIMEOUT, ~70 ms here) before they sleep. On a 2-core machine the spinner takes a core from
// the integer GEMM threads that run next: the heads' many small sgemm calls showed as ~20 % of the process's samples
// in `perf`, and two small f32 products per DiT step (patch embedding, proj_out) cost ~3 % of the denoising
// (docs/BENCHMARKS.md). With every part on one OpenBLAS thread, OpenBLAS's pool is never woken.
import COpenBLAS
import CSanaKernels
import Foundation

/// Lets unsafe pointers cross into the concurrent workers; each worker writes disjoint parts.
struct SendablePointer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Calls body(worker, parts) for a partition of 0 ..< count over up to sana_get_threads() workers, OpenBLAS
/// single-threaded meanwhile (restored after). `worker` indexes per-worker scratch.
func forEachPartInParallel(_ count: Int, _ body: @Sendable (_ worker: Int, _ parts: Range<Int>) -> Void) {
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
