//go:build cgo

package collective

// The Open MPI binding: libmpi.so.40 loaded with dlopen, nine functions and
// seven handles looked up with dlsym. Open MPI's handles (MPI_Comm,
// MPI_Datatype, MPI_Op, MPI_Errhandler) are pointers to exported objects —
// its mpi.h defines MPI_COMM_WORLD as &ompi_mpi_comm_world, MPI_FLOAT as
// &ompi_mpi_float, MPI_SUM as &ompi_mpi_op_sum — so the address dlsym
// returns for the object's name is the handle itself.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *MPI_Comm;
typedef void *MPI_Datatype;
typedef void *MPI_Errhandler;

static void *h;
static MPI_Comm world;
static MPI_Datatype t_float, t_byte;
static MPI_Errhandler errors_return;

static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_finalize)(void);
static int (*p_rank)(MPI_Comm, int *);
static int (*p_size)(MPI_Comm, int *);
static int (*p_set_errhandler)(MPI_Comm, MPI_Errhandler);
static int (*p_error_string)(int, char *, int *);
static int (*p_alltoall)(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm);
static int (*p_allgather)(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm);
static int (*p_bcast)(void *, int, MPI_Datatype, int, MPI_Comm);
static int (*p_abort)(MPI_Comm, int);

static char loaderr[512];

// load opens libmpi and resolves what the binding uses; NULL or the error.
static const char *load(const char *path) {
	// RTLD_GLOBAL: Open MPI's own plugins (mca_*.so) resolve libmpi's
	// symbols from the global namespace.
	h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (!h) {
		snprintf(loaderr, sizeof loaderr, "%s", dlerror());
		return loaderr;
	}
#define SYM(var, name) if (!(*(void **)&var = dlsym(h, name))) { snprintf(loaderr, sizeof loaderr, "%s has no %s (not Open MPI?)", path, name); return loaderr; }
	SYM(p_init_thread, "MPI_Init_thread")
	SYM(p_finalize, "MPI_Finalize")
	SYM(p_rank, "MPI_Comm_rank")
	SYM(p_size, "MPI_Comm_size")
	SYM(p_set_errhandler, "MPI_Comm_set_errhandler")
	SYM(p_error_string, "MPI_Error_string")
	SYM(p_alltoall, "MPI_Alltoall")
	SYM(p_allgather, "MPI_Allgather")
	SYM(p_bcast, "MPI_Bcast")
	SYM(p_abort, "MPI_Abort")
	SYM(world, "ompi_mpi_comm_world")
	SYM(t_float, "ompi_mpi_float")
	SYM(t_byte, "ompi_mpi_byte")
	SYM(errors_return, "ompi_mpi_errors_return")
	return 0;
}

// MPI_THREAD_FUNNELED: every call comes from the thread that initialised
// (the binding's worker, locked to its OS thread).
enum { THREAD_FUNNELED = 1 };

static int c_init(int *rank, int *size) {
	// Open MPI would install its own SIGSEGV/SIGBUS/SIGFPE handlers over
	// the Go runtime's (which turns a nil dereference into a panic).
	setenv("OMPI_MCA_opal_signal", "", 0);
	int provided = 0;
	int rc = p_init_thread(0, 0, THREAD_FUNNELED, &provided);
	if (rc) return rc;
	if ((rc = p_set_errhandler(world, errors_return))) return rc;
	if ((rc = p_rank(world, rank))) return rc;
	return p_size(world, size);
}

static void c_errstr(int code, char *buf, int n) {
	int len = 0;
	buf[0] = 0;
	if (p_error_string && p_error_string(code, buf, &len) == 0 && len < n) buf[len] = 0;
}

static int c_alltoall_f32(const void *s, void *r, int n) { return p_alltoall(s, n, t_float, r, n, t_float, world); }
static int c_allgather_f32(const void *s, void *r, int n) { return p_allgather(s, n, t_float, r, n, t_float, world); }
static int c_allgather_bytes(const void *s, void *r, int n) { return p_allgather(s, n, t_byte, r, n, t_byte, world); }
static int c_bcast_bytes(void *b, int n, int root) { return p_bcast(b, n, t_byte, root, world); }
static int c_finalize(void) { return p_finalize(); }
static void c_abort(int code) { p_abort(world, code); }
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"math"
	goruntime "runtime"
	"sync"
	"time"
	"unsafe"
)

