/* What edgebert's ahead-of-time kernel objects need from outside, written for edgebert.

   Numba (the version pinned in runtime/native/build.py) lowers `prange` loops
   to calls into a threading layer and a scheduler, and array code to a few
   runtime entry points. In a Numba process its own libraries answer them; in
   a library built by runtime/native/build.py this file does, from the
   documented contract of each entry point (not from Numba's sources):

   - numba_parallel_for(fn, args, dims, steps, data, inner_ndim, array_count,
     threads): call fn(args + r*steps, {1, dims[1..inner_ndim]}, steps, data)
     once for every r in [0, dims[0]); here on a pthread pool of our own.
   - get_sched_size / do_scheduling_*: split an inclusive iteration space into
     divisions (start..end per dimension; start > end means no work); the
     chunk size (set_parallel_chunksize) makes them that long, else one per thread.
   - NRT_MemInfo_alloc_aligned / NRT_MemInfo_call_dtor / NRT_Free: refcounted
     buffers {refcount, dtor, dtor_info, data, size, allocator}; the inline
     refcount code Numba emits reads the first and fourth fields.
   - numba_attempt_nocopy_reshape: NumPy's reshape-without-copy stride rule.
   - Python C-API and GIL entry points, which only error paths and the
     parallel wrapper's GIL dance reach: build.py renames them to
     edgebert_stub_<name>, defined here as no-ops that record the error, so the
     library needs no libpython and never takes the GIL.
   tests/runtime/test_native.py lists the objects' undefined symbols against
   what this file defines. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef intptr_t intp;
typedef uintptr_t uintp;

/* ---- errors: the stubs record that a kernel took an error path ---------- */
static _Atomic int last_error = 0;
int edgebert_last_error(void) { return atomic_exchange(&last_error, 0); }
static void note_error(void) { atomic_store(&last_error, 1); }

void *edgebert_stub_PyBytes_FromStringAndSize(const char *s, intp n) { (void)s; (void)n; return NULL; }
void *edgebert_stub_PyUnicode_FromString(const char *s) { (void)s; return NULL; }
void edgebert_stub_PyErr_Clear(void) {}
void edgebert_stub_PyErr_SetNone(void *t) { (void)t; note_error(); }
void edgebert_stub_PyErr_SetString(void *t, const char *s) { (void)t; (void)s; note_error(); }
void edgebert_stub_PyErr_WriteUnraisable(void *o) { (void)o; note_error(); }
void *edgebert_stub_PyEval_SaveThread(void) { return NULL; }
void edgebert_stub_PyEval_RestoreThread(void *t) { (void)t; }
void edgebert_stub_Py_DecRef(void *o) { (void)o; }
int edgebert_stub_numba_gil_ensure(void) { return 0; }
void edgebert_stub_numba_gil_release(int *s) { (void)s; }
void *edgebert_stub_numba_unpickle(const char *d, int n, const char *h) { (void)d; (void)n; (void)h; note_error(); return NULL; }
int edgebert_stub_numba_do_raise(void *e) { (void)e; note_error(); return 0; }
void *edgebert_stub_numba_runtime_build_excinfo_struct(void *a, void *b) { (void)a; (void)b; note_error(); return NULL; }
int edgebert_stub_printf(const char *f, ...) { (void)f; return 0; }
void *edgebert_stub_PyExc_RuntimeError = NULL;
void *edgebert_stub_PyExc_StopIteration = NULL;
void *edgebert_stub_PyExc_SystemError = NULL;
void *edgebert_stub_PyExc_ValueError = NULL;
void *edgebert_stub_PyExc_ZeroDivisionError = NULL;

/* ---- NRT: refcounted, aligned buffers ------------------------------------ */
typedef void (*dtor_fn)(void *data, size_t size, void *info);
typedef struct {
    size_t refct;
    dtor_fn dtor;
    void *dtor_info;
    void *data;
    size_t size;
    void *allocator;
} MemInfo;

static void free_aligned(void *data, size_t size, void *info) { (void)size; (void)data; free(info); }

void *NRT_MemInfo_alloc_aligned(size_t size, unsigned align) {
    if (align < sizeof(void *)) align = sizeof(void *);
    char *base = malloc(sizeof(MemInfo) + size + 2 * align);
    if (!base) return NULL;
    MemInfo *mi = (MemInfo *)base;
    uintp start = (uintp)(base + sizeof(MemInfo));
    start = (start + align - 1) / align * align;
    mi->refct = 1;
    mi->dtor = free_aligned;
    mi->dtor_info = base; /* the whole block goes when the data does */
    mi->data = (void *)start;
    mi->size = size;
    mi->allocator = NULL;
    return mi;
}

