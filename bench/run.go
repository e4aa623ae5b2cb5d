package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/peak"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/version"
)

// Run is one slc bench once its flags are read and its module compiled:
// the programs to time, how, and where the lines go. Its methods time the
// programs, measure the peak and run the baseline, printing one line each
// to Out as slc bench shows them.
type Run struct {
	Model    string     // the MODEL argument, for messages
	Mod      *ir.Module // the compiled module: metadata and graphs
	Progs    []*Program
	Artifact bool // Model is a compiled .slc artifact
	FullRank bool // --peft full: no SLTrain layers
	GPU      bool // the programs run on a CUDA GPU

	Threads, Steps, Warmup int
	Seed                   uint64
	Profile                int     // list the N kernels that took the most time (0: none)
	PeakTFLOPS             float64 // a GPU's data sheet peak
	TorchArgv              []string

	Out      io.Writer // the report
	Progress io.Writer // a terminal for the steps' progress, or nil
}

// LoweringsLabel lists the lowerings compiled, for the Compiling line.
func (b *Run) LoweringsLabel() string {
	if !IsSLTrain(b.Mod) {
		return ""
	}
	lowerings := make([]string, len(b.Progs))
	for i, p := range b.Progs {
		lowerings[i] = p.Lowering
	}
	how := ", --sltrain-lowering " + strings.Join(lowerings[:len(lowerings)-1], ", ")
	if len(lowerings) > 1 {
		how += " and " + lowerings[len(lowerings)-1]
	}
	return how
}

// Notes says why one program is timed.
func (b *Run) Notes() {
	if b.Artifact {
		ids := b.Mod.Graph("train_step").Input("input_ids")
		fmt.Fprintf(b.Out, "%s: a compiled artifact (%s, batch %d × %d tokens); its SLTrain lowering was fixed when it was compiled, so one program is timed (bench the config for the merged and auto ratios)\n",
			b.Model, MetaLabel(b.Mod.Meta), ids.Type.Shape[0], ids.Type.Shape[1])
	} else if b.FullRank {
		fmt.Fprintf(b.Out, "full-rank: no SLTrain layers, so the lowering does not apply; one program is timed\n")
	}
}

// Peak is what GFLOP/s are a fraction of: a GPU's data sheet peak (MFU,
// as the seed's papers report it), or this CPU's measured fp32 FMA peak.
func (b *Run) Peak() (peak.Result, error) {
	var pk peak.Result
	if b.GPU {
		pk.GFLOPS = 1000 * b.PeakTFLOPS
		fmt.Fprintf(b.Out, "peak:       %.0f TFLOP/s (--peak-tflops: the GPU's dense peak, not measured)\n", b.PeakTFLOPS)
		return pk, nil
	}
	pk, err := peak.Measure(b.Threads, 300*time.Millisecond)
	if err != nil {
		return pk, err
	}
	fmt.Fprintf(b.Out, "peak:       %.1f GFLOP/s fp32 (%v, %d chains, %d threads, measured in %.2f s)\n", pk.GFLOPS, pk.Path, peak.Chains, b.Threads, pk.Elapsed.Seconds())
	return pk, nil
}

// TimeAll times every program (one that auto compiled the same is not
// timed again) and prints its line; the results are by lowering.
func (b *Run) TimeAll(pk peak.Result) (map[string]*Result, error) {
	g := b.Mod.Graph("train_step")
	flops := summary.FLOPs(g)
	tokens := g.Input("input_ids").Type.NumElements()
	vocab := VocabSize(b.Mod)
	results := map[string]*Result{}
	for _, p := range b.Progs {
		name := "slc"
		if p.Lowering != "" {
			name = "slc " + p.Lowering
		}
		if p.SameAs != "" {
			results[p.Lowering] = results[p.SameAs]
			fmt.Fprintf(b.Out, "%-13s the same program as %s (auto chose %s for every layer)\n", name+":", p.SameAs, p.Lowering)
			continue
		}
		res, err := b.timeProgram(p, vocab)
		if err != nil {
			return nil, err
		}
		res.FLOPsPerStep, res.CompileSecond = flops, p.Compile
		res.TokensPerSec = float64(tokens) / res.StepSeconds
		results[p.Lowering] = res
		gf := float64(flops) / res.StepSeconds / 1e9
		fmt.Fprintf(b.Out, "%-13s %.3f s/step (median of %d), %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (%.1f GFLOP per step), %s; compile+load %.1f s\n",
			name+":", res.StepSeconds, b.Steps, res.TokensPerSec, gf, 100*gf/pk.GFLOPS, float64(flops)/1e9, res.Where, res.CompileSecond)
	}
	return results, nil
}

