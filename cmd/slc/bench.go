package main

import (
	"fmt"
	"gitee.com/gidean/conv-linn/bench"
	"gitee.com/gidean/conv-linn/driver"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/peak"
	"gitee.com/gidean/conv-linn/roofline"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/version"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "time full training steps (train_step + the --optimizer update, AdamW by default) of a model on random tokens",
		ArgsUsage: "MODEL",
		Description: "MODEL is a LLaMA config (compiled first, with the flags of slc compile) or a .slc artifact,\n" +
			"whose batch, length and SLTrain settings are fixed (a compile flag that says otherwise is a\n" +
			"usage error). Each timed step runs train_step then update on fresh random token ids; the\n" +
			"figures are the median of --steps steps after --warmup untimed ones. GFLOP/s counts the\n" +
			"products of train_step (MatMul, Linear, LowRankSparseAdd at its factored cost, whichever way\n" +
			"it is lowered), the same count for every lowering and for PyTorch. Before timing, bench\n" +
			"measures this machine's fp32 FMA peak on the same threads (package peak: 12 chains of\n" +
			"vfmadd231ps on zmm with AVX-512F, ymm with FMA, else SSE mulps+addps; about 0.3 s) and\n" +
			"prints each GFLOP/s as a fraction of it.\n\n" +
			"Lowerings (SLTrain config): bench compiles and times --sltrain-lowering auto (what a user\n" +
			"gets: each layer's lowering timed on this machine), merged (W = B·A·scale + S dense, one\n" +
			"GEMM: PyTorch's algorithm) and factored, prints how much slower auto's step is than the\n" +
			"faster of the other two, and a ratio for each against one PyTorch run; when auto picks one\n" +
			"lowering for every layer, that program is timed once. An explicit --sltrain-lowering merged\n" +
			"times merged only; factored or auto times that one plus merged. --lowerings first prints\n" +
			"every SLTrain layer's measured merged and factored forward times and auto's pick. A\n" +
			"full-rank model or an artifact (its lowering was fixed when it was compiled) is timed once.\n\n" +
			"--baseline torch runs the seed's semantics in PyTorch (tools/torchref/bench.py, Debian's\n" +
			"/usr/bin/python3 or $SLC_PYTHON, run from the repository root) on the model the compiled module describes:\n" +
			"its config, peft, rank, δ, α, target modules, dtype, batch and length come from the module's\n" +
			"metadata and input shape, never from the flags, and its parameter count must match slc's.\n" +
			"A model bench.py cannot express is a usage error.\n\n" +
			"  slc bench testdata/configs/llama_20m.json --rank 64 --baseline torch",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("bench"),
		Flags: append(append([]cli.Flag{
			&cli.IntFlag{Name: "batch-size", Aliases: []string{"batch_size"}, Value: defaultBatchSize, Usage: "`N` sequences per batch"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Value: defaultMaxLength, Usage: "`L` tokens per sequence"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "`S` seeds the initial weights and the random tokens"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "`DTYPE` of the model: f32 (float32), bf16 (bfloat16: the seed's pure bf16) or bf16-mixed, as slc train --dtype"},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads", DefaultText: "all cores"},
			&cli.IntFlag{Name: "steps", Value: 5, Usage: "`N` timed steps"},
			&cli.IntFlag{Name: "warmup", Value: 2, Usage: "`N` untimed steps first"},
			&cli.StringFlag{Name: "baseline", Value: "none", Usage: "`WHAT` to compare against in the same run: none or torch"},
			&cli.BoolFlag{Name: "lowerings", Usage: "print each SLTrain layer's measured merged and factored forward times and auto's pick (a config on this machine's CPU)"},
			&cli.IntFlag{Name: "profile", Usage: "after each run, list the `N` kernels that took the most time over the timed steps"},
			&cli.StringFlag{Name: "predict", Usage: "with --device cuda: print a roofline model's prediction of each kernel class and the step on `GPU` (H100, H200 or A100) instead of timing; needs no GPU (with --profile N, also the N kernels predicted slowest)"},
			&cli.Float64Flag{Name: "peak-tflops", Value: 989, Usage: "with --device cuda: the GPU's dense peak `TFLOPS` that GFLOP/s are a fraction of (model FLOP utilisation; 989 = H100/H200 SXM bf16)"},
		}, pipelineFlags()...), codegenFlags()...),
		Action: func(c *cli.Context) error { return benchMain(c) },
	}
}

