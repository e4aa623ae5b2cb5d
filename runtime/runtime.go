// Package runtime executes a compiled .slc artifact: it loads the artifact's
// native code, owns the model's state (parameters, buffers, optimizer state)
// and runs programs (train step, eval, …). The artifact's target chooses the
// Device: a CPU artifact runs on this machine's CPU (a persistent pool of OS
// threads over C memory), a cuda artifact on a GPU (the CUDA driver, loaded
// at run time) with the state resident in device memory. The runtime lays
// the artifact out and drives it through the Device interface alone, so
// callers see the same Runtime either way.
//
// The runtime links no LLVM and imports nothing of the compiler (a test
// enforces it), so an artifact compiled on one machine runs anywhere slc's
// runtime does.
//
// A Runtime is safe for concurrent use; calls are serialised.
package runtime

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/target"
)

// MaxThreads bounds Options.Threads: far more threads than any machine has
// cores only adds barrier latency (and one OS thread each).
const MaxThreads = 1024

// Options configure Load.
type Options struct {
	// Threads is the number of OS threads running a CPU artifact's kernels
	// (0: one per CPU).
	Threads int
	// Version is the slc version the artifact must have been compiled by
	// (normally version.Version). Kernels and runtime agree on buffers and
	// ABI only within one version, so a mismatch is refused. Empty skips the
	// check.
	Version string
	// Device is the GPU a cuda artifact runs on; nil opens the machine's
	// first CUDA GPU (OpenCUDA). The Runtime does not close it unless it
	// opened it. CPU artifacts ignore it (they run on this machine's CPU),
	// and GPU artifacts Threads.
	Device Device
	// GPUGrid and GPUBlock override a cuda artifact's launch geometry
	// (blocks, threads per block); 0 keeps it.
	GPUGrid, GPUBlock int
	// NoGraphs launches every step of a run directly even where the device
	// can replay a program's launches as one CUDA graph (graph.go; the
	// environment's SLC_CUDA_GRAPHS=0 does the same): for debugging, a
	// kernel's fault then surfaces at its step.
	NoGraphs bool
}

// Runtime runs one loaded artifact.
type Runtime struct {
	mu       sync.Mutex
	closed   bool
	art      *artifact.Artifact
	target   target.Target
	module   *ir.Module
	threads  int
	state    map[string]*buffer
	names    []string // state names, sorted
	programs map[string]*program

	profiling bool
	graphErr  error // why a device with graphs launches directly (graph.go)

	// The device (layout.go) and what the runtime holds of it.
	dev                    Device
	ownDev                 bool
	mem                    memory
	grid, block            int
	arenaAddr, scratchAddr uint64
	devAllocs              []uint64
	devBytes               int64
}

// buffer is one tensor in device memory.
type buffer struct {
	typ  ir.Type
	addr uint64
}

// memory is how the runtime fills and reads buffers on its device.
type memory interface {
	// staging returns the bytes to fill for b: the buffer itself on a
	// device with host memory, a host copy to commit otherwise.
	staging(b *buffer) []byte
	// commit writes bytes filled through staging to the device.
	commit(b *buffer, data []byte) error
}

// hostMem fills a hostMemory device's buffers in place: no copies.
type hostMem struct{ d hostMemory }

func (h hostMem) staging(b *buffer) []byte            { return h.d.Bytes(b.addr, b.typ.Bytes()) }
func (h hostMem) commit(b *buffer, data []byte) error { return nil }

// copyMem stages in host memory and copies to the device.
type copyMem struct{ d Device }

func (c copyMem) staging(b *buffer) []byte            { return make([]byte, b.typ.Bytes()) }
func (c copyMem) commit(b *buffer, data []byte) error { return c.d.Write(b.addr, data) }

// memoryOf is d's memory.
func memoryOf(d Device) memory {
	if h, ok := d.(hostMemory); ok {
		return hostMem{h}
	}
	return copyMem{d}
}

// staging returns the bytes to fill for b (see memory).
func (r *Runtime) staging(b *buffer) []byte { return r.mem.staging(b) }

