package runtime

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// graphDevice is hostDevice with CUDA graphs' contract: Capture records the
// launches its callback makes (running nothing), a Graph's Launch replays
// them through hostDevice.Launch in order. It counts what the runtime
// queued (launches and replays) apart from what ran (hostDevice's log).
type graphDevice struct {
	*hostDevice
	recording  *[]recorded
	noGraphs   bool  // Capture answers ErrNoGraphs
	failRecord error // Capture fails so
	queued     int   // Launch calls outside a recording plus graph replays
	graphs     int   // graphs alive
}

type recorded struct {
	kernel                string
	grid, block, shared   int
	args, scratch, stride uint64
}

func (d *graphDevice) Launch(kernel string, grid, block, shared int, args, scratch, stride uint64) error {
	if d.recording != nil {
		*d.recording = append(*d.recording, recorded{kernel, grid, block, shared, args, scratch, stride})
		return nil
	}
	d.queued++
	return d.hostDevice.Launch(kernel, grid, block, shared, args, scratch, stride)
}

func (d *graphDevice) Capture(record func() error) (Graph, error) {
	if d.noGraphs {
		return nil, fmt.Errorf("%w: no cuGraphLaunch", ErrNoGraphs)
	}
	if d.failRecord != nil {
		return nil, d.failRecord
	}
	var ls []recorded
	d.recording = &ls
	err := record()
	d.recording = nil
	if err != nil {
		return nil, err
	}
	d.graphs++
	return &hostGraph{d: d, launches: ls}, nil
}

type hostGraph struct {
	d         *graphDevice
	launches  []recorded
	destroyed bool
}

func (g *hostGraph) Launch() error {
	if g.destroyed {
		return errors.New("launch of a destroyed graph")
	}
	g.d.queued++
	for _, l := range g.launches {
		if err := g.d.hostDevice.Launch(l.kernel, l.grid, l.block, l.shared, l.args, l.scratch, l.stride); err != nil {
			return err
		}
	}
	return nil
}

func (g *hostGraph) Destroy() error {
	if g.destroyed {
		return errors.New("graph destroyed twice")
	}
	g.destroyed = true
	g.d.graphs--
	return nil
}

// graphRuns is a sequence of runs touching every program of the test
// artifact that needs no scalar beyond these.
var graphRuns = []struct {
	prog string
	in   func() Inputs
}{
	{"train", func() Inputs {
		return Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.25}}
	}},
	{"train", func() Inputs {
		return Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.5}}
	}},
	{"embed", func() Inputs { return Inputs{Data: map[string][]int64{"tokens": {3, 0, 15, 3, 7, 1}}} }},
	{"swap", func() Inputs { return Inputs{} }},
	{"count", func() Inputs { return Inputs{} }},
	{"count", func() Inputs { return Inputs{} }},
}