void NRT_MemInfo_call_dtor(MemInfo *mi) {
    if (mi->dtor) mi->dtor(mi->data, mi->size, mi->dtor_info);
}

void NRT_Free(void *p) { free(p); }

/* ---- reshape without a copy (NumPy's rule) ------------------------------- */
int numba_attempt_nocopy_reshape(intp nd, const intp *dims, const intp *strides, intp newnd,
                                 const intp *newdims, intp *newstrides, intp itemsize, int is_f_order) {
    intp olddims[64], oldstrides[64];
    intp oldnd = 0;
    if (nd > 64 || newnd > 64) return 0;
    for (intp i = 0; i < nd; i++)
        if (dims[i] != 1) { olddims[oldnd] = dims[i]; oldstrides[oldnd] = strides[i]; oldnd++; }
    intp oi = 0, oj = 1, ni = 0, nj = 1;
    while (ni < newnd && oi < oldnd) {
        intp np_ = newdims[ni], op = olddims[oi];
        while (np_ != op) {
            if (np_ < op) np_ *= newdims[nj++];
            else op *= olddims[oj++];
        }
        for (intp k = oi; k < oj - 1; k++) { /* the old axes of this group must be contiguous */
            if (is_f_order) { if (oldstrides[k + 1] != olddims[k] * oldstrides[k]) return 0; }
            else if (oldstrides[k] != olddims[k + 1] * oldstrides[k + 1]) return 0;
        }
        if (is_f_order) {
            newstrides[ni] = oldstrides[oi];
            for (intp k = ni + 1; k < nj; k++) newstrides[k] = newstrides[k - 1] * newdims[k - 1];
        } else {
            newstrides[nj - 1] = oldstrides[oj - 1];
            for (intp k = nj - 1; k > ni; k--) newstrides[k - 1] = newstrides[k] * newdims[k];
        }
        ni = nj++;
        oi = oj++;
    }
    intp last = ni >= 1 ? newstrides[ni - 1] : itemsize;
    if (is_f_order && ni >= 1) last *= newdims[ni - 1];
    for (intp k = ni; k < newnd; k++) newstrides[k] = last; /* trailing axes of length 1 */
    return 1;
}

/* ---- scheduling ----------------------------------------------------------- */
static _Thread_local uintp chunk_size = 0;
uintp get_parallel_chunksize(void) { return chunk_size; }
void set_parallel_chunksize(uintp n) { chunk_size = n; }

static uintp divisions(uintp threads, intp start, intp end) {
    intp n = end - start + 1;
    if (n <= 0) return threads; /* each gets an empty division */
    if (chunk_size > 0) return (uintp)((n + (intp)chunk_size - 1) / (intp)chunk_size);
    return threads;
}

uintp get_sched_size(uintp threads, uintp num_dim, intp *starts, intp *ends) {
    (void)num_dim;
    return divisions(threads, starts[0], ends[0]);
}

/* Split dimension 0 into `count` contiguous runs (other dimensions whole);
   each division is {start_0..start_{D-1}, end_0..end_{D-1}}, ends inclusive. */
static void schedule(uintp num_dim, intp *starts, intp *ends, uintp count, intp *sched) {
    intp n = ends[0] - starts[0] + 1, cur = 0;
    for (uintp i = 0; i < count; i++) {
        intp *s = sched + i * 2 * num_dim, *e = s + num_dim;
        intp len = n <= 0 ? 0 : chunk_size > 0 ? (intp)chunk_size : (n - cur + (intp)(count - i) - 1) / (intp)(count - i);
        if (cur + len > n) len = n > cur ? n - cur : 0;
        for (uintp d = 0; d < num_dim; d++) { s[d] = starts[d]; e[d] = ends[d]; }
        if (len == 0) { s[0] = 1; e[0] = 0; continue; }
        s[0] = starts[0] + cur;
        e[0] = starts[0] + cur + len - 1;
        cur += len;
    }
}

void do_scheduling_signed(uintp num_dim, intp *starts, intp *ends, uintp count, intp *sched, intp debug) {
    (void)debug;
    if (count) schedule(num_dim, starts, ends, count, sched);
}

void do_scheduling_unsigned(uintp num_dim, intp *starts, intp *ends, uintp count, uintp *sched, intp debug) {
    (void)debug;
    if (count) schedule(num_dim, starts, ends, count, (intp *)sched);
}

void *allocate_sched(uintp n) { return malloc(n ? n * sizeof(intp) : sizeof(intp)); }
void deallocate_sched(void *p) { free(p); }

/* ---- threads: a pool of workers that take divisions off a shared counter -- */
typedef void (*gufunc_fn)(char **args, size_t *dims, size_t *steps, void *data);

