// Package runtime executes a compiled .slc artifact: it loads the artifact's
// native code, owns the model's state (parameters, buffers, optimizer state)
// and runs programs (train step, eval, …). A CPU artifact runs on a
// persistent pool of OS threads over C memory; a cuda artifact on a GPU
// (Device: the CUDA driver, loaded at run time) with the state resident in
// device memory. Callers see the same Runtime either way.
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
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
)

// MaxThreads bounds Options.Threads: far more threads than any machine has
// cores only adds barrier latency (and one OS thread each).
const MaxThreads = 1024

// Options configure Load.
type Options struct {
	// Threads is the number of OS threads running kernels (0: one per CPU).
	Threads int
	// Version is the slc version the artifact must have been compiled by
	// (normally version.Version). Kernels and runtime agree on buffers and
	// ABI only within one version, so a mismatch is refused. Empty skips the
	// check.
	Version string
	// Device is the GPU a cuda artifact runs on; nil opens the machine's
	// first CUDA GPU (OpenCUDA). The Runtime does not close it unless it
	// opened it. CPU artifacts ignore it (and GPU artifacts Threads).
	Device Device
	// GPUGrid and GPUBlock override the device's launch geometry (blocks,
	// threads per block); 0 keeps it.
	GPUGrid, GPUBlock int
}

// Runtime runs one loaded artifact.
type Runtime struct {
	mu       sync.Mutex
	closed   bool
	art      *artifact.Artifact
	module   *ir.Module
	threads  int
	lib      *library
	state    map[string]*buffer
	names    []string // state names, sorted
	programs map[string]*program

	arena   unsafe.Pointer
	scratch unsafe.Pointer // threads × scratchStride bytes
	stride  int64
	bar     barrier
	jobs    []chan job // one per worker thread (tid 1 … threads-1)
	workers sync.WaitGroup

	allocs []unsafe.Pointer // every C allocation, freed by Close

	profiling bool

	// The cuda device (gpu.go); dev is nil on the CPU.
	dev                    Device
	ownDev                 bool
	grid, block            int
	arenaAddr, scratchAddr uint64
	devAllocs              []uint64
	devBytes               int64
}

// buffer is one tensor: in C memory on the CPU (ptr), in device memory on a
// GPU (addr).
type buffer struct {
	typ  ir.Type
	ptr  unsafe.Pointer
	addr uint64
}

// bytes views a CPU buffer as a Go slice; it must not outlive the Runtime.
func (b *buffer) bytes() []byte {
	return unsafe.Slice((*byte)(b.ptr), b.typ.Bytes())
}

// staging returns the bytes to fill for b: the buffer itself on the CPU, a
// host copy to commit on a GPU.
func (r *Runtime) staging(b *buffer) []byte {
	if r.dev == nil {
		return b.bytes()
	}
	return make([]byte, b.typ.Bytes())
}

// commit writes bytes filled through staging to the device (nothing to do
// on the CPU).
func (r *Runtime) commit(b *buffer, data []byte) error {
	if r.dev == nil {
		return nil
	}
	return r.dev.Write(b.addr, data)
}

// read returns a copy of b's bytes.
func (r *Runtime) read(b *buffer) ([]byte, error) {
	if r.dev == nil {
		return append([]byte(nil), b.bytes()...), nil
	}
	out := make([]byte, b.typ.Bytes())
	return out, r.dev.Read(out, b.addr)
}

// same reports whether two buffers are the same memory.
func (b *buffer) same(o *buffer) bool { return b.ptr == o.ptr && b.addr == o.addr }

// program is a loaded artifact.Program: every slot resolved to a buffer and
// the steps laid out as a C array for the trampoline.
type program struct {
	p        *artifact.Program
	bufs     []*buffer // per slot
	steps    unsafe.Pointer
	prof     unsafe.Pointer // C int64 per step: accumulated ns, when profiling
	profNs   []int64        // the same on a GPU
	runs     int64          // runs since profiling started
	tables   []uint64       // GPU: each step's argument table
	launches []gpuLaunch    // GPU: each step's launch
	data     map[string]int // data slot index by name
	scalars  map[string]int // scalar slot index by name
}

// job asks a worker thread to run a program's steps.
type job struct {
	steps  unsafe.Pointer
	nsteps int
}

// Load prepares an artifact to run: it checks the artifact (validity,
// compiler version, target), loads its native code, resolves every kernel,
// allocates and initialises the state from the module's init specs, and
// starts the threads. Close releases all of it. The Runtime keeps a: do not
// modify it afterwards.
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
	if a.Target.Kind == artifact.TargetCUDA {
		return loadGPU(a, opt)
	}
	if err := checkTarget(a.Target); err != nil {
		return nil, err
	}
	threads := opt.Threads
	switch {
	case threads < 0 || threads > MaxThreads:
		return nil, fmt.Errorf("threads must be between 1 and %d (or 0 for one per CPU), got %d", MaxThreads, threads)
	case threads == 0:
		threads = goruntime.NumCPU()
	}
	r, err := newRuntime(a)
	if err != nil {
		return nil, err
	}
	r.threads = threads
	defer func() {
		if err != nil {
			r.release()
		}
	}()
	if r.lib, err = openCode(a.Code); err != nil {
		return nil, err
	}
	if err = r.allocate(); err != nil {
		return nil, err
	}
	if err = r.resetState(); err != nil {
		return nil, err
	}
	if r.bar, err = newBarrier(threads); err != nil {
		return nil, err
	}
	r.startWorkers()
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

