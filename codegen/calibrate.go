//go:build !slc_runtime

package codegen

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"time"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/hostcpu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/version"
)

// The measured SLTrain lowering. Under --sltrain-lowering auto, a compile
// for this machine times both lowerings of every distinct LowRankSparseAdd
// shape of the module — the candidate kernels compiled for the target,
// called on random operands with the threads the program will run on — and
// each layer takes the faster (lower.SLTrainTiming.Pick). The times are
// cached per CPU, target and shape (sltrain_cache.go), so a second compile
// measures nothing and writes the same artifact. A target that is not this
// machine (--cpu of another CPU, --device cuda) cannot be timed here: it
// keeps the cost model (lower.ChooseSLTrain), and --explain says so.

// sltrainLayer is one LowRankSparseAdd of the module.
type sltrainLayer struct {
	graph, node string
	shape       lower.SLTrainShape
	attrs       ir.Attrs // the node's: scale, out_dtype
}

// sltrainLayers lists m's LowRankSparseAdd nodes in graph and node order.
func sltrainLayers(m *ir.Module) ([]sltrainLayer, error) {
	var out []sltrainLayer
	for _, g := range m.Graphs {
		types := g.Types()
		for _, n := range g.Nodes {
			if n.Op != "LowRankSparseAdd" {
				continue
			}
			in := make([]ir.Type, len(n.Inputs))
			for i, v := range n.Inputs {
				in[i] = types[v]
			}
			scale := n.Attrs.GetFloat("scale", 0)
			s, err := lower.SLTrainShapeOf(in, n.Outputs[0].Type, scale)
			if err != nil {
				return nil, fmt.Errorf("graph %q: node %s: %w", g.Name, n, err)
			}
			out = append(out, sltrainLayer{graph: g.Name, node: n.Name, shape: s, attrs: n.Attrs})
		}
	}
	return out, nil
}

// calibration is what a measurement depends on besides the shape.
type calibration struct {
	opt     Options
	cpu     string // LLVM target CPU and features the candidates are compiled for
	feats   string
	threads int
	ident   string // the cache key's machine part
}

// hostTarget reports whether opt compiles for this machine (so that its
// kernels can be timed here), and when not, why.
func hostTarget(opt Options) (bool, string) {
	t := opt.Target
	if t.IsCUDA() {
		return false, "the target is --device cuda, not this machine's CPU"
	}
	host := llvm.HostCPUName()
	if t.CPU != "" && t.CPU != host {
		return false, fmt.Sprintf("--cpu %s is not this machine's CPU (%s)", t.CPU, host)
	}
	if t.Features != "" && t.Features != llvm.HostCPUFeatures() {
		return false, "the target features are not this machine's"
	}
	return true, ""
}

// sltrainTimes returns the measured times of m's LowRankSparseAdd shapes
// for opt, or nil when the lowering is forced, nothing is to be measured
// (opt.MeasureSLTrain unset, no SLTrain layer) or the target is not this
// machine. A measurement that fails is reported and leaves the cost model
// in charge: it never fails the compile.
func sltrainTimes(m *ir.Module, opt Options) map[lower.SLTrainShape]lower.SLTrainTiming {
	if !opt.MeasureSLTrain || (opt.SLTrainLowering != "" && opt.SLTrainLowering != "auto") {
		return nil
	}
	layers, err := sltrainLayers(m)
	if err != nil || len(layers) == 0 {
		return nil
	}
	if ok, why := hostTarget(opt); !ok {
		explain(opt.Explain, "sltrain-lowering auto: not measured (%s); the cost model picks each layer", why)
		return nil
	}
	c := newCalibration(opt)
	times, err := c.measure(layers)
	if err != nil {
		warn(opt, "slc: warning: timing the SLTrain lowerings failed (%v); the cost model picks each layer", err)
		return nil
	}
	return times
}

