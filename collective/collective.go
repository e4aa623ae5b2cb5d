// Package collective is what data-parallel training needs from a
// communication engine, behind one small interface (Comm): the rank and
// number of processes, a sum of float32 buffers (the gradients), a sum of a
// few float64s (loss sums, flags), and broadcasting and gathering small byte
// slices (a settings hash, error messages). Single is one process — slc's
// behaviour without a launcher. MPI is Open MPI on CPUs, for processes
// started by mpirun on one machine or across machines with a hostfile.
//
// # Why libmpi is loaded at run time
//
// The MPI binding dlopens Open MPI's libmpi.so.40 when a run is launched by
// mpirun, instead of linking -lmpi behind a build tag. So the default
// `go build` needs no MPI headers or libraries, there is one slc binary (not
// an "MPI build" and a plain one that users must tell apart), and that binary
// trains single-process on a machine without MPI and data-parallel where
// Open MPI is installed. The price is that the binding declares the few MPI
// types and handles itself, from Open MPI's ABI (handles are pointers to the
// exported objects ompi_mpi_comm_world, ompi_mpi_float, …; see mpi.go), and
// so supports Open MPI (4.x, 5.x: libmpi.so.40) and not MPICH, whose ABI
// differs: a launch by another MPI is one clear error. The same pattern
// loads libcuda in the runtime, and is the one NCCL will use.
//
// # Determinism
//
// AllReduceSum does not use MPI_Allreduce, whose reduction order is the
// library's choice (and may differ between algorithms, message sizes and
// ranks). It is a reduce-scatter by MPI_Alltoall, where each rank adds its
// slice of every rank's buffer in rank order 0, 1, …, N−1, then an
// MPI_Allgather of the reduced slices: the same bytes on the wire as a ring
// all-reduce (2(N−1)/N of the buffer per rank), a result identical on every
// rank and from run to run, and for one micro-batch per rank exactly the sum
// that one process accumulating the N micro-batches in order computes.
//
// # GPUs
//
// A GPU (NCCL) implementation is not built yet: it would implement Comm with
// device buffers (ncclAllReduce over a communicator whose unique id rank 0
// makes and broadcasts with MPI's Broadcast, as llm.c does), loading libnccl
// at run time like libmpi here.
package collective

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Comm is a group of processes (ranks) that train one model together. Every
// method but Rank, Size, Name and Abort is collective: every rank must call
// it, in the same order, with buffers of the same length. After an error the
// Comm is broken: later calls return the same error.
type Comm interface {
	Rank() int    // this process, in [0, Size())
	Size() int    // the number of processes
	Name() string // "single" or "mpi"

	// AllReduceSum replaces x on every rank by the element-wise sum of
	// every rank's x, added in rank order, the same bits on every rank.
	AllReduceSum(x []float32) error
	// AllReduceSum64 is AllReduceSum for a few float64s (loss sums, flags,
	// counts).
	AllReduceSum64(x []float64) error
	// Broadcast copies root's b into every rank's b (the same length).
	Broadcast(b []byte, root int) error
	// AllGather returns every rank's b, indexed by rank (lengths may
	// differ; meant for small messages).
	AllGather(b []byte) ([][]byte, error)
	// Abort ends every rank of the group at once with the exit status code
	// (a failure that the others cannot learn from a collective).
	Abort(code int)
	// Close leaves the group (MPI_Finalize); with a broken Comm it only
	// returns, since the peers may be gone.
	Close() error
}

// Single is one process: rank 0 of 1. Its collectives have nothing to
// exchange, and its sums are the input.
type Single struct{}

func (Single) Rank() int                            { return 0 }
func (Single) Size() int                            { return 1 }
func (Single) Name() string                         { return "single" }
func (Single) AllReduceSum([]float32) error         { return nil }
func (Single) AllReduceSum64([]float64) error       { return nil }
func (Single) Broadcast([]byte, int) error          { return nil }
func (Single) AllGather(b []byte) ([][]byte, error) { return [][]byte{append([]byte(nil), b...)}, nil }
func (Single) Abort(code int)                       { os.Exit(code) }
func (Single) Close() error                         { return nil }