// benchRun is one slc bench: its checked flags, the compiled module and
// the programs to time.
type benchRun struct {
	c                      *cli.Context
	model                  string
	threads, steps, warmup int
	baseline, predict      string
	po                     passes.Options
	gpu, artifact          bool
	mod                    *ir.Module    // the compiled module: metadata and graphs
	st                     *passes.State // its pass state, for a config
	progs                  []*bench.Program
	torchArgv              []string
}

func benchMain(c *cli.Context) error {
	b, err := benchFlags(c)
	if err != nil {
		return err
	}
	if err := b.open(); err != nil {
		return err
	}
	if err := b.prepare(); err != nil {
		return err
	}
	if err := compilePrograms(c, b.model, b.mod, b.st, b.progs); err != nil {
		return err
	}
	if b.predict != "" {
		return benchPredict(c, b.model, b.mod, b.st, b.progs[0], b.predict)
	}
	b.notes()
	pk, err := b.peak()
	if err != nil {
		return err
	}
	results, err := b.time(pk)
	if err != nil {
		return err
	}
	printAutoVsBest(c, results)
	if b.baseline != "torch" {
		return nil
	}
	return b.torch(pk, results)
}

// benchFlags reads and checks slc bench's flags before any work.
func benchFlags(c *cli.Context) (*benchRun, error) {
	const cmd = "bench"
	model, err := oneArg(c, cmd, "MODEL")
	if err != nil {
		return nil, err
	}
	b := &benchRun{c: c, model: model, threads: c.Int("threads"), steps: c.Int("steps"), warmup: c.Int("warmup"),
		baseline: c.String("baseline"), predict: c.String("predict"), artifact: isArtifact(model)}
	switch {
	case b.threads < 1:
		return nil, usagef(cmd, "flag --threads: must be >= 1, got %d", b.threads)
	case b.steps < 1:
		return nil, usagef(cmd, "flag --steps: must be >= 1, got %d", b.steps)
	case b.warmup < 0:
		return nil, usagef(cmd, "flag --warmup: must be >= 0, got %d", b.warmup)
	case c.Int("batch-size") < 1 || c.Int("max-length") < 2:
		return nil, usagef(cmd, "flags --batch-size and --max-length: must be >= 1 and >= 2")
	}
	prec, ok := driver.ParsePrecision(c.String("dtype"))
	if !ok {
		return nil, usagef(cmd, "flag --dtype: %q is not f32, bf16 or bf16-mixed (f16 and f64 are not built for training)", c.String("dtype"))
	}
	if b.baseline != "none" && b.baseline != "torch" {
		return nil, usagef(cmd, "flag --baseline: %q is not none or torch", b.baseline)
	}
	if b.po, err = pipelineOptions(c, cmd); err != nil {
		return nil, err
	}
	if b.baseline == "torch" && b.po.Optimizer != "adamw" {
		return nil, usagef(cmd, "flag --baseline: torch times AdamW (tools/torchref/bench.py); --optimizer %s has no torch baseline here", b.po.Optimizer)
	}
	if c.IsSet("dtype") || !b.artifact {
		b.po.BF16Mixed = prec.Mixed
	}
	return b, b.checkDevice()
}

// checkDevice checks the GPU flags, and that a GPU is there to time on
// before anything is compiled.
func (b *benchRun) checkDevice() error {
	const cmd = "bench"
	c := b.c
	co, err := codegenOptions(c, cmd, nil, nil)
	if err != nil {
		return err
	}
	b.gpu = co.Target.IsCUDA()
	if b.gpu && c.Float64("peak-tflops") <= 0 {
		return usagef(cmd, "flag --peak-tflops: must be > 0, got %g", c.Float64("peak-tflops"))
	}
	if b.predict != "" && !b.gpu && !b.artifact {
		return usagef(cmd, "flag --predict: predicts a cuda artifact; add --device cuda")
	}
	if b.predict != "" {
		if _, err := roofline.Lookup(b.predict); err != nil {
			return usagef(cmd, "flag --predict: %v", err)
		}
	}
	if b.gpu && b.predict == "" {
		if _, err := runtime.OpenCUDA(); err != nil { // before compiling anything
			return fmt.Errorf("--device cuda: %v; without a CUDA GPU, bench on the CPU (leave --device cuda out)", err)
		}
	}
	return nil
}

