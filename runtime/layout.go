package runtime

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
)

// The runtime on its device. Every buffer lives in the device's memory:
// every state tensor, one arena (the largest program's plan; programs run
// one at a time), the threads' scratch areas, each program's data and
// scalar slots, and, per step, the table of its argument addresses the
// kernel reads (written once at load: the layout never changes). A run
// fills the bound data and scalars (in place on the CPU, copied in on a
// GPU), queues the steps' launches in order, waits, and reads the outputs;
// state stays on the device and crosses to the host only through State and
// SetState* (checkpoints, export, init).

// load loads the artifact's code on r's device and lays the artifact out
// in its memory.
func (r *Runtime) load(opt Options) error {
	if err := r.dev.Load(r.art.Target, unsafe.String(unsafe.SliceData(r.art.Code), len(r.art.Code))); err != nil {
		return err
	}
	var arena int64
	for _, p := range r.art.Programs {
		arena = max(arena, p.ArenaBytes)
	}
	r.grid, r.block = r.dev.Geometry()
	if opt.GPUGrid > 0 {
		r.grid = opt.GPUGrid
	}
	if opt.GPUBlock > 0 {
		r.block = opt.GPUBlock
	}
	if r.grid < 1 || r.block < 1 {
		return fmt.Errorf("GPU launch of %d blocks of %d threads", r.grid, r.block)
	}
	r.threads = r.grid * r.block
	launches := map[string][]launch{}
	var scratch int64 // the largest launch's scratch areas
	for _, ap := range r.art.Programs {
		ls := make([]launch, len(ap.Steps))
		for i, st := range ap.Steps {
			ls[i] = r.stepLaunch(ap, st, opt)
			scratch = max(scratch, ls[i].stride*int64(ls[i].grid)*int64(ls[i].block))
		}
		launches[ap.Name] = ls
	}
	if res, ok := r.dev.(kernelResolver); ok {
		for _, ap := range r.art.Programs {
			for i, st := range ap.Steps {
				if err := res.Resolve(st.Kernel); err != nil {
					return fmt.Errorf("program %q, step %d: kernel %q is not in the artifact's code: %v", ap.Name, i, st.Kernel, err)
				}
			}
		}
	}
	var err error
	if r.arenaAddr, err = r.devAlloc(arena); err != nil {
		return fmt.Errorf("the arena (%d bytes): %w", arena, err)
	}
	if r.scratchAddr, err = r.devAlloc(scratch); err != nil {
		return fmt.Errorf("the scratch areas (%d bytes): %w", scratch, err)
	}
	for _, ap := range r.art.Programs {
		p, err := r.layout(ap)
		if err != nil {
			return err
		}
		// One table for the whole program, each step's addresses at its
		// own offset (a step without arguments gets a valid address too).
		var table []byte
		offs := make([]int, len(ap.Steps))
		for i, st := range ap.Steps {
			offs[i] = len(table)
			for _, a := range st.Args {
				table = binary.LittleEndian.AppendUint64(table, p.bufs[a].addr)
			}
			if len(st.Args) == 0 {
				table = binary.LittleEndian.AppendUint64(table, 0)
			}
		}
		base, err := r.devAlloc(int64(len(table)))
		if err != nil {
			return fmt.Errorf("program %q: argument tables: %w", ap.Name, err)
		}
		if err := r.dev.Write(base, table); err != nil {
			return fmt.Errorf("program %q: argument tables: %w", ap.Name, err)
		}
		p.launches = launches[ap.Name]
		p.tables = make([]uint64, len(ap.Steps))
		for i, o := range offs {
			p.tables[i] = base + uint64(o)
		}
		r.programs[ap.Name] = p
	}
	sort.Strings(r.names)
	return r.captureGraphs(opt)
}

// launch is how one step is launched.
type launch struct {
	grid, block, shared int
	stride              int64 // scratch bytes per thread (64-byte multiple)
}

