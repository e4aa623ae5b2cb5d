package runtime

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
)

// The cuda half of the runtime. A cuda artifact's buffers live in device
// memory: every state tensor, one arena (the largest program's plan; programs
// run one at a time), the GPU threads' scratch areas, each program's data and
// scalar slots, and, per step, the table of its argument addresses the
// kernel reads (written once at load: the layout never changes). A run
// copies the bound data and scalars in, queues the steps' launches in
// order, waits, and copies the outputs out; state stays on the device and
// crosses to the host only through State and SetState* (checkpoints,
// export, init).

// loadGPU lays a cuda artifact out on its device (opt.Device, or the
// machine's CUDA GPU).
func (r *Runtime) loadGPU(opt Options) error {
	if opt.Device != nil {
		r.dev = opt.Device
	} else {
		d, err := OpenCUDA()
		if err != nil {
			return fmt.Errorf("the artifact runs on a CUDA GPU (%s): %w; recompile it for the CPU (without --device cuda) to run it here", r.art.Target.CPU, err)
		}
		r.dev, r.ownDev = d, true
	}
	if err := r.dev.Load(r.art.Target, string(r.art.Code)); err != nil {
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
	launches := map[string][]gpuLaunch{}
	var scratch int64 // the largest launch's scratch areas
	for _, ap := range r.art.Programs {
		ls := make([]gpuLaunch, len(ap.Steps))
		for i, st := range ap.Steps {
			ls[i] = r.stepLaunch(ap, st, opt)
			scratch = max(scratch, ls[i].stride*int64(ls[i].grid)*int64(ls[i].block))
		}
		launches[ap.Name] = ls
	}
	var err error
	if r.arenaAddr, err = r.devAlloc(arena); err != nil {
		return fmt.Errorf("the arena (%d bytes): %w", arena, err)
	}
	if r.scratchAddr, err = r.devAlloc(scratch); err != nil {
		return fmt.Errorf("the scratch areas (%d bytes): %w", scratch, err)
	}
	for _, ap := range r.art.Programs {
		p, err := r.layout(ap, func(t ir.Type) (*buffer, error) {
			addr, err := r.devAlloc(t.Bytes())
			return &buffer{typ: t, addr: addr}, err
		}, func(t ir.Type, off int64) *buffer { return &buffer{typ: t, addr: r.arenaAddr + uint64(off)} })
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
	return nil
}

// gpuLaunch is how one step is launched.
type gpuLaunch struct {
	grid, block, shared int
	stride              int64 // scratch bytes per thread (64-byte multiple)
}

// stepLaunch is st's launch: the geometry the compiler recorded for it, or,
// for a step without one (an artifact of slc before per-kernel geometry),
// the runtime's one launch for every kernel — the device's Geometry, fewer
// blocks when the program's scratch areas would not fit MaxScratchBytes.
// Options.GPUGrid and GPUBlock override either (tests: every kernel is
// correct on any launch); the scratch cap holds always.
func (r *Runtime) stepLaunch(ap *artifact.Program, st artifact.Step, opt Options) gpuLaunch {
	l := gpuLaunch{grid: r.grid, block: r.block, stride: roundUp(ap.ScratchBytes)}
	if st.Grid > 0 {
		l = gpuLaunch{grid: int(st.Grid), block: int(st.Block), shared: int(st.SharedBytes), stride: roundUp(st.ScratchBytes)}
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
// scratch, data and scalar slots, argument tables); 0 on the CPU.
func (r *Runtime) DeviceBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.devBytes
}

// execGPU queues p's steps and waits for them. With profiling on it waits
// after every step and charges the step the wall time since the previous.
func (r *Runtime) execGPU(p *program) error {
	prof := r.profiling
	if prof {
		if p.profNs == nil {
			p.profNs = make([]int64, len(p.p.Steps))
		}
		p.runs++
	}
	t0 := time.Now()
	for i, st := range p.p.Steps {
		l := p.launches[i]
		if err := r.dev.Launch(st.Kernel, l.grid, l.block, l.shared, p.tables[i], r.scratchAddr, uint64(l.stride)); err != nil {
			return fmt.Errorf("step %d (%s): %w", i, st.Kernel, err)
		}
		if prof {
			if err := r.dev.Sync(); err != nil {
				return fmt.Errorf("step %d (%s): %w", i, st.Kernel, err)
			}
			t1 := time.Now()
			p.profNs[i] += t1.Sub(t0).Nanoseconds()
			t0 = t1
		}
	}
	return r.dev.Sync()
}

// releaseGPU frees the device memory and closes a device the runtime opened.
func (r *Runtime) releaseGPU() error {
	var first error
	for _, a := range r.devAllocs {
		if err := r.dev.Free(a); err != nil && first == nil {
			first = err
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

// Device returns the GPU a cuda artifact runs on, nil on the CPU.
func (r *Runtime) Device() Device { return r.dev }

// Geometry returns the GPU launch of steps without a geometry of their own
// (blocks, threads per block: the device's, or Options'); 0, 0 on the CPU.
func (r *Runtime) Geometry() (grid, block int) { return r.grid, r.block }

// StepLaunch returns the launch of step i of program name on the GPU
// (blocks, threads per block, dynamic shared memory, scratch bytes per
// thread); false on the CPU or for an unknown step.
func (r *Runtime) StepLaunch(name string, i int) (grid, block, shared int, scratch int64, ok bool) {
	p := r.programs[name]
	if r.dev == nil || p == nil || i < 0 || i >= len(p.launches) {
		return 0, 0, 0, 0, false
	}
	l := p.launches[i]
	return l.grid, l.block, l.shared, l.stride, true
}