// open reads the artifact, or builds the config's module through the
// pipeline with the lowerings to compile.
func (b *benchRun) open() error {
	if !b.artifact {
		var err error
		b.mod, b.st, b.progs, err = compileBench(b.c, b.model, b.po)
		return err
	}
	start := time.Now()
	art, err := artifact.ReadFile(b.model)
	if err != nil {
		return err
	}
	if b.mod, err = ir.ParseBinary(art.Module); err != nil {
		return fmt.Errorf("%s: artifact module: %w", b.model, err)
	}
	if err := checkArtifactFlags(b.c, b.model, b.mod, art); err != nil {
		return err
	}
	b.gpu = art.Target.Kind == artifact.TargetCUDA
	b.progs = []*bench.Program{{Art: art, Compile: time.Since(start).Seconds()}}
	return nil
}

// prepare prints --lowerings, checks the module has what a step needs,
// makes the baseline's argv (settings it cannot express stop here, before
// anything is timed) and says what is compiled.
func (b *benchRun) prepare() error {
	c := b.c
	if c.Bool("lowerings") {
		if b.artifact || !bench.IsSLTrain(b.mod) {
			return usagef("bench", "flag --lowerings: %s has no SLTrain layers to lower (give a config with --peft sltrain)", b.model)
		}
		if err := printLowerings(c, b.model, b.mod); err != nil {
			return err
		}
	}
	g := b.mod.Graph("train_step")
	if g == nil || (b.mod.Graph("update") == nil && !passes.PerLayerModule(b.mod)) {
		return fmt.Errorf("%s: the artifact has no train_step and update programs", b.model)
	}
	ids := g.Input("input_ids")
	if ids == nil || ids.Type.Rank() != 2 {
		return fmt.Errorf("%s: train_step has no input_ids [batch, length]", b.model)
	}
	if b.baseline == "torch" {
		var err error
		if b.torchArgv, err = bench.TorchArgs(b.mod, b.threads, b.steps, b.warmup); err != nil {
			return err
		}
		if b.gpu {
			b.torchArgv = append(b.torchArgv, "--device", "cuda")
		}
	}
	if !b.artifact {
		printf(c, "Compiling %s (%s, batch %d × %d tokens)%s…\n", b.model, bench.MetaLabel(b.mod.Meta), ids.Type.Shape[0], ids.Type.Shape[1], b.loweringsLabel())
	}
	if b.predict != "" {
		if !b.gpu {
			return usagef("bench", "flag --predict: %s is not a cuda artifact", b.model)
		}
		b.progs = b.progs[:1] // the lowering a user gets
	}
	return nil
}

// loweringsLabel lists the lowerings compiled, for the Compiling line.
func (b *benchRun) loweringsLabel() string {
	if !bench.IsSLTrain(b.mod) {
		return ""
	}
	lowerings := make([]string, len(b.progs))
	for i, p := range b.progs {
		lowerings[i] = p.Lowering
	}
	how := ", --sltrain-lowering " + strings.Join(lowerings[:len(lowerings)-1], ", ")
	if len(lowerings) > 1 {
		how += " and " + lowerings[len(lowerings)-1]
	}
	return how
}

// notes says why one program is timed.
func (b *benchRun) notes() {
	if b.artifact {
		ids := b.mod.Graph("train_step").Input("input_ids")
		printf(b.c, "%s: a compiled artifact (%s, batch %d × %d tokens); its SLTrain lowering was fixed when it was compiled, so one program is timed (bench the config for the merged and auto ratios)\n",
			b.model, bench.MetaLabel(b.mod.Meta), ids.Type.Shape[0], ids.Type.Shape[1])
	} else if b.po.PEFT == "full" {
		printf(b.c, "full-rank: no SLTrain layers, so the lowering does not apply; one program is timed\n")
	}
}