// mpiComm is MPI_COMM_WORLD. Every MPI call runs on one worker goroutine
// locked to the OS thread that initialised MPI (MPI_THREAD_FUNNELED); the
// caller waits for it with a timeout, so that a peer that never answers
// ends in an error instead of a hang (the worker then stays blocked in MPI,
// and the process is expected to exit).
type mpiComm struct {
	rank, size int
	timeout    time.Duration
	calls      chan func()

	mu     sync.Mutex
	broken error

	// Scratch of AllReduceSum, grown as needed.
	send, recv, part []float32
}

var (
	mpiOnce  sync.Once
	mpiWorld *mpiComm
	mpiErr   error
)

// openMPI initialises MPI (once per process) and returns MPI_COMM_WORLD.
func openMPI(opt Options) (Comm, error) {
	mpiOnce.Do(func() {
		lib := LibMPI()
		path := C.CString(lib)
		defer C.free(unsafe.Pointer(path))
		if msg := C.load(path); msg != nil {
			mpiErr = fmt.Errorf("launched by mpirun, but Open MPI's library %s cannot be loaded (%s): install it (Debian: apt-get install openmpi-bin libopenmpi-dev) on every machine of the run, or name it with SLC_LIBMPI", lib, C.GoString(msg))
			return
		}
		c := &mpiComm{timeout: opt.Timeout, calls: make(chan func())}
		ready := make(chan error)
		go func() {
			goruntime.LockOSThread() // for good: MPI's thread
			var rank, size C.int
			if rc := C.c_init(&rank, &size); rc != 0 {
				ready <- fmt.Errorf("MPI_Init_thread: %s", errString(rc))
				return
			}
			c.rank, c.size = int(rank), int(size)
			ready <- nil
			for f := range c.calls {
				f()
			}
		}()
		if err := <-ready; err != nil {
			mpiErr = err
			return
		}
		mpiWorld = c
	})
	if mpiErr != nil {
		return nil, mpiErr
	}
	mpiWorld.timeout = opt.Timeout
	return mpiWorld, nil
}

func errString(rc C.int) string {
	var buf [512]C.char
	C.c_errstr(rc, &buf[0], C.int(len(buf)))
	if s := C.GoString(&buf[0]); s != "" {
		return s
	}
	return fmt.Sprintf("MPI error %d", int(rc))
}

func (c *mpiComm) Rank() int    { return c.rank }
func (c *mpiComm) Size() int    { return c.size }
func (c *mpiComm) Name() string { return "mpi" }

// call runs f on the MPI thread and waits for it, at most c.timeout.
func (c *mpiComm) call(op string, f func() C.int) error {
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if broken != nil {
		return broken
	}
	done := make(chan C.int, 1)
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case c.calls <- func() { done <- f() }:
	case <-timer.C:
		return c.fail(&PeerError{Rank: c.rank, Size: c.size, Op: op, Msg: "the MPI thread is still blocked in an earlier collective"})
	}
	select {
	case rc := <-done:
		if rc != 0 {
			return c.fail(&PeerError{Rank: c.rank, Size: c.size, Op: op, Msg: errString(rc) + " (a rank died or a machine became unreachable)"})
		}
		return nil
	case <-timer.C:
		return c.fail(&PeerError{Rank: c.rank, Size: c.size, Op: op, Msg: fmt.Sprintf("no answer from the other ranks within %v (a rank died, hangs or is unreachable)", c.timeout)})
	}
}

func (c *mpiComm) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = err
	}
	return c.broken
}