// stepLaunch is st's launch: the geometry the compiler recorded for it, or,
// for a step without one (an artifact of slc before per-kernel geometry),
// the runtime's one launch for every kernel — the device's Geometry, fewer
// blocks when the program's scratch areas would not fit MaxScratchBytes.
// Options.GPUGrid and GPUBlock override either (tests: every kernel is
// correct on any launch); the scratch cap holds always.
func (r *Runtime) stepLaunch(ap *artifact.Program, st artifact.Step, opt Options) launch {
	l := launch{grid: r.grid, block: r.block, stride: roundUp(ap.ScratchBytes)}
	if st.Grid > 0 {
		l = launch{grid: int(st.Grid), block: int(st.Block), shared: int(st.SharedBytes), stride: roundUp(st.ScratchBytes)}
		if opt.GPUGrid > 0 {
			l.grid = opt.GPUGrid
		}
		if opt.GPUBlock > 0 {
			l.block = opt.GPUBlock
		}
	}
	if fit := MaxScratchBytes / (l.stride * int64(l.block)); int64(l.grid) > fit {
		l.grid = int(max(1, fit))
	}
	return l
}

// devAlloc allocates device memory that release frees.
func (r *Runtime) devAlloc(n int64) (uint64, error) {
	a, err := r.dev.Alloc(roundUp(n))
	if err != nil {
		return 0, err
	}
	r.devAllocs = append(r.devAllocs, a)
	r.devBytes += roundUp(n)
	return a, nil
}

// DeviceBytes returns the device memory the runtime holds (state, arena,
// scratch, data and scalar slots, argument tables; on the CPU, C memory).
func (r *Runtime) DeviceBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.devBytes
}

// exec queues p's steps (its graph, when recorded) and waits for them. With
// profiling on, a device that times steps itself (the CPU) does; on another
// the host waits after every step and charges the step the wall time since
// the previous (launching the steps directly).
func (r *Runtime) exec(p *program) error {
	prof := r.profiling
	if prof {
		if p.profNs == nil {
			p.profNs = make([]int64, len(p.p.Steps))
		}
		p.runs++
	}
	timed, selfTimed := r.dev.(timedSyncer)
	perStep := prof && !selfTimed
	if p.graph != nil && !perStep {
		if err := p.graph.Launch(); err != nil {
			return fmt.Errorf("its CUDA graph: %w", err)
		}
		if prof { // a self-timed device times what it replays
			return timed.SyncTimed(p.profNs)
		}
		return r.dev.Sync()
	}
	t0 := time.Now()
	for i, st := range p.p.Steps {
		l := p.launches[i]
		if err := r.dev.Launch(st.Kernel, l.grid, l.block, l.shared, p.tables[i], r.scratchAddr, uint64(l.stride)); err != nil {
			return fmt.Errorf("step %d (%s): %w", i, st.Kernel, err)
		}
		if perStep {
			if err := r.dev.Sync(); err != nil {
				return fmt.Errorf("step %d (%s): %w", i, st.Kernel, err)
			}
			t1 := time.Now()
			p.profNs[i] += t1.Sub(t0).Nanoseconds()
			t0 = t1
		}
	}
	if prof && selfTimed {
		return timed.SyncTimed(p.profNs)
	}
	return r.dev.Sync()
}

// releaseDevice frees the device memory and closes a device the runtime
// opened.
func (r *Runtime) releaseDevice() error {
	var first error
	for _, a := range r.devAllocs {
		if err := r.dev.Free(a); err != nil && first == nil {
			first = fmt.Errorf("releasing the device's memory: %w", err)
		}
	}
	r.devAllocs, r.devBytes = nil, 0
	if r.ownDev {
		if err := r.dev.Close(); err != nil && first == nil {
			first = err
		}
	}
	r.dev = nil
	return first
}

// Device returns the device the artifact runs on: this machine's CPU or a
// GPU (Target says which).
func (r *Runtime) Device() Device { return r.dev }

// Geometry returns the launch of steps without a geometry of their own
// (blocks, threads per block: the device's, or Options'; on the CPU, one
// block per thread).
func (r *Runtime) Geometry() (grid, block int) { return r.grid, r.block }

// StepLaunch returns the launch of step i of program name (blocks, threads
// per block, dynamic shared memory, scratch bytes per thread); false for an
// unknown step.
func (r *Runtime) StepLaunch(name string, i int) (grid, block, shared int, scratch int64, ok bool) {
	p := r.programs[name]
	if p == nil || i < 0 || i >= len(p.launches) {
		return 0, 0, 0, 0, false
	}
	l := p.launches[i]
	return l.grid, l.block, l.shared, l.stride, true
}
