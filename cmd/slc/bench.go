package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/bench"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/roofline"
	"gitee.com/gidean/conv-linn/runtime"
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

// benchRun is one slc bench: its checked flags and the run of package
// bench they make.
type benchRun struct {
	bench.Run
	c                 *cli.Context
	baseline, predict string
	po                passes.Options
	st                *passes.State // the config module's pass state
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
	if err := compilePrograms(c, b.Model, b.Mod, b.st, b.Progs); err != nil {
		return err
	}
	if b.predict != "" {
		return b.predictStep()
	}
	b.Notes()
	pk, err := b.Peak()
	if err != nil {
		return err
	}
	results, err := b.TimeAll(pk)
	if err != nil {
		return err
	}
	b.AutoVsBest(results)
	if b.baseline != "torch" {
		return nil
	}
	return b.Torch(pk, results)
}

// benchFlags reads and checks slc bench's flags before any work.
func benchFlags(c *cli.Context) (*benchRun, error) {
	const cmd = "bench"
	model, err := oneArg(c, cmd, "MODEL")
	if err != nil {
		return nil, err
	}
	b := &benchRun{c: c, baseline: c.String("baseline"), predict: c.String("predict")}
	b.Run = bench.Run{Model: model, Artifact: isArtifact(model), Threads: c.Int("threads"), Steps: c.Int("steps"), Warmup: c.Int("warmup"),
		Seed: c.Uint64("seed"), Profile: c.Int("profile"), PeakTFLOPS: c.Float64("peak-tflops"), Out: c.App.Writer}
	if isTerminal(c.App.ErrWriter) {
		b.Progress = c.App.ErrWriter
	}
	switch {
	case b.Threads < 1:
		return nil, usagef(cmd, "flag --threads: must be >= 1, got %d", b.Threads)
	case b.Steps < 1:
		return nil, usagef(cmd, "flag --steps: must be >= 1, got %d", b.Steps)
	case b.Warmup < 0:
		return nil, usagef(cmd, "flag --warmup: must be >= 0, got %d", b.Warmup)
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
	if c.IsSet("dtype") || !b.Artifact {
		b.po.BF16Mixed = prec.Mixed
	}
	b.FullRank = b.po.PEFT == "full"
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
	b.GPU = co.Target.IsCUDA()
	if b.GPU && c.Float64("peak-tflops") <= 0 {
		return usagef(cmd, "flag --peak-tflops: must be > 0, got %g", c.Float64("peak-tflops"))
	}
	if b.predict != "" && !b.GPU && !b.Artifact {
		return usagef(cmd, "flag --predict: predicts a cuda artifact; add --device cuda")
	}
	if b.predict != "" {
		if _, err := roofline.Lookup(b.predict); err != nil {
			return usagef(cmd, "flag --predict: %v", err)
		}
	}
	if b.GPU && b.predict == "" {
		if _, err := runtime.OpenCUDA(); err != nil { // before compiling anything
			return fmt.Errorf("--device cuda: %v; without a CUDA GPU, bench on the CPU (leave --device cuda out)", err)
		}
	}
	return nil
}

// open reads the artifact, or builds the config's module through the
// pipeline with the lowerings to compile.
func (b *benchRun) open() error {
	if !b.Artifact {
		var err error
		b.Mod, b.st, b.Progs, err = compileBench(b.c, b.Model, b.po)
		return err
	}
	start := time.Now()
	art, err := artifact.ReadFile(b.Model)
	if err != nil {
		return err
	}
	if b.Mod, err = ir.ParseBinary(art.Module); err != nil {
		return fmt.Errorf("%s: artifact module: %w", b.Model, err)
	}
	if err := bench.CheckArtifactFlags(b.Model, b.Mod, art, b.c.IsSet, b.c.Value); err != nil {
		return err
	}
	b.GPU = art.Target.Kind == artifact.TargetCUDA
	b.Progs = []*bench.Program{{Art: art, Compile: time.Since(start).Seconds()}}
	return nil
}

// prepare prints --lowerings, checks the module has what a step needs,
// makes the baseline's argv (settings it cannot express stop here, before
// anything is timed) and says what is compiled.
func (b *benchRun) prepare() error {
	c := b.c
	if c.Bool("lowerings") {
		if b.Artifact || !bench.IsSLTrain(b.Mod) {
			return usagef("bench", "flag --lowerings: %s has no SLTrain layers to lower (give a config with --peft sltrain)", b.Model)
		}
		if err := printLowerings(c, b.Model, b.Mod); err != nil {
			return err
		}
	}
	g := b.Mod.Graph("train_step")
	if g == nil || (b.Mod.Graph("update") == nil && !passes.PerLayerModule(b.Mod)) {
		return fmt.Errorf("%s: the artifact has no train_step and update programs", b.Model)
	}
	ids := g.Input("input_ids")
	if ids == nil || ids.Type.Rank() != 2 {
		return fmt.Errorf("%s: train_step has no input_ids [batch, length]", b.Model)
	}
	if b.baseline == "torch" {
		var err error
		if b.TorchArgv, err = bench.TorchArgs(b.Mod, b.Threads, b.Steps, b.Warmup); err != nil {
			return err
		}
		if b.GPU {
			b.TorchArgv = append(b.TorchArgv, "--device", "cuda")
		}
	}
	if !b.Artifact {
		printf(c, "Compiling %s (%s, batch %d × %d tokens)%s…\n", b.Model, bench.MetaLabel(b.Mod.Meta), ids.Type.Shape[0], ids.Type.Shape[1], b.LoweringsLabel())
	}
	if b.predict != "" {
		if !b.GPU {
			return usagef("bench", "flag --predict: %s is not a cuda artifact", b.Model)
		}
		b.Progs = b.Progs[:1] // the lowering a user gets
	}
	return nil
}

// predictStep is --predict GPU: the roofline model's prediction of a step
// (bench.Predict), printed instead of a measurement.
func (b *benchRun) predictStep() error {
	gpu, err := roofline.Lookup(b.predict)
	if err != nil {
		return usagef("bench", "flag --predict: %v", err)
	}
	co, err := codegenOptions(b.c, "bench", b.st, nil)
	if err != nil {
		return err
	}
	return bench.Predict(b.c.App.Writer, b.Model, b.Mod, b.Progs[0], gpu, co, b.c.Int("profile"))
}

// printLowerings is bench --lowerings (bench.WriteLowerings), for this
// machine's CPU only.
func printLowerings(c *cli.Context, model string, mod *ir.Module) error {
	co, err := codegenOptions(c, "bench", nil, nil)
	if err != nil {
		return err
	}
	if co.Target.IsCUDA() || co.Target.CPU != "" {
		return usagef("bench", "flag --lowerings: times kernels for this machine's CPU; leave --device and --cpu out")
	}
	co.Threads = c.Int("threads")
	return bench.WriteLowerings(c.App.Writer, model, mod, co)
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
