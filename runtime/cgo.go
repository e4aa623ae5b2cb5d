package runtime

// The runtime's own cgo: the trampoline that runs a program's steps on one
// thread, and its barrier. Loading the kernels (dlopen/dlsym/dlclose) and
// aligned allocation are package native's, shared with codegen.
//
// Every buffer a kernel sees is C memory (posix_memalign), so no Go pointer
// ever crosses into C: the cgo pointer rules hold trivially, and the Go
// garbage collector never scans or moves tensor data.

/*
#cgo LDFLAGS: -lpthread
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// The kernel ABI of package artifact.
typedef void (*slc_kernel)(void **args, int64_t tid, int64_t nthreads, void *scratch);

// One step of a program: a resolved kernel, its argument pointers, the
// threads that run it (tid < nthreads; the others only wait at its barrier)
// and their scratch areas (thread tid's at scratch + tid·stride).
typedef struct {
	slc_kernel fn;
	void **args;
	char *scratch;
	int64_t stride;
	int64_t nthreads;
} slc_step;

// A reusable barrier for nthreads threads: waiters spin briefly on the
// generation counter (steps are often short, and a futex round trip costs
// more than the spin), then sleep on the condition variable so that threads
// outnumbering the cores do not burn the straggler's CPU. The last thread to
// arrive resets the count, bumps the generation and, only when some waiter
// went to sleep, broadcasts under the mutex. A sleeper announces itself
// (sleepers) before it checks the generation, and the releaser bumps the
// generation before it reads sleepers, both sequentially consistent: so
// either the releaser sees the sleeper and wakes it, or the sleeper sees the
// new generation and does not wait.
typedef struct {
	_Atomic int64_t arrived;
	_Atomic int64_t generation;
	_Atomic int64_t sleepers; // waiters that may be in pthread_cond_wait
	int64_t nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} slc_barrier;

enum { SLC_SPIN = 2000 };

static inline void slc_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static slc_barrier *slc_barrier_new(int64_t nthreads) {
	slc_barrier *b = calloc(1, sizeof *b);
	if (b == NULL) {
		return NULL;
	}
	b->nthreads = nthreads;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	return b;
}

static void slc_barrier_free(slc_barrier *b) {
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	free(b);
}

static void slc_barrier_wait(slc_barrier *b) {
	int64_t gen = atomic_load_explicit(&b->generation, memory_order_acquire);
	if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->nthreads - 1) {
		atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
		atomic_store(&b->generation, gen + 1);
		if (atomic_load(&b->sleepers) > 0) {
			pthread_mutex_lock(&b->mu);
			pthread_cond_broadcast(&b->cv);
			pthread_mutex_unlock(&b->mu);
		}
		return;
	}
	for (int i = 0; i < SLC_SPIN; i++) {
		if (atomic_load_explicit(&b->generation, memory_order_acquire) != gen) {
			return;
		}
		slc_relax();
	}
	pthread_mutex_lock(&b->mu);
	atomic_fetch_add(&b->sleepers, 1);
	while (atomic_load(&b->generation) == gen) {
		pthread_cond_wait(&b->cv, &b->mu);
	}
	atomic_fetch_sub(&b->sleepers, 1);
	pthread_mutex_unlock(&b->mu);
}

// slc_run is the trampoline: thread tid of nthreads runs every step of a
// program, with a barrier after each one (the last barrier tells the caller
// that all threads are done). It is one cgo call per thread per program run,
// so the per-step cost is a kernel call plus a barrier.
// When ns is not NULL (profiling, thread 0 only), ns[i] accumulates the
// wall time of step i, barrier included: the time the step holds up the run.
static void slc_run(const slc_step *steps, int64_t nsteps, int64_t tid, int64_t nthreads,
		slc_barrier *b, int64_t *ns) {
	struct timespec t0, t1;
	if (ns != NULL) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
	}
	for (int64_t i = 0; i < nsteps; i++) {
		const slc_step *s = &steps[i];
		if (tid < s->nthreads) {
			s->fn(s->args, tid, s->nthreads, s->scratch + tid * s->stride);
		}
		if (nthreads > 1) {
			slc_barrier_wait(b);
		}
		if (ns != NULL) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			ns[i] += (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
			t0 = t1;
		}
	}
}
*/
import "C"

import (
	"errors"
	"unsafe"

	"gitee.com/gidean/conv-linn/native"
)

// stepSize is the size of one C slc_step, for laying out a program's steps.
const stepSize = C.sizeof_slc_step

// cAlloc returns n zeroed bytes of C memory aligned on align; free them with
// cFree (package native, which codegen's kernel timing shares).
func cAlloc(n int64, align int) (unsafe.Pointer, error) { return native.Alloc(n, align) }

func cFree(p unsafe.Pointer) { native.Free(p) }

// library is an open shared object: the artifact's kernels.
type library struct{ *native.Lib }

func dlopen(path string) (*library, error) {
	l, err := native.Open(path)
	if err != nil {
		return nil, err
	}
	return &library{l}, nil
}

// sym returns the address of a symbol.
func (l *library) sym(name string) (unsafe.Pointer, error) { return l.Sym(name) }

func (l *library) close() error { return l.Close() }

// barrier wraps the C barrier the trampoline uses between steps.
type barrier struct{ b *C.slc_barrier }

func newBarrier(nthreads int) (barrier, error) {
	b := C.slc_barrier_new(C.int64_t(nthreads))
	if b == nil {
		return barrier{}, errors.New("out of memory allocating the thread barrier")
	}
	return barrier{b}, nil
}

func (b barrier) free() { C.slc_barrier_free(b.b) }

// setStep fills step i of a C step array: a kernel address, its C array of
// argument pointers, the threads that run it and their scratch areas (one
// of stride bytes each from scratch).
func setStep(steps unsafe.Pointer, i int, fn, args, scratch unsafe.Pointer, stride int64, nthreads int) {
	s := (*C.slc_step)(unsafe.Add(steps, i*stepSize))
	s.fn = C.slc_kernel(fn)
	s.args = (*unsafe.Pointer)(args)
	s.scratch = (*C.char)(scratch)
	s.stride = C.int64_t(stride)
	s.nthreads = C.int64_t(nthreads)
}

// runSteps runs nsteps steps from a C step array as thread tid of nthreads;
// ns, when not nil, holds nsteps int64 that accumulate each step's
// nanoseconds.
func runSteps(steps unsafe.Pointer, nsteps, tid, nthreads int, b barrier, ns *int64) {
	C.slc_run((*C.slc_step)(steps), C.int64_t(nsteps), C.int64_t(tid), C.int64_t(nthreads), b.b, (*C.int64_t)(unsafe.Pointer(ns)))
}
