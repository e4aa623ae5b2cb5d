package runtime

import (
	"errors"
	"fmt"
	"os"
)

// CUDA graphs. A program's launches never change between runs: each step's
// argument table is written once at load, its data and scalars are copied
// into the same slot buffers every run, the arena and the scratch areas stay
// where they are. So a device that can record a sequence of launches once
// and replay it (CUDA graphs: stream capture, instantiate, one
// cuGraphLaunch) records each program's steps at load and replays them on
// every run: one launch per program run instead of one per step, the same
// kernels with the same arguments in the same order.
//
// Runs launch directly (step by step) instead when the device cannot record
// (ErrNoGraphs: a driver without the graph entry points; the PTX emulator
// is no GraphDevice), when a recording fails (GraphErr), when
// Options.NoGraphs or the environment's SLC_CUDA_GRAPHS=0 asks (for
// debugging: a fault then names its step), and while profiling times each
// step on the host.

// GraphsEnv is the environment variable that, set to 0, makes every run
// launch its steps directly instead of replaying a CUDA graph.
const GraphsEnv = "SLC_CUDA_GRAPHS"

// ErrNoGraphs is a GraphDevice's answer when it cannot record graphs after
// all (the driver lacks the entry points); the runtime then launches
// directly.
var ErrNoGraphs = errors.New("the device cannot record launch graphs")

// GraphDevice is a Device that can record launches once and replay them.
type GraphDevice interface {
	Device
	// Capture calls record with the device recording: the Launch calls
	// record makes are recorded, not run (nothing else is called while it
	// records), and returned as one Graph. An error from record ends the
	// recording and is returned.
	Capture(record func() error) (Graph, error)
}

// Graph is a recorded sequence of launches.
type Graph interface {
	// Launch queues the recorded launches, in their order, as one; it does
	// not wait (the device's Sync does).
	Launch() error
	// Destroy releases the graph.
	Destroy() error
}

// graphsWanted reports whether runs may replay graphs: not when opt or
// the environment turns them off.
func graphsWanted(opt Options) bool {
	return !opt.NoGraphs && os.Getenv(GraphsEnv) != "0"
}

// captureGraphs records each program's steps as a graph when the device
// can and opt allows it. A device without graphs leaves every program on
// direct launches, and so does a recording that fails otherwise (a
// driver's surprise must not stop a run that direct launches can do):
// GraphErr then says why.
func (r *Runtime) captureGraphs(opt Options) error {
	gd, ok := r.dev.(GraphDevice)
	if !ok || !graphsWanted(opt) {
		return nil
	}
	for _, ap := range r.art.Programs {
		if len(ap.Steps) == 0 {
			continue // nothing to launch (an empty graph gains nothing)
		}
		name, p := ap.Name, r.programs[ap.Name]
		g, err := gd.Capture(func() error { return r.launchSteps(p) })
		if errors.Is(err, ErrNoGraphs) {
			r.dropGraphs()
			return nil
		}
		if err != nil {
			r.graphErr = fmt.Errorf("program %q: recording its launches as a CUDA graph: %w (every step is launched directly)", name, err)
			return r.dropGraphs()
		}
		p.graph = g
	}
	return nil
}

// dropGraphs releases every program's graph.
func (r *Runtime) dropGraphs() error {
	var first error
	for _, p := range r.programs {
		if p.graph != nil {
			if err := p.graph.Destroy(); err != nil && first == nil {
				first = fmt.Errorf("releasing a CUDA graph: %w", err)
			}
			p.graph = nil
		}
	}
	return first
}

// launchSteps queues p's steps one by one.
func (r *Runtime) launchSteps(p *program) error {
	for i, st := range p.p.Steps {
		l := p.launches[i]
		if err := r.dev.Launch(st.Kernel, l.grid, l.block, l.shared, p.tables[i], r.scratchAddr, uint64(l.stride)); err != nil {
			return fmt.Errorf("step %d (%s): %w", i, st.Kernel, err)
		}
	}
	return nil
}

// Launches returns how program name's run is launched: its steps (the
// direct launches) and the launches a run queues (1 when a graph replays
// them, else the steps); false for an unknown program.
func (r *Runtime) Launches(name string) (steps, queued int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.programs[name]
	if p == nil {
		return 0, 0, false
	}
	if p.graph != nil {
		return len(p.p.Steps), 1, true
	}
	return len(p.p.Steps), len(p.p.Steps), true
}

// GraphErr returns why runs launch their steps directly although the
// device can record graphs: a recording that failed at load; nil when
// graphs replay the programs, or when the device or the options do not
// use them.
func (r *Runtime) GraphErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.graphErr
}