// peak is what GFLOP/s are a fraction of: a GPU's data sheet peak (MFU,
// as the seed's papers report it), or this CPU's measured fp32 FMA peak.
func (b *benchRun) peak() (peak.Result, error) {
	var pk peak.Result
	if b.gpu {
		pk.GFLOPS = 1000 * b.c.Float64("peak-tflops")
		printf(b.c, "peak:       %.0f TFLOP/s (--peak-tflops: the GPU's dense peak, not measured)\n", b.c.Float64("peak-tflops"))
		return pk, nil
	}
	pk, err := peak.Measure(b.threads, 300*time.Millisecond)
	if err != nil {
		return pk, err
	}
	printf(b.c, "peak:       %.1f GFLOP/s fp32 (%v, %d chains, %d threads, measured in %.2f s)\n", pk.GFLOPS, pk.Path, peak.Chains, b.threads, pk.Elapsed.Seconds())
	return pk, nil
}

// time times every program (one that auto compiled the same is not timed
// again) and prints its line.
func (b *benchRun) time(pk peak.Result) (map[string]*bench.Result, error) {
	g := b.mod.Graph("train_step")
	flops := summary.FLOPs(g)
	tokens := g.Input("input_ids").Type.NumElements()
	vocab := bench.VocabSize(b.mod)
	results := map[string]*bench.Result{}
	for _, p := range b.progs {
		name := "slc"
		if p.Lowering != "" {
			name = "slc " + p.Lowering
		}
		if p.SameAs != "" {
			results[p.Lowering] = results[p.SameAs]
			printf(b.c, "%-13s the same program as %s (auto chose %s for every layer)\n", name+":", p.SameAs, p.Lowering)
			continue
		}
		res, err := timeProgram(b.c, b.model, p, vocab, b.steps, b.warmup, b.threads)
		if err != nil {
			return nil, err
		}
		res.FLOPsPerStep, res.CompileSecond = flops, p.Compile
		res.TokensPerSec = float64(tokens) / res.StepSeconds
		results[p.Lowering] = res
		gf := float64(flops) / res.StepSeconds / 1e9
		printf(b.c, "%-13s %.3f s/step (median of %d), %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (%.1f GFLOP per step), %s; compile+load %.1f s\n",
			name+":", res.StepSeconds, b.steps, res.TokensPerSec, gf, 100*gf/pk.GFLOPS, float64(flops)/1e9, res.Where, res.CompileSecond)
	}
	return results, nil
}

// torch runs the PyTorch baseline and prints each program's ratio to it.
func (b *benchRun) torch(pk peak.Result, results map[string]*bench.Result) error {
	c := b.c
	tr, err := bench.TorchBaseline(b.mod, b.torchArgv, c.App.Writer)
	if err != nil {
		return err
	}
	g := b.mod.Graph("train_step")
	flops, tokens := summary.FLOPs(g), g.Input("input_ids").Type.NumElements()
	tgf := tr.TokensPerS * float64(flops) / float64(tokens) / 1e9
	layer := "the same dense Linear layers"
	if bench.IsSLTrain(b.mod) {
		layer = "the seed's merged layer, W = B·A·scale + S dense, one GEMM"
	}
	where := fmt.Sprintf("%d threads, OPENBLAS_CORETYPE=SkylakeX", b.threads)
	if b.gpu {
		where = "on the same GPU"
	}
	printf(c, "PyTorch:    %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (tools/torchref/bench.py: %s; %s)\n",
		tr.TokensPerS, tgf, 100*tgf/pk.GFLOPS, layer, where)
	for _, p := range b.progs {
		ratio := results[p.Lowering].TokensPerSec / tr.TokensPerS
		switch p.Lowering {
		case "":
			printf(c, "ratio:      %.2f× PyTorch\n", ratio)
		case "merged":
			printf(c, "ratio merged:   %.2f× PyTorch (the same algorithm: slc's implementation speed-up)\n", ratio)
		case "auto":
			printf(c, "ratio auto:     %.2f× PyTorch (what a user gets: each layer's lowering picked by its times on this machine)\n", ratio)
		default:
			printf(c, "ratio %s: %.2f× PyTorch (--sltrain-lowering %s)\n", p.Lowering, ratio, p.Lowering)
		}
	}
	return nil
}