#define MAX_THREADS 256
#define MAX_ARGS 64

static int default_threads = 1;
static _Thread_local int tls_threads = 0;  /* this thread's count; 0 = the default */
static _Thread_local int tls_id = 0;       /* 0 = a caller, 1.. = pool workers */
static _Thread_local int tls_in_pool = 0;  /* inside a parallel region: nested loops run inline */

int get_num_threads(void) { return tls_threads > 0 ? tls_threads : default_threads; }
void set_num_threads(int n) { tls_threads = n; }
int get_thread_id(void) { return tls_id; }
void edgebert_set_default_threads(int n) { default_threads = n > 0 ? (n < MAX_THREADS ? n : MAX_THREADS) : 1; }

typedef struct {
    gufunc_fn fn;
    char **args;
    size_t *dims, *steps;
    void *data;
    size_t inner_ndim, array_count, total;
    int threads;
    _Atomic size_t next, done;
    _Atomic int active;  /* workers inside run_divisions: the caller's frame must outlive them */
} Job;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;  /* one region at a time */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static Job *volatile current = NULL;
static _Atomic unsigned long generation = 0;
static int workers = 0;  /* started worker threads */

static void run_divisions(Job *job) {
    size_t count[MAX_ARGS + 1];
    char *args[MAX_ARGS];
    memcpy(count, job->dims, (job->inner_ndim + 1) * sizeof(size_t));
    count[0] = 1;
    int saved = tls_in_pool, saved_threads = tls_threads;
    tls_in_pool = 1;
    tls_threads = job->threads;
    for (;;) {
        size_t r = atomic_fetch_add(&job->next, 1);
        if (r >= job->total) break;
        for (size_t j = 0; j < job->array_count; j++)
            args[j] = job->args[j] ? job->args[j] + job->steps[j] * r : NULL;
        job->fn(args, count, job->steps, job->data);
        atomic_fetch_add(&job->done, 1);
    }
    tls_in_pool = saved;
    tls_threads = saved_threads;
}

static void *worker_main(void *arg) {
    tls_id = (int)(intptr_t)arg;
    unsigned long seen = atomic_load(&generation);
    for (;;) {
        Job *job = NULL;
        for (int spin = 0; spin < 20000 && atomic_load(&generation) == seen; spin++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        pthread_mutex_lock(&wake_lock);
        while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &wake_lock);
        seen = atomic_load(&generation);
        job = current;
        if (job && tls_id < job->threads) atomic_fetch_add(&job->active, 1);
        else job = NULL;
        pthread_mutex_unlock(&wake_lock);
        if (job) {
            run_divisions(job);
            atomic_fetch_sub(&job->active, 1);
        }
    }
    return NULL;
}

static void ensure_workers(int n) {  /* called with pool_lock held */
    while (workers < n - 1 && workers < MAX_THREADS - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker_main, (void *)(intptr_t)(workers + 1)) != 0) break;
        pthread_attr_destroy(&attr);
        workers++;
    }
}

static void after_fork_in_child(void) {  /* the pool's threads do not exist in a forked child */
    pthread_mutex_init(&pool_lock, NULL);
    pthread_mutex_init(&wake_lock, NULL);
    pthread_cond_init(&wake, NULL);
    workers = 0;
    current = NULL;
}

__attribute__((constructor)) static void edgebert_shim_init(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    edgebert_set_default_threads(n > 0 ? (int)n : 1);
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

void numba_parallel_for(void *fn, char **args, size_t *dims, size_t *steps, void *data,
                        size_t inner_ndim, size_t array_count, int num_threads) {
    Job job = {(gufunc_fn)fn, args, dims, steps, data, inner_ndim, array_count, dims[0],
               num_threads < 1 ? 1 : num_threads, 0, 0, 0};
    if (array_count > MAX_ARGS || inner_ndim > MAX_ARGS) { note_error(); return; }
    /* one thread, a nested loop, or another caller's region in flight: run here */
    if (job.threads == 1 || job.total <= 1 || tls_in_pool || pthread_mutex_trylock(&pool_lock) != 0) {
        job.threads = 1;
        run_divisions(&job);
        return;
    }
    if (job.threads > MAX_THREADS) job.threads = MAX_THREADS;
    ensure_workers(job.threads);
    if (job.threads > workers + 1) job.threads = workers + 1;
    pthread_mutex_lock(&wake_lock);
    current = &job;
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&wake_lock);
    run_divisions(&job);
    while (atomic_load(&job.done) < job.total) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_lock(&wake_lock);
    current = NULL;  /* no worker joins after this */
    pthread_mutex_unlock(&wake_lock);
    while (atomic_load(&job.active) > 0) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_unlock(&pool_lock);
}
