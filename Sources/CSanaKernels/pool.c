// Persistent thread pool: workers are created once (grown when more threads are asked for) and wait on a
// condition variable between calls; the caller takes items too. No thread is created per call.
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define SANA_MAX_THREADS 256
// Takes per thread of an even split: small enough that a late thread's items are picked up by the others,
// large enough that each take is a long run of items.
#ifndef POOL_TAKES_PER_THREAD
#define POOL_TAKES_PER_THREAD 8
#endif

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;  // serializes callers
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static int32_t g_requested = 0;  // sana_set_threads value, 0 = all cores
static int32_t g_workers = 0;    // worker threads started (excluding callers)
static uint64_t g_generation = 0;
static int32_t g_active = 0;     // threads taking part in the current call (including the caller)
static atomic_int g_pending;     // workers still running the current call
static sana_range_fn g_fn;
static void *g_ctx;
static int64_t g_items;

static atomic_llong g_next;  // first item not yet taken
static int64_t g_grain;       // items per take

/// Takes runs of g_grain items until none are left. Dynamic rather than a fixed share per thread: when one core is
/// busy with something else (the block prefetch thread, the OS), the other takes over its items instead of
/// waiting for it at the end of the call. Items are independent (every caller's ranges write disjoint outputs,
/// each computed the same way whichever thread runs it), so the split does not change any result.
static void run_items(void) {
    for (;;) {
        int64_t i0 = atomic_fetch_add(&g_next, g_grain);
        if (i0 >= g_items) return;
        g_fn(g_ctx, i0, i0 + g_grain < g_items ? i0 + g_grain : g_items);
    }
}

static void *worker(void *arg) {
    int32_t index = (int32_t)(intptr_t)arg;  // 1-based (the caller is thread 0): takes part while index < g_active
    uint64_t seen = 0;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (g_generation == seen) pthread_cond_wait(&wake, &lock);
        seen = g_generation;
        int32_t active = g_active;
        pthread_mutex_unlock(&lock);
        if (index < active) {
            run_items();
            if (atomic_fetch_sub(&g_pending, 1) == 1) {
                pthread_mutex_lock(&lock);
                pthread_cond_signal(&done);
                pthread_mutex_unlock(&lock);
            }
        }
        pthread_mutex_lock(&lock);
    }
    return NULL;
}

void sana_set_threads(int32_t threads) { g_requested = threads < 1 ? 0 : threads; }
int32_t sana_get_threads(void) { return sana_pool_threads(); }

int32_t sana_pool_threads(void) {
    int32_t t = g_requested;
    if (t < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        t = online > 0 ? (int32_t)online : 1;
    }
    return t > SANA_MAX_THREADS ? SANA_MAX_THREADS : t;
}

void sana_parallel_for(int64_t items, sana_range_fn fn, void *ctx) {
    if (items <= 0) return;
    int32_t threads = sana_pool_threads();
    if (threads > items) threads = (int32_t)items;
    if (threads <= 1) {
        fn(ctx, 0, items);
        return;
    }
    pthread_mutex_lock(&call_lock);
    pthread_mutex_lock(&lock);
    while (g_workers < threads - 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)(g_workers + 1)) != 0) break;
        pthread_detach(t);
        g_workers++;
    }
    if (threads > g_workers + 1) threads = g_workers + 1;
    g_fn = fn;
    g_ctx = ctx;
    g_items = items;
    g_grain = items / ((int64_t)threads * POOL_TAKES_PER_THREAD);
    if (g_grain < 1) g_grain = 1;
    atomic_store(&g_next, 0);
    g_active = threads;
    atomic_store(&g_pending, threads - 1);
    g_generation++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    run_items();

    pthread_mutex_lock(&lock);
    while (atomic_load(&g_pending) > 0) pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&call_lock);
}

static void visit_range(void *ctx, int64_t i0, int64_t i1) {
    int32_t *visits = (int32_t *)ctx;
    for (int64_t i = i0; i < i1; i++) visits[i]++;
}

void sana_pool_visit_for_testing(int64_t items, int32_t *visits) { sana_parallel_for(items, visit_range, visits); }

// Per-thread scratch buffers (activation panels, repacked weight tiles), grown on demand and kept.
static _Thread_local void *scratch_ptr[8];
static _Thread_local size_t scratch_size[8];

void *sana_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= 8) return NULL;
    if (scratch_size[slot] >= bytes) return scratch_ptr[slot];
    free(scratch_ptr[slot]);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    scratch_ptr[slot] = aligned_alloc(64, rounded);
    scratch_size[slot] = scratch_ptr[slot] ? rounded : 0;
    return scratch_ptr[slot];
}