// commit writes bytes filled through staging to the device.
func (r *Runtime) commit(b *buffer, data []byte) error { return r.mem.commit(b, data) }

// read returns a copy of b's bytes.
func (r *Runtime) read(b *buffer) ([]byte, error) {
	out := make([]byte, b.typ.Bytes())
	return out, r.dev.Read(out, b.addr)
}

// same reports whether two buffers are the same memory.
func (b *buffer) same(o *buffer) bool { return b.addr == o.addr }

// program is a loaded artifact.Program: every slot resolved to a buffer,
// each step's argument table in device memory and its launch.
type program struct {
	p        *artifact.Program
	bufs     []*buffer      // per slot
	profNs   []int64        // accumulated ns per step, when profiling
	runs     int64          // runs since profiling started
	tables   []uint64       // each step's argument table
	launches []launch       // each step's launch
	graph    Graph          // the steps recorded once (graph.go); nil: launched directly
	data     map[string]int // data slot index by name
	scalars  map[string]int // scalar slot index by name
}

// Load prepares an artifact to run: it checks the artifact (validity,
// compiler version, target), opens the device its target names, loads its
// code there, lays out the state and the programs in the device's memory
// and initialises the state from the module's init specs. Close releases
// all of it. The Runtime keeps a: do not modify it afterwards.
func Load(a *artifact.Artifact, opt Options) (rt *Runtime, err error) {
	if a == nil {
		return nil, errors.New("no artifact")
	}
	if opt.Version != "" && a.CompilerVersion != opt.Version {
		return nil, fmt.Errorf("artifact was compiled by slc %s, this is slc %s; recompile it", a.CompilerVersion, opt.Version)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("invalid artifact: %w", err)
	}
	t, err := a.Target.Parse()
	if err != nil {
		return nil, err
	}
	threads := 0
	if !t.IsCUDA() {
		// Refused before anything is allocated.
		if err := checkTarget(a.Target); err != nil {
			return nil, err
		}
		if threads, err = cpuThreads(opt.Threads); err != nil {
			return nil, err
		}
		opt.GPUGrid, opt.GPUBlock = 0, 0
	}
	r, err := newRuntime(a)
	if err != nil {
		return nil, err
	}
	r.target = t
	defer func() {
		if err != nil {
			r.release()
		}
	}()
	if err = r.open(opt, threads); err != nil {
		return nil, err
	}
	if err = r.load(opt); err != nil {
		return nil, err
	}
	if err = r.resetState(); err != nil {
		return nil, err
	}
	return r, nil
}

// newRuntime checks a's module and code and returns an empty Runtime for it.
func newRuntime(a *artifact.Artifact) (*Runtime, error) {
	if len(a.Module) == 0 {
		return nil, errors.New("artifact has no module (the compiled IR with the state's init specs)")
	}
	mod, err := ir.ParseBinary(a.Module)
	if err != nil {
		return nil, fmt.Errorf("artifact module: %w", err)
	}
	if len(a.Code) == 0 {
		return nil, errors.New("artifact has no native code")
	}
	if err := a.CheckCode(); err != nil { // before the code is mapped
		return nil, err
	}
	return &Runtime{art: a, module: mod, state: map[string]*buffer{}, programs: map[string]*program{}}, nil
}

// open opens the device r's target names: this machine's CPU on threads
// threads, or opt.Device, or the machine's CUDA GPU.
func (r *Runtime) open(opt Options, threads int) error {
	switch {
	case !r.target.IsCUDA():
		d, err := newCPUDevice(threads)
		if err != nil {
			return err
		}
		r.dev, r.ownDev = d, true
	case opt.Device != nil:
		r.dev = opt.Device
	default:
		d, err := OpenCUDA()
		if err != nil {
			return fmt.Errorf("the artifact runs on a CUDA GPU (%s): %w; recompile it for the CPU (without --device cuda) to run it here", r.art.Target.CPU, err)
		}
		r.dev, r.ownDev = d, true
	}
	r.mem = memoryOf(r.dev)
	return nil
}