// TestGraphReplaysDirectLaunches: a program recorded once and replayed on
// every run runs exactly the kernels, geometry and arguments the direct
// launches do, in the same order, with the same outputs and state; a run
// queues one launch instead of one per step.
func TestGraphReplaysDirectLaunches(t *testing.T) {
	direct := &graphDevice{hostDevice: newHostDevice(2, 3)}
	replay := &graphDevice{hostDevice: newHostDevice(2, 3)}
	defer direct.Close()
	defer replay.Close()
	d, err := Load(cudaArtifact(t), Options{Device: direct, NoGraphs: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := Load(cudaArtifact(t), Options{Device: replay})
	if err != nil {
		t.Fatal(err)
	}
	programs := 0
	for _, p := range cudaArtifact(t).Programs {
		if len(p.Steps) > 0 {
			programs++
		}
	}
	if direct.graphs != 0 || replay.graphs != programs || programs < 5 {
		t.Fatalf("graphs recorded: %d with NoGraphs, %d without; want 0 and one per program with steps (%d)", direct.graphs, replay.graphs, programs)
	}
	if len(replay.log) != 0 {
		t.Fatalf("recording ran %d launches", len(replay.log))
	}
	for i, r := range graphRuns {
		want, err := d.Run(r.prog, r.in())
		if err != nil {
			t.Fatal(err)
		}
		got, err := g.Run(r.prog, r.in())
		if err != nil {
			t.Fatalf("run %d (%s) replayed: %v", i, r.prog, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("run %d (%s): replayed outputs %v, direct %v", i, r.prog, got, want)
		}
		for _, name := range d.StateNames() {
			a, _ := d.State(name)
			b, _ := g.State(name)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("run %d (%s): state %s differs", i, r.prog, name)
			}
		}
	}
	if !reflect.DeepEqual(replay.log, direct.log) {
		t.Errorf("replayed launches %q, direct %q", replay.log, direct.log)
	}
	runs := 0 // of programs with steps
	for _, r := range graphRuns {
		if len(cudaArtifact(t).Program(r.prog).Steps) > 0 {
			runs++
		}
	}
	if direct.queued != len(direct.log) || replay.queued != runs || runs < 4 {
		t.Errorf("queued %d direct launches for %d kernels, %d replays for %d runs of programs with steps", direct.queued, len(direct.log), replay.queued, runs)
	}
	steps, queued, ok := g.Launches("train")
	if n := len(cudaArtifact(t).Program("train").Steps); !ok || steps != n || queued != 1 {
		t.Errorf("Launches(train) = %d, %d, %v; want %d, 1", steps, queued, ok, n)
	}
	if steps, queued, _ := d.Launches("train"); queued != steps {
		t.Errorf("Launches(train) without graphs = %d, %d", steps, queued)
	}
	if _, _, ok := g.Launches("nope"); ok {
		t.Error("Launches of an unknown program")
	}
	// Profiling times each step on the host: direct launches, one per step.
	g.Profile(true)
	before := replay.queued
	if _, err := g.Run("count", Inputs{}); err != nil {
		t.Fatal(err)
	}
	if n := len(cudaArtifact(t).Program("count").Steps); replay.queued-before != n {
		t.Errorf("profiled run queued %d launches, want its %d steps", replay.queued-before, n)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if replay.graphs != 0 {
		t.Errorf("%d graphs left after Close", replay.graphs)
	}
	d.Close()
}

// TestGraphFallbacks: a device without graphs (an old driver), the
// environment's SLC_CUDA_GRAPHS=0 and a recording that fails otherwise
// launch directly (the last says why in GraphErr), with no graph left.
func TestGraphFallbacks(t *testing.T) {
	in := Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.25}}
	check := func(t *testing.T, dev *graphDevice) {
		defer dev.Close()
		r, err := Load(cudaArtifact(t), Options{Device: dev})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Run("train", in); err != nil {
			t.Fatal(err)
		}
		steps, queued, _ := r.Launches("train")
		if dev.graphs != 0 || queued != steps || dev.queued != steps {
			t.Errorf("%d graphs, queued %d (Launches %d of %d steps); want direct launches", dev.graphs, dev.queued, queued, steps)
		}
		r.Close()
	}
	t.Run("old driver", func(t *testing.T) {
		check(t, &graphDevice{hostDevice: newHostDevice(1, 2), noGraphs: true})
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv(GraphsEnv, "0")
		check(t, &graphDevice{hostDevice: newHostDevice(1, 2)})
	})
	t.Run("failed recording", func(t *testing.T) {
		dev := &graphDevice{hostDevice: newHostDevice(1, 2), failRecord: errors.New("operation not permitted when stream is capturing")}
		check(t, dev)
	})
	// GraphErr says why a device with graphs launched directly, and only
	// then.
	dev := &graphDevice{hostDevice: newHostDevice(1, 2), failRecord: errors.New("operation not permitted when stream is capturing")}
	defer dev.Close()
	r, err := Load(cudaArtifact(t), Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.GraphErr(); err == nil || !strings.Contains(err.Error(), "recording its launches as a CUDA graph: operation not permitted") {
		t.Errorf("GraphErr() = %v", err)
	}
	r.Close()
	ok := &graphDevice{hostDevice: newHostDevice(1, 2)}
	defer ok.Close()
	if r, err = Load(cudaArtifact(t), Options{Device: ok}); err != nil {
		t.Fatal(err)
	}
	if err := r.GraphErr(); err != nil {
		t.Errorf("GraphErr() = %v with graphs recorded", err)
	}
	r.Close()
}