// timeProgram loads a program and times it.
func (b *Run) timeProgram(p *Program, vocab int) (*Result, error) {
	start := time.Now()
	rt, err := runtime.Load(p.Art, runtime.Options{Threads: b.Threads, Version: version.Version})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Model, err)
	}
	defer rt.Close()
	p.Compile += time.Since(start).Seconds()
	ids := rt.Module().Graph("train_step").Input("input_ids")
	o := TimeOptions{Seed: b.Seed, Steps: b.Steps, Warmup: b.Warmup, Profile: b.Profile > 0, Progress: b.Progress}
	res, err := Time(rt, ids.Type, vocab, o)
	if err != nil {
		return nil, err
	}
	res.Where = driver.RunsOn(rt)
	if b.Profile > 0 {
		b.printProfile(rt)
	}
	return res, nil
}

// printProfile lists the Profile kernels that took the most time, per
// timed step.
func (b *Run) printProfile(rt *runtime.Runtime) {
	rep := rt.ProfileReport()
	var total float64
	for _, k := range rep {
		total += k.Seconds
	}
	steps := float64(b.Steps)
	fmt.Fprintf(b.Out, "Kernels by time (per step, %d timed steps, %.3f s/step in kernels):\n", b.Steps, total/steps)
	fmt.Fprintf(b.Out, "  by program: %s\n", programShares(rep, steps, total))
	for i, k := range rep {
		if i == b.Profile {
			break
		}
		fmt.Fprintf(b.Out, "  %8.2f ms  %5.1f%%  %-10s %s (%d calls/step)\n", 1e3*k.Seconds/steps, 100*k.Seconds/total, k.Program, k.Name(), k.Calls/int64(b.Steps))
	}
}

// AutoVsBest compares auto's step with the faster of all-merged and
// all-factored, when all three were timed.
func (b *Run) AutoVsBest(results map[string]*Result) {
	a, m, f := results["auto"], results["merged"], results["factored"]
	if a == nil || m == nil || f == nil {
		return
	}
	best, name := m.StepSeconds, "merged"
	if f.StepSeconds < best {
		best, name = f.StepSeconds, "factored"
	}
	fmt.Fprintf(b.Out, "auto vs best: auto %.3f s/step, all-%s %.3f s/step: auto is %+.1f%%\n", a.StepSeconds, name, best, 100*(a.StepSeconds/best-1))
}