// newCalibration fixes the machine part of a measurement.
func newCalibration(opt Options) *calibration {
	c := &calibration{opt: opt, cpu: opt.Target.CPU, feats: opt.Target.Features, threads: opt.Threads}
	if c.cpu == "" {
		c.cpu = llvm.HostCPUName()
		if c.feats == "" {
			c.feats = llvm.HostCPUFeatures()
		}
	}
	if c.threads < 1 {
		c.threads = goruntime.NumCPU()
	}
	c.ident = fmt.Sprintf("slc %s; cpu %s; llvm %s %s; %d threads", version.String(), hostcpu.Identity(), c.cpu, c.feats, c.threads)
	return c
}

// measure returns the times of every distinct shape of layers: from the
// cache, else timed now (and cached).
func (c *calibration) measure(layers []sltrainLayer) (map[lower.SLTrainShape]lower.SLTrainTiming, error) {
	cache := newTimingCache(c.opt.CacheDir, c.ident, func(msg string) { warn(c.opt, "slc: warning: %s", msg) })
	times := map[lower.SLTrainShape]lower.SLTrainTiming{}
	var todo []sltrainLayer
	seen := map[lower.SLTrainShape]bool{}
	for _, l := range layers {
		if seen[l.shape] {
			continue
		}
		seen[l.shape] = true
		if t, ok := cache.get(l.shape); ok {
			times[l.shape] = t
			continue
		}
		todo = append(todo, l)
	}
	if len(todo) == 0 {
		explain(c.opt.Explain, "sltrain-lowering auto: %d layer shapes, times from the cache (%s)", len(seen), cache.dir)
		return times, nil
	}
	start := time.Now()
	progress(c.opt, "slc: timing merged and factored SLTrain lowerings of %d layer shapes on this CPU (%d threads)…", len(todo), c.threads)
	measured, err := c.time(todo)
	if err != nil {
		return nil, err
	}
	for _, l := range todo {
		t := measured[l.shape]
		times[l.shape] = t
		cache.put(l.shape, t)
	}
	progress(c.opt, "slc: timed in %.1f s; cached in %s", time.Since(start).Seconds(), cache.dir)
	explain(c.opt.Explain, "sltrain-lowering auto: %d layer shapes, %d timed now (%.1f s), %d from the cache (%s)",
		len(seen), len(todo), time.Since(start).Seconds(), len(seen)-len(todo), cache.dir)
	return times, nil
}

// time compiles both lowerings of each layer's shape into one module each
// (one graph per shape) and times every shape's two programs in turns
// (see timePair).
func (c *calibration) time(layers []sltrainLayer) (map[lower.SLTrainShape]lower.SLTrainTiming, error) {
	m, err := calibrationModule(layers)
	if err != nil {
		return nil, err
	}
	// The candidates' module is built here, not by the pipeline: it gets
	// its kernel groups and memory plan from the required passes.
	s, err := passes.Schedule(m)
	if err != nil {
		return nil, fmt.Errorf("planning the candidates: %w", err)
	}
	var ex [2]*executor
	defer func() {
		for _, e := range ex {
			if e != nil {
				e.close()
			}
		}
	}()
	for i, mode := range []string{"merged", "factored"} {
		art, err := Compile(s.Module, Options{Target: c.opt.Target, SLTrainLowering: mode, CC: c.opt.CC, Version: c.opt.Version, Groups: s.Groups, Plans: s.Plans})
		if err != nil {
			return nil, fmt.Errorf("compiling the %s candidates: %w", mode, err)
		}
		if ex[i], err = newExecutor(art); err != nil {
			return nil, err
		}
	}
	out := map[lower.SLTrainShape]lower.SLTrainTiming{}
	for i, l := range layers {
		t, err := timePair(ex[0], ex[1], fmt.Sprintf("c%d", i), c.threads)
		if err != nil {
			return nil, fmt.Errorf("timing %s: %w", l.shape, err)
		}
		out[l.shape] = t
	}
	return out, nil
}