// compileBench builds a config's module through the pipeline and lists the
// programs to time: one for a full-rank model, else the lowering a user
// gets (auto, or the one given) plus merged, PyTorch's algorithm.
func compileBench(c *cli.Context, model string, po passes.Options) (*ir.Module, *passes.State, []*bench.Program, error) {
	src, err := readSource(model)
	if err != nil {
		return nil, nil, nil, err
	}
	if src.Kind != kindConfig {
		return nil, nil, nil, fmt.Errorf("%s: slc bench needs a LLaMA config or a .slc artifact, not %s", model, src.Kind)
	}
	opt := defaultBuild(c)
	m, err := driver.BuildLlama(src.Path, &opt, c.IsSet("max-length"))
	err = maxLengthUsage("bench", c, err)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := runPipeline(c, src.Path, m, true, po)
	if err != nil {
		return nil, nil, nil, err
	}
	var progs []*bench.Program
	for _, l := range bench.Lowerings(bench.IsSLTrain(m), c.String("sltrain-lowering"), c.IsSet("sltrain-lowering")) {
		progs = append(progs, &bench.Program{Lowering: l})
	}
	return m, st, progs, nil
}

// compilePrograms compiles each lowering of a config module (st: its
// kernel groups and memory plans) with the codegen flags (bench.Compile).
func compilePrograms(c *cli.Context, model string, mod *ir.Module, st *passes.State, progs []*bench.Program) error {
	var explain io.Writer
	if c.Bool("explain") {
		explain = c.App.Writer
	}
	co, err := codegenOptions(c, "bench", st, explain)
	if err != nil {
		return err
	}
	return bench.Compile(model, mod, progs, co, c.App.Writer)
}

// timeProgram loads a program and times it.
func timeProgram(c *cli.Context, model string, p *bench.Program, vocab, steps, warmup, threads int) (*bench.Result, error) {
	start := time.Now()
	rt, err := runtime.Load(p.Art, runtime.Options{Threads: threads, Version: version.Version})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", model, err)
	}
	defer rt.Close()
	p.Compile += time.Since(start).Seconds()
	ids := rt.Module().Graph("train_step").Input("input_ids")
	o := bench.TimeOptions{Seed: c.Uint64("seed"), Steps: steps, Warmup: warmup, Profile: c.Int("profile") > 0}
	if isTerminal(c.App.ErrWriter) {
		o.Progress = c.App.ErrWriter
	}
	res, err := bench.Time(rt, ids.Type, vocab, o)
	if err != nil {
		return nil, err
	}
	res.Where = runsOn(rt)
	if n := c.Int("profile"); n > 0 {
		printProfile(c, rt, n, steps)
	}
	return res, nil
}

// checkArtifactFlags refuses compile flags that say otherwise than the
// artifact (a model setting it fixed, or a compile step it had already).
func checkArtifactFlags(c *cli.Context, path string, mod *ir.Module, art *artifact.Artifact) error {
	have := bench.ArtifactSettings(mod, art)
	for _, f := range []string{"batch-size", "max-length", "dtype", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "passes", "print-after", "explain", "memory"} {
		if !c.IsSet(f) {
			continue
		}
		v, ok := have[f]
		if ok && bench.SameSetting(f, v, c.Value(f)) {
			continue
		}
		return usagef("bench", "flag --%s: %s is a compiled artifact (%s, batch %s × %s); its settings are fixed (give the config to compile it anew)",
			f, path, bench.MetaLabel(mod.Meta), have["batch-size"], have["max-length"])
	}
	return nil
}

// printProfile lists the n kernels that took the most time, per timed step.
func printProfile(c *cli.Context, rt *runtime.Runtime, n, steps int) {
	rep := rt.ProfileReport()
	var total float64
	for _, k := range rep {
		total += k.Seconds
	}
	printf(c, "Kernels by time (per step, %d timed steps, %.3f s/step in kernels):\n", steps, total/float64(steps))
	for i, k := range rep {
		if i == n {
			break
		}
		printf(c, "  %8.2f ms  %5.1f%%  %-10s %s (%d calls/step)\n", 1e3*k.Seconds/float64(steps), 100*k.Seconds/total, k.Program, k.Name(), k.Calls/int64(steps))
	}
}

// defaultBuild reads the model-building flags of slc bench (its --dtype
// already checked).
func defaultBuild(c *cli.Context) frontend.Options {
	p, _ := driver.ParsePrecision(c.String("dtype"))
	return frontend.Options{BatchSize: c.Int("batch-size"), SeqLen: c.Int("max-length"), Seed: c.Uint64("seed"), DType: p.DType}
}

// isTerminal reports whether w is a character device (progress with \r then).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