// Torch runs the PyTorch baseline (TorchArgv) and prints each program's
// ratio to it.
func (b *Run) Torch(pk peak.Result, results map[string]*Result) error {
	tr, err := TorchBaseline(b.Mod, b.TorchArgv, b.Out)
	if err != nil {
		return err
	}
	g := b.Mod.Graph("train_step")
	flops, tokens := summary.FLOPs(g), g.Input("input_ids").Type.NumElements()
	tgf := tr.TokensPerS * float64(flops) / float64(tokens) / 1e9
	layer := "the same dense Linear layers"
	if IsSLTrain(b.Mod) {
		layer = "the seed's merged layer, W = B·A·scale + S dense, one GEMM"
	}
	where := fmt.Sprintf("%d threads, OPENBLAS_CORETYPE=SkylakeX", b.Threads)
	if b.GPU {
		where = "on the same GPU"
	}
	fmt.Fprintf(b.Out, "PyTorch:    %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (tools/torchref/bench.py: %s; %s)\n",
		tr.TokensPerS, tgf, 100*tgf/pk.GFLOPS, layer, where)
	for _, p := range b.Progs {
		ratio := results[p.Lowering].TokensPerSec / tr.TokensPerS
		switch p.Lowering {
		case "":
			fmt.Fprintf(b.Out, "ratio:      %.2f× PyTorch\n", ratio)
		case "merged":
			fmt.Fprintf(b.Out, "ratio merged:   %.2f× PyTorch (the same algorithm: slc's implementation speed-up)\n", ratio)
		case "auto":
			fmt.Fprintf(b.Out, "ratio auto:     %.2f× PyTorch (what a user gets: each layer's lowering picked by its times on this machine)\n", ratio)
		default:
			fmt.Fprintf(b.Out, "ratio %s: %.2f× PyTorch (--sltrain-lowering %s)\n", p.Lowering, ratio, p.Lowering)
		}
	}
	return nil
}

// artifactFlags are the compile flags an artifact's settings fix.
var artifactFlags = []string{"batch-size", "max-length", "dtype", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "passes", "print-after", "explain", "memory"}

// CheckArtifactFlags refuses compile flags that say otherwise than the
// artifact (a model setting it fixed, or a compile step it had already):
// isSet and value read the command line.
func CheckArtifactFlags(path string, mod *ir.Module, art *artifact.Artifact, isSet func(string) bool, value func(string) any) error {
	have := ArtifactSettings(mod, art)
	for _, f := range artifactFlags {
		if !isSet(f) {
			continue
		}
		v, ok := have[f]
		if ok && SameSetting(f, v, value(f)) {
			continue
		}
		return driver.Usagef("bench", "flag --%s: %s is a compiled artifact (%s, batch %s × %s); its settings are fixed (give the config to compile it anew)",
			f, path, MetaLabel(mod.Meta), have["batch-size"], have["max-length"])
	}
	return nil
}

// WriteLowerings is bench --lowerings: every SLTrain layer of train_step
// with both lowerings' forward times as measured (or cached) for this
// machine (co: its codegen options) and the pick auto makes from them.
func WriteLowerings(w io.Writer, model string, mod *ir.Module, co codegen.Options) error {
	layers, err := codegen.MeasureSLTrainLayers(mod, co)
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	fmt.Fprintf(w, "SLTrain lowerings of train_step (forward, median wall time on %d threads, this machine; the backward is the same for both):\n", co.Threads)
	fmt.Fprintf(w, "  %-34s %6s %5s %5s %4s %6s %5s  %11s %11s  %s\n", "layer", "rows", "in", "out", "r", "nnz", "dtype", "merged ms", "factored ms", "auto")
	for _, l := range layers {
		if l.Graph != "train_step" {
			continue
		}
		dt := l.X.String()
		if l.X != l.W {
			dt = "mixed"
		}
		fmt.Fprintf(w, "  %-34s %6d %5d %5d %4d %6d %5s  %11.3f %11.3f  %s\n", l.Node, l.Rows, l.In, l.Out, l.R, l.NNZ, dt,
			float64(l.Merged)/1e6, float64(l.Factored)/1e6, l.Pick)
	}
	return nil
}

// programShares sums the profile per program, "train_step 3.512 s (87.1%),
// update 0.519 s (12.9%)" per step, largest first: the update program's
// share is the optimizer's part of a step (issue 21's figure).
func programShares(rep []runtime.KernelTime, steps, total float64) string {
	sum := map[string]float64{}
	var names []string
	for _, k := range rep {
		if _, ok := sum[k.Program]; !ok {
			names = append(names, k.Program)
		}
		sum[k.Program] += k.Seconds
	}
	sort.SliceStable(names, func(i, j int) bool { return sum[names[i]] > sum[names[j]] })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.3f s (%.1f%%)", n, sum[n]/steps, 100*sum[n]/total)
	}
	return strings.Join(parts, ", ")
}