// loadGPU is Load for a cuda artifact.
func loadGPU(a *artifact.Artifact, opt Options) (rt *Runtime, err error) {
	r, err := newRuntime(a)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.release()
		}
	}()
	if err = r.loadGPU(opt); err != nil {
		return nil, err
	}
	if err = r.resetState(); err != nil {
		return nil, err
	}
	return r, nil
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

// alloc returns zeroed, aligned C memory that Close frees.
func (r *Runtime) alloc(n int64) (unsafe.Pointer, error) {
	p, err := cAlloc(roundUp(n), artifact.Alignment)
	if err != nil {
		return nil, err
	}
	r.allocs = append(r.allocs, p)
	return p, nil
}

// roundUp rounds n up to a whole number of alignment units (at least one), so
// that buffers never share a cache line and none is a zero-size allocation.
func roundUp(n int64) int64 {
	if n <= 0 {
		return artifact.Alignment
	}
	return (n + artifact.Alignment - 1) / artifact.Alignment * artifact.Alignment
}

// allocate resolves the kernels and allocates the state, the arena, the
// scratch areas and each program's data and scalar buffers and step array.
func (r *Runtime) allocate() error {
	var arena, scratch int64
	for _, p := range r.art.Programs {
		arena = max(arena, p.ArenaBytes)
		scratch = max(scratch, p.ScratchBytes)
	}
	var err error
	if r.arena, err = r.alloc(arena); err != nil {
		return err
	}
	r.stride = roundUp(scratch)
	if r.scratch, err = r.alloc(r.stride * int64(r.threads)); err != nil {
		return err
	}

	kernels := map[string]unsafe.Pointer{}
	for _, ap := range r.art.Programs {
		p, err := r.layout(ap, func(t ir.Type) (*buffer, error) {
			ptr, err := r.alloc(t.Bytes())
			return &buffer{typ: t, ptr: ptr}, err
		}, func(t ir.Type, off int64) *buffer { return &buffer{typ: t, ptr: unsafe.Add(r.arena, off)} })
		if err != nil {
			return err
		}

		nargs := 0
		for _, st := range ap.Steps {
			nargs += len(st.Args)
		}
		if p.steps, err = r.alloc(int64(len(ap.Steps)) * stepSize); err != nil {
			return err
		}
		// One spare entry, so that a step without arguments still gets a
		// pointer inside the array.
		args, err := r.alloc(int64(nargs+1) * int64(unsafe.Sizeof(unsafe.Pointer(nil))))
		if err != nil {
			return err
		}
		argv := unsafe.Slice((*unsafe.Pointer)(args), nargs+1)
		next := 0
		for i, st := range ap.Steps {
			fn, ok := kernels[st.Kernel]
			if !ok {
				if fn, err = r.lib.sym(st.Kernel); err != nil {
					return fmt.Errorf("program %q, step %d: kernel %q is not in the artifact's code: %v", ap.Name, i, st.Kernel, err)
				}
				kernels[st.Kernel] = fn
			}
			first := next
			for _, a := range st.Args {
				argv[next] = p.bufs[a].ptr
				next++
			}
			setStep(p.steps, i, fn, unsafe.Pointer(&argv[first]))
		}
		r.programs[ap.Name] = p
	}
	sort.Strings(r.names)
	return nil
}

// layout resolves a program's slots to buffers: a state tensor is one
// buffer shared by name across programs, an arena slot is the arena at its
// offset (at), and each data and scalar slot gets a buffer of its own
// (alloc). The CPU and the GPU differ only in those two.
func (r *Runtime) layout(ap *artifact.Program, alloc func(ir.Type) (*buffer, error), at func(t ir.Type, off int64) *buffer) (*program, error) {
	p := &program{p: ap, bufs: make([]*buffer, len(ap.Slots)), data: map[string]int{}, scalars: map[string]int{}}
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
			b = at(s.Type, s.Offset)
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

// startWorkers starts threads−1 worker goroutines, each locked to its own OS
// thread; the caller of Run is thread 0.
func (r *Runtime) startWorkers() {
	r.jobs = make([]chan job, r.threads-1)
	for i := range r.jobs {
		ch := make(chan job, 1)
		r.jobs[i] = ch
		r.workers.Add(1)
		go func(tid int) {
			defer r.workers.Done()
			goruntime.LockOSThread()
			defer goruntime.UnlockOSThread()
			scratch := unsafe.Add(r.scratch, int64(tid)*r.stride)
			for j := range ch {
				runSteps(j.steps, j.nsteps, tid, r.threads, scratch, r.bar, nil)
			}
		}(i + 1)
	}
}

// Threads returns the number of threads that run kernels (on a GPU, blocks ×
// threads per block).
func (r *Runtime) Threads() int { return r.threads }

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
	for _, ch := range r.jobs {
		close(ch)
	}
	r.workers.Wait()
	r.jobs = nil
	if r.bar.b != nil {
		r.bar.free()
		r.bar = barrier{}
	}
	for _, p := range r.allocs {
		cFree(p)
	}
	r.allocs = nil
	r.state, r.programs, r.names = nil, nil, nil
	var err error
	if r.dev != nil {
		if err = r.releaseGPU(); err != nil {
			err = fmt.Errorf("releasing the GPU's memory: %w", err)
		}
	}
	if r.lib != nil {
		if cerr := r.lib.close(); cerr != nil && err == nil {
			err = fmt.Errorf("unloading the artifact's code: %w", cerr)
		}
		r.lib = nil
	}
	return err
}

// errClosed is returned by every call on a closed Runtime.
var errClosed = errors.New("runtime is closed")

// programNames lists the programs for an "unknown program" message.
func (r *Runtime) programNames() string {
	names := r.Programs()
	slices.Sort(names)
	return strings.Join(names, ", ")
}