// openCode writes the shared object to a private temporary file, loads it and
// removes the file (the mapping stays valid).
func openCode(code []byte) (*library, error) {
	f, err := os.CreateTemp("", "slc-kernels-*.so")
	if err != nil {
		return nil, fmt.Errorf("writing the artifact's code: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	_, err = f.Write(code)
	if err == nil {
		err = f.Chmod(0o700)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing the artifact's code: %w", err)
	}
	lib, err := dlopen(path)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "map") {
			hint = " (is the temporary directory mounted noexec? set TMPDIR to another one)"
		}
		return nil, fmt.Errorf("loading the artifact's code: %v%s", err, hint)
	}
	return lib, nil
}

// roundUp rounds n up to a whole number of alignment units (at least one), so
// that buffers never share a cache line and none is a zero-size allocation.
func roundUp(n int64) int64 {
	if n <= 0 {
		return artifact.Alignment
	}
	return (n + artifact.Alignment - 1) / artifact.Alignment * artifact.Alignment
}

// layout resolves a program's slots to buffers: a state tensor is one
// buffer shared by name across programs, an arena slot is the arena at its
// offset, and each data and scalar slot gets a buffer of its own.
func (r *Runtime) layout(ap *artifact.Program) (*program, error) {
	p := &program{p: ap, bufs: make([]*buffer, len(ap.Slots)), data: map[string]int{}, scalars: map[string]int{}}
	alloc := func(t ir.Type) (*buffer, error) {
		addr, err := r.devAlloc(t.Bytes())
		return &buffer{typ: t, addr: addr}, err
	}
	for i, s := range ap.Slots {
		var b *buffer
		var err error
		switch s.Kind {
		case artifact.SlotState:
			if b = r.state[s.Name]; b == nil {
				if b, err = alloc(s.Type); err != nil {
					return nil, fmt.Errorf("state %q (%v): %w", s.Name, s.Type, err)
				}
				r.state[s.Name] = b
				r.names = append(r.names, s.Name)
			}
		case artifact.SlotArena:
			b = &buffer{typ: s.Type, addr: r.arenaAddr + uint64(s.Offset)}
		default:
			if b, err = alloc(s.Type); err != nil {
				return nil, fmt.Errorf("program %q: %v %q: %w", ap.Name, s.Kind, s.Name, err)
			}
			if s.Kind == artifact.SlotData {
				p.data[s.Name] = i
			} else {
				p.scalars[s.Name] = i
			}
		}
		p.bufs[i] = b
	}
	return p, nil
}

// Threads returns the number of threads that run kernels (on a GPU, blocks ×
// threads per block).
func (r *Runtime) Threads() int { return r.threads }

// Target returns the target the artifact was compiled for, which chose the
// device.
func (r *Runtime) Target() target.Target { return r.target }

// Module returns the compiled module embedded in the artifact (graphs, init
// specs, metadata such as the model config). Callers must not modify it.
func (r *Runtime) Module() *ir.Module { return r.module }

// Artifact returns the loaded artifact. Callers must not modify it.
func (r *Runtime) Artifact() *artifact.Artifact { return r.art }

// Programs returns the names of the artifact's programs, in artifact order.
func (r *Runtime) Programs() []string {
	names := make([]string, len(r.art.Programs))
	for i, p := range r.art.Programs {
		names[i] = p.Name
	}
	return names
}

// Close stops the threads, frees every buffer and unloads the code. The
// Runtime is unusable afterwards; a second Close does nothing.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.release()
}

// release undoes Load, also after a partial one.
func (r *Runtime) release() error {
	var first error
	if r.programs != nil {
		first = r.dropGraphs() // before the device's code goes
	}
	r.state, r.programs, r.names = nil, nil, nil
	if r.dev == nil { // Load failed before the device opened
		return first
	}
	if err := r.releaseDevice(); err != nil && first == nil {
		first = err
	}
	return first
}

// errClosed is returned by every call on a closed Runtime.
var errClosed = errors.New("runtime is closed")

// programNames lists the programs for an "unknown program" message.
func (r *Runtime) programNames() string {
	names := r.Programs()
	slices.Sort(names)
	return strings.Join(names, ", ")
}