// calibrationModule has one graph per layer, "c0", "c1", …: the layer's
// LowRankSparseAdd alone, every operand a state tensor (c0.x, c0.B, c0.A,
// c0.values, c0.index: state names are global to an artifact), y its
// output.
func calibrationModule(layers []sltrainLayer) (*ir.Module, error) {
	m := &ir.Module{}
	for i, l := range layers {
		s := l.shape
		g := fmt.Sprintf("c%d", i)
		b := ir.NewBuilder(g)
		x := b.AddInput(g+".x", ir.T(s.X, int(s.Rows), int(s.In)), ir.Param, nil)
		B := b.AddInput(g+".B", ir.T(s.W, int(s.Out), int(s.R)), ir.Param, nil)
		A := b.AddInput(g+".A", ir.T(s.W, int(s.R), int(s.In)), ir.Param, nil)
		v := b.AddInput(g+".values", ir.T(s.V, int(s.NNZ)), ir.Param, nil)
		idx := b.AddInput(g+".index", ir.T(s.Index, int(s.NNZ)), ir.Buffer, nil)
		b.Scope = "calibration"
		y := b.Op("LowRankSparseAdd", l.attrs, x, B, A, v, idx)
		b.Output("y", y)
		if err := b.Err(); err != nil {
			return nil, fmt.Errorf("calibration graph of %s: %w", s, err)
		}
		if got := b.Type(y); got.DType != s.Y {
			return nil, fmt.Errorf("calibration graph of %s: y is %v", s, got)
		}
		m.Graphs = append(m.Graphs, b.G)
	}
	return m, m.Verify()
}

// timePair times program name of the merged and the factored executor
// in alternation — one untimed run each, then merged, factored, merged, …
// — so that both see the same load on a busy machine, for at least 5 runs
// each and then until 0.5 s have passed (at most 15 each), and returns
// each one's median.
func timePair(merged, factored *executor, name string, threads int) (lower.SLTrainTiming, error) {
	var runs [2]*preparedRun
	defer func() {
		for _, r := range runs {
			if r != nil {
				r.free()
			}
		}
	}()
	for i, ex := range []*executor{merged, factored} {
		r, err := ex.prepare(name, threads)
		if err != nil {
			return lower.SLTrainTiming{}, err
		}
		runs[i] = r
		r.do() // warm: page in the operands, load the code
	}
	var ds [2][]time.Duration
	start := time.Now()
	for len(ds[0]) < 5 || (time.Since(start) < 500*time.Millisecond && len(ds[0]) < 15) {
		for i, r := range runs {
			t0 := time.Now()
			r.do()
			ds[i] = append(ds[i], time.Since(t0))
		}
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	return lower.SLTrainTiming{Merged: median(ds[0]), Factored: median(ds[1])}, nil
}

// progress writes one line to opt.Progress when it is set.
func progress(opt Options, format string, args ...any) {
	if opt.Progress != nil {
		fmt.Fprintf(opt.Progress, format+"\n", args...)
	}
}

// warn writes one warning line to opt.Warnings, else to --explain's writer.
func warn(opt Options, format string, args ...any) {
	w := opt.Warnings
	if w == nil {
		w = opt.Explain
	}
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// MeasureSLTrainLayers times both lowerings of every LowRankSparseAdd of m
// for opt's target, which must be this machine, through the cache as a
// compile does; progress (when set) gets the progress lines. It is the
// table behind slc bench --lowerings.
func MeasureSLTrainLayers(m *ir.Module, opt Options) ([]SLTrainLayerTimes, error) {
	if ok, why := hostTarget(opt); !ok {
		return nil, fmt.Errorf("codegen: cannot time SLTrain lowerings: %s", why)
	}
	layers, err := sltrainLayers(m)
	if err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	times, err := newCalibration(opt).measure(layers)
	if err != nil {
		return nil, fmt.Errorf("codegen: timing the SLTrain lowerings: %w", err)
	}
	out := make([]SLTrainLayerTimes, len(layers))
	for i, l := range layers {
		s, t := l.shape, times[l.shape]
		out[i] = SLTrainLayerTimes{Graph: l.graph, Node: l.node, Rows: s.Rows, In: s.In, Out: s.Out, R: s.R, NNZ: s.NNZ,
			X: s.X, W: s.W, Merged: t.Merged, Factored: t.Factored, Pick: t.Pick()}
	}
	return out, nil
}