// Launch is how the environment says this process was started.
type Launch struct {
	Launcher string // "" (not launched by an MPI), "openmpi", or "other"
	Rank     int    // from the launcher's environment (-1 when it gives none)
	Size     int    // likewise (-1 when it gives none)
	Var      string // the variable that told (for messages)
}

// Launched reads the environment that MPI launchers set: Open MPI's mpirun
// sets OMPI_COMM_WORLD_SIZE and OMPI_COMM_WORLD_RANK; a PMIx launcher
// (prterun, srun --mpi=pmix) sets PMIX_RANK; MPICH's Hydra and Slurm's PMI
// set PMI_RANK and PMI_SIZE.
func Launched() Launch {
	atoi := func(name string) int {
		v, err := strconv.Atoi(os.Getenv(name))
		if err != nil {
			return -1
		}
		return v
	}
	switch {
	case os.Getenv("OMPI_COMM_WORLD_SIZE") != "":
		return Launch{Launcher: "openmpi", Rank: atoi("OMPI_COMM_WORLD_RANK"), Size: atoi("OMPI_COMM_WORLD_SIZE"), Var: "OMPI_COMM_WORLD_SIZE"}
	case os.Getenv("PMIX_RANK") != "":
		return Launch{Launcher: "openmpi", Rank: atoi("PMIX_RANK"), Size: -1, Var: "PMIX_RANK"}
	case os.Getenv("PMI_RANK") != "" || os.Getenv("PMI_SIZE") != "":
		return Launch{Launcher: "other", Rank: atoi("PMI_RANK"), Size: atoi("PMI_SIZE"), Var: "PMI_RANK"}
	}
	return Launch{Rank: -1, Size: -1}
}

// Options configure Open.
type Options struct {
	// Timeout bounds every collective call: a peer that does not take part
	// within it (a rank that died, a machine that is unreachable) ends the
	// call with a *PeerError instead of a hang. 0 means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is the collective timeout when Options.Timeout is 0: long
// enough for rank 0 to save a large checkpoint while the others wait.
const DefaultTimeout = 10 * time.Minute

// Open returns the Comm this process was launched into: Single when no MPI
// launcher started it (or one started a single process), MPI under
// Open MPI's mpirun. A launch by another MPI, or an mpirun whose libmpi
// cannot be loaded, is an error.
func Open(opt Options) (Comm, error) {
	l := Launched()
	switch {
	case l.Launcher == "":
		return Single{}, nil
	case l.Launcher == "other":
		return nil, fmt.Errorf("launched by an MPI other than Open MPI (%s is set, OMPI_COMM_WORLD_SIZE is not): slc loads Open MPI's libmpi.so.40 at run time and cannot join MPICH's or Intel MPI's ranks; start it with Open MPI's mpirun", l.Var)
	case l.Size == 1:
		return Single{}, nil
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	return openMPI(opt)
}

// LibMPI is the Open MPI library the MPI binding loads: $SLC_LIBMPI when
// set (an Open MPI outside the loader's path, e.g.
// /opt/openmpi/lib/libmpi.so.40), else libmpi.so.40 from the loader's path.
func LibMPI() string {
	if p := os.Getenv("SLC_LIBMPI"); p != "" {
		return p
	}
	return "libmpi.so.40"
}

// PeerError is a collective that failed: a peer died, became unreachable or
// did not answer within the timeout.
type PeerError struct {
	Rank, Size int
	Op         string // the collective
	Msg        string
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("rank %d of %d: %s failed: %s", e.Rank, e.Size, e.Op, e.Msg)
}

// ErrBroken is returned by collectives of a Comm that an earlier error broke.
var ErrBroken = errors.New("collective: the process group is broken by an earlier error")