// AllReduceSum: MPI_Alltoall scatters slice k of every rank's buffer to
// rank k, which adds them in rank order; MPI_Allgather returns the sums.
func (c *mpiComm) AllReduceSum(x []float32) error {
	n := c.size
	chunk := (len(x) + n - 1) / n
	if chunk > math.MaxInt32 {
		return fmt.Errorf("collective: %d floats are too many for one all-reduce over %d ranks", len(x), n)
	}
	if len(x) == 0 {
		return nil
	}
	total := chunk * n
	send := x // in place when the length splits evenly (Padded lengths do)
	if total != len(x) {
		c.send = grow(c.send, total)
		send = c.send[:total]
		copy(send, x)
		clear(send[len(x):])
	}
	c.recv = grow(c.recv, total)
	c.part = grow(c.part, chunk)
	recv, part := c.recv[:total], c.part[:chunk]
	if err := c.call("all-reduce", func() C.int {
		return C.c_alltoall_f32(unsafe.Pointer(&send[0]), unsafe.Pointer(&recv[0]), C.int(chunk))
	}); err != nil {
		return err
	}
	sumInRankOrder(part, recv, n)
	if err := c.call("all-reduce", func() C.int {
		return C.c_allgather_f32(unsafe.Pointer(&part[0]), unsafe.Pointer(&send[0]), C.int(chunk))
	}); err != nil {
		return err
	}
	if total != len(x) {
		copy(x, send)
	}
	return nil
}

// AllReduceSum64 gathers every rank's values and adds them in rank order.
func (c *mpiComm) AllReduceSum64(x []float64) error {
	b := make([]byte, 8*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	all, err := c.allGatherFixed("all-reduce", b)
	if err != nil {
		return err
	}
	for i := range x {
		var s float64
		for r := 0; r < c.size; r++ {
			s += math.Float64frombits(binary.LittleEndian.Uint64(all[r*len(b)+8*i:]))
		}
		x[i] = s
	}
	return nil
}

// allGatherFixed gathers len(b) bytes from every rank (the same length on
// every rank), rank after rank.
func (c *mpiComm) allGatherFixed(op string, b []byte) ([]byte, error) {
	all := make([]byte, len(b)*c.size)
	if len(b) == 0 {
		return all, nil
	}
	err := c.call(op, func() C.int {
		return C.c_allgather_bytes(unsafe.Pointer(&b[0]), unsafe.Pointer(&all[0]), C.int(len(b)))
	})
	return all, err
}

func (c *mpiComm) AllGather(b []byte) ([][]byte, error) {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(b)))
	lens, err := c.allGatherFixed("gather", l[:])
	if err != nil {
		return nil, err
	}
	most := 0
	for r := 0; r < c.size; r++ {
		most = max(most, int(binary.LittleEndian.Uint64(lens[8*r:])))
	}
	if most > math.MaxInt32 {
		return nil, fmt.Errorf("collective: a gather of %d bytes is too large", most)
	}
	padded := make([]byte, most)
	copy(padded, b)
	all, err := c.allGatherFixed("gather", padded)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, c.size)
	for r := range out {
		n := int(binary.LittleEndian.Uint64(lens[8*r:]))
		out[r] = all[r*most : r*most+n : r*most+n]
	}
	return out, nil
}

func (c *mpiComm) Broadcast(b []byte, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("collective: broadcast root %d is not a rank of %d", root, c.size)
	}
	if len(b) == 0 {
		return nil
	}
	return c.call("broadcast", func() C.int {
		return C.c_bcast_bytes(unsafe.Pointer(&b[0]), C.int(len(b)), C.int(root))
	})
}

// Abort calls MPI_Abort, which makes mpirun end every rank; when the MPI
// thread is stuck in a collective, the process just exits (mpirun then
// ends the others, seeing a rank exit with an error).
func (c *mpiComm) Abort(code int) {
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if broken == nil {
		done := make(chan struct{})
		select {
		case c.calls <- func() { C.c_abort(C.int(code)); close(done) }:
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		case <-time.After(time.Second):
		}
	}
	exit(code)
}

// Close calls MPI_Finalize, unless the group is broken (MPI_Finalize would
// wait for peers that are gone).
func (c *mpiComm) Close() error {
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if broken != nil {
		return nil
	}
	err := c.call("finalize", func() C.int { return C.c_finalize() })
	c.fail(ErrBroken) // finalized: no more calls
	return err
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}
