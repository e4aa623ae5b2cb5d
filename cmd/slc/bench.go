package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
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
	"gitee.com/gidean/conv-linn/train"
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
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads, >= 1", DefaultText: "all cores"},
			&cli.IntFlag{Name: "steps", Value: 5, Usage: "`N` timed steps"},
			&cli.IntFlag{Name: "warmup", Value: 2, Usage: "`N` untimed steps first"},
			&cli.StringFlag{Name: "baseline", Value: "none", Usage: "`WHAT` to compare against in the same run: none or torch"},
			&cli.BoolFlag{Name: "lowerings", Usage: "print each SLTrain layer's measured merged and factored forward times and auto's pick (a config on this machine's CPU)"},
			&cli.IntFlag{Name: "profile", Usage: "after each run, list the `N` kernels that took the most time over the timed steps"},
			&cli.StringFlag{Name: "predict", Usage: "with --device cuda: print a roofline model's prediction of each kernel class and the step on `GPU` (H100, H200 or A100) instead of timing; needs no GPU (with --profile N, also the N kernels predicted slowest)"},
			&cli.Float64Flag{Name: "peak-tflops", Value: 989, Usage: "with --device cuda: the GPU's dense peak `TFLOPS` that GFLOP/s are a fraction of (model FLOP utilisation; 989 = H100/H200 SXM bf16)"},
		}, pipelineFlags()...), codegenFlags()...),
		Action: func(c *cli.Context) error { return bench(c) },
	}
}

// benchResult is one measured configuration.
type benchResult struct {
	stepSeconds   float64
	tokensPerSec  float64
	flopsPerStep  int64
	compileSecond float64
	where         string // runsOn: threads or the GPU's launch
}

// benchProgram is one compiled program bench times: a lowering of the
// model, or the artifact as it is.
type benchProgram struct {
	lowering string // "merged", "auto", "factored", or "" (full-rank, artifact)
	art      *artifact.Artifact
	compile  float64 // seconds to compile it (or read the artifact)
	sameAs   string  // set when this lowering compiled to another's program: not timed again
}

func bench(c *cli.Context) error {
	const cmd = "bench"
	model, err := oneArg(c, cmd, "MODEL")
	if err != nil {
		return err
	}
	threads, steps, warmup := c.Int("threads"), c.Int("steps"), c.Int("warmup")
	switch {
	case threads < 1:
		return usagef(cmd, "flag --threads: must be >= 1, got %d", threads)
	case steps < 1:
		return usagef(cmd, "flag --steps: must be >= 1, got %d", steps)
	case warmup < 0:
		return usagef(cmd, "flag --warmup: must be >= 0, got %d", warmup)
	case c.Int("batch-size") < 1 || c.Int("max-length") < 2:
		return usagef(cmd, "flags --batch-size and --max-length: must be >= 1 and >= 2")
	}
	prec, ok := parsePrecision(c.String("dtype"))
	if !ok {
		return usagef(cmd, "flag --dtype: %q is not f32, bf16 or bf16-mixed (f16 and f64 are not built for training)", c.String("dtype"))
	}
	baseline := c.String("baseline")
	if baseline != "none" && baseline != "torch" {
		return usagef(cmd, "flag --baseline: %q is not none or torch", baseline)
	}
	po, err := pipelineOptions(c, cmd)
	if err != nil {
		return err
	}
	if baseline == "torch" && po.Optimizer != "adamw" {
		return usagef(cmd, "flag --baseline: torch times AdamW (tools/torchref/bench.py); --optimizer %s has no torch baseline here", po.Optimizer)
	}
	if c.IsSet("dtype") || !isArtifact(model) {
		po.BF16Mixed = prec.Mixed
	}
	co, err := codegenOptions(c, cmd, nil, nil)
	if err != nil {
		return err
	}
	gpu := co.Device == "cuda"
	if gpu && c.Float64("peak-tflops") <= 0 {
		return usagef(cmd, "flag --peak-tflops: must be > 0, got %g", c.Float64("peak-tflops"))
	}
	predict := c.String("predict")
	if predict != "" && !gpu && !isArtifact(model) {
		return usagef(cmd, "flag --predict: predicts a cuda artifact; add --device cuda")
	}
	if predict != "" {
		if _, err := roofline.Lookup(predict); err != nil {
			return usagef(cmd, "flag --predict: %v", err)
		}
	}
	if gpu && predict == "" {
		if _, err := runtime.OpenCUDA(); err != nil { // before compiling anything
			return fmt.Errorf("--device cuda: %v; without a CUDA GPU, bench on the CPU (leave --device cuda out)", err)
		}
	}

	var mod *ir.Module   // the compiled module: metadata and graphs
	var st *passes.State // its pass state, for a config
	var progs []*benchProgram
	if isArtifact(model) {
		start := time.Now()
		art, err := artifact.ReadFile(model)
		if err != nil {
			return err
		}
		if mod, err = ir.ParseBinary(art.Module); err != nil {
			return fmt.Errorf("%s: artifact module: %w", model, err)
		}
		if err := checkArtifactFlags(c, model, mod, art); err != nil {
			return err
		}
		gpu = art.Target.Kind == artifact.TargetCUDA
		progs = []*benchProgram{{art: art, compile: time.Since(start).Seconds()}}
	} else {
		if mod, st, progs, err = compileBench(c, model, po); err != nil {
			return err
		}
	}
	if c.Bool("lowerings") {
		if isArtifact(model) || !isSLTrain(mod) {
			return usagef(cmd, "flag --lowerings: %s has no SLTrain layers to lower (give a config with --peft sltrain)", model)
		}
		if err := printLowerings(c, model, mod); err != nil {
			return err
		}
	}
	g := mod.Graph("train_step")
	if g == nil || (mod.Graph("update") == nil && !train.PerLayer(mod)) {
		return fmt.Errorf("%s: the artifact has no train_step and update programs", model)
	}
	ids := g.Input("input_ids")
	if ids == nil || ids.Type.Rank() != 2 {
		return fmt.Errorf("%s: train_step has no input_ids [batch, length]", model)
	}
	// The baseline's arguments come from the module; settings it cannot
	// express stop here, before anything is timed.
	var torchArgv []string
	if baseline == "torch" {
		if torchArgv, err = torchArgs(mod, threads, steps, warmup); err != nil {
			return err
		}
		if gpu {
			torchArgv = append(torchArgv, "--device", "cuda")
		}
	}
	if !isArtifact(model) {
		lowerings := make([]string, len(progs))
		for i, p := range progs {
			lowerings[i] = p.lowering
		}
		how := ""
		if isSLTrain(mod) {
			how = ", --sltrain-lowering " + strings.Join(lowerings[:len(lowerings)-1], ", ")
			if len(lowerings) > 1 {
				how += " and " + lowerings[len(lowerings)-1]
			}
		}
		printf(c, "Compiling %s (%s, batch %d × %d tokens)%s…\n", model, metaLabel(mod.Meta), ids.Type.Shape[0], ids.Type.Shape[1], how)
	}
	if predict != "" {
		if !gpu {
			return usagef(cmd, "flag --predict: %s is not a cuda artifact", model)
		}
		progs = progs[:1] // the lowering a user gets
	}
	if err := compilePrograms(c, model, mod, st, progs); err != nil {
		return err
	}
	if predict != "" {
		return benchPredict(c, model, mod, st, progs[0], predict)
	}
	if isArtifact(model) {
		printf(c, "%s: a compiled artifact (%s, batch %d × %d tokens); its SLTrain lowering was fixed when it was compiled, so one program is timed (bench the config for the merged and auto ratios)\n",
			model, metaLabel(mod.Meta), ids.Type.Shape[0], ids.Type.Shape[1])
	} else if po.PEFT == "full" {
		printf(c, "full-rank: no SLTrain layers, so the lowering does not apply; one program is timed\n")
	}

	var pk peak.Result
	if gpu {
		// A GPU's peak is its data sheet's: MFU, as the seed's papers
		// report it.
		pk.GFLOPS = 1000 * c.Float64("peak-tflops")
		printf(c, "peak:       %.0f TFLOP/s (--peak-tflops: the GPU's dense peak, not measured)\n", c.Float64("peak-tflops"))
	} else {
		if pk, err = peak.Measure(threads, 300*time.Millisecond); err != nil {
			return err
		}
		printf(c, "peak:       %.1f GFLOP/s fp32 (%v, %d chains, %d threads, measured in %.2f s)\n", pk.GFLOPS, pk.Path, peak.Chains, threads, pk.Elapsed.Seconds())
	}

	flops := summary.FLOPs(g)
	tokens := ids.Type.NumElements()
	vocab := vocabSize(mod)
	results := map[string]*benchResult{}
	for _, p := range progs {
		name := "slc"
		if p.lowering != "" {
			name = "slc " + p.lowering
		}
		if p.sameAs != "" {
			results[p.lowering] = results[p.sameAs]
			printf(c, "%-13s the same program as %s (auto chose %s for every layer)\n", name+":", p.sameAs, p.lowering)
			continue
		}
		res, err := timeProgram(c, model, p, vocab, steps, warmup, threads)
		if err != nil {
			return err
		}
		res.flopsPerStep, res.compileSecond = flops, p.compile
		res.tokensPerSec = float64(tokens) / res.stepSeconds
		results[p.lowering] = res
		gf := float64(flops) / res.stepSeconds / 1e9
		printf(c, "%-13s %.3f s/step (median of %d), %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (%.1f GFLOP per step), %s; compile+load %.1f s\n",
			name+":", res.stepSeconds, steps, res.tokensPerSec, gf, 100*gf/pk.GFLOPS, float64(flops)/1e9, res.where, res.compileSecond)
	}
	printAutoVsBest(c, results)
	if baseline != "torch" {
		return nil
	}

	tr, err := torchBaseline(c, mod, torchArgv)
	if err != nil {
		return err
	}
	tgf := tr.TokensPerS * float64(flops) / float64(tokens) / 1e9
	layer := "the same dense Linear layers"
	if isSLTrain(mod) {
		layer = "the seed's merged layer, W = B·A·scale + S dense, one GEMM"
	}
	where := fmt.Sprintf("%d threads, OPENBLAS_CORETYPE=SkylakeX", threads)
	if gpu {
		where = "on the same GPU"
	}
	printf(c, "PyTorch:    %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (tools/torchref/bench.py: %s; %s)\n",
		tr.TokensPerS, tgf, 100*tgf/pk.GFLOPS, layer, where)
	for _, p := range progs {
		r := results[p.lowering]
		ratio := r.tokensPerSec / tr.TokensPerS
		switch p.lowering {
		case "":
			printf(c, "ratio:      %.2f× PyTorch\n", ratio)
		case "merged":
			printf(c, "ratio merged:   %.2f× PyTorch (the same algorithm: slc's implementation speed-up)\n", ratio)
		case "auto":
			printf(c, "ratio auto:     %.2f× PyTorch (what a user gets: each layer's lowering picked by its times on this machine)\n", ratio)
		default:
			printf(c, "ratio %s: %.2f× PyTorch (--sltrain-lowering %s)\n", p.lowering, ratio, p.lowering)
		}
	}
	return nil
}

// compileBench builds a config's module through the pipeline and lists the
// programs to time: one for a full-rank model, else the lowering a user
// gets (auto, or the one given) plus merged, PyTorch's algorithm.
func compileBench(c *cli.Context, model string, po passes.Options) (*ir.Module, *passes.State, []*benchProgram, error) {
	src, err := readSource(model)
	if err != nil {
		return nil, nil, nil, err
	}
	if src.kind != kindConfig {
		return nil, nil, nil, fmt.Errorf("%s: slc bench needs a LLaMA config or a .slc artifact, not %s", model, src.kind)
	}
	opt := defaultBuild(c)
	m, err := buildLlama(src.path, &opt, c.IsSet("max-length"))
	err = maxLengthUsage("bench", c, err)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := runPipeline(c, src.path, m, true, po)
	if err != nil {
		return nil, nil, nil, err
	}
	var progs []*benchProgram
	for _, l := range benchLowerings(isSLTrain(m), c.String("sltrain-lowering"), c.IsSet("sltrain-lowering")) {
		progs = append(progs, &benchProgram{lowering: l})
	}
	return m, st, progs, nil
}

// benchLowerings are the SLTrain lowerings bench times: the one a user
// gets first (auto, or the flag's), then merged when that is another.
// A full-rank model has one program ("").
func benchLowerings(sltrain bool, flag string, set bool) []string {
	if !sltrain {
		return []string{""}
	}
	if !set {
		flag = "auto"
	}
	switch {
	case flag == "merged":
		return []string{"merged"}
	case !set:
		return []string{"auto", "merged", "factored"}
	}
	return []string{flag, "merged"}
}

// compilePrograms compiles each lowering of a config module (st: its kernel
// groups and memory plans); when auto chose one lowering for every layer of
// train_step, that lowering is not compiled again.
func compilePrograms(c *cli.Context, model string, mod *ir.Module, st *passes.State, progs []*benchProgram) error {
	autoAll := "" // the lowering auto chose for every layer, if one
	for _, p := range progs {
		if p.art != nil {
			continue
		}
		if p.lowering != "auto" && p.lowering == autoAll {
			p.sameAs = "auto"
			continue
		}
		start := time.Now()
		var explain bytes.Buffer
		var w io.Writer = &explain
		if c.Bool("explain") {
			w = io.MultiWriter(&explain, c.App.Writer)
		}
		co, err := codegenOptions(c, "bench", st, w)
		if err != nil {
			return err
		}
		if p.lowering != "" {
			co.SLTrainLowering = p.lowering
		}
		if p.art, err = compileNative(model, mod, co); err != nil {
			return err
		}
		p.compile = time.Since(start).Seconds()
		if p.lowering == "auto" {
			merged, factored := lowRankChoices(explain.String(), "train_step")
			printf(c, "  auto: %d of train_step's %d LowRankSparseAdd layers factored, %d merged\n", factored, merged+factored, merged)
			switch {
			case factored == 0 && merged > 0:
				autoAll = "merged"
			case merged == 0 && factored > 0:
				autoAll = "factored"
			}
		}
	}
	return nil
}

// lowRankChoice matches codegen's note on a LowRankSparseAdd's lowering.
var lowRankChoice = regexp.MustCompile(`: LowRankSparseAdd (merged|factored) \(`)

// lowRankChoices counts the merged and factored LowRankSparseAdd layers of
// a graph in codegen's explain output.
func lowRankChoices(explain, graph string) (merged, factored int) {
	in := false
	for _, line := range strings.Split(explain, "\n") {
		if strings.HasPrefix(line, "graph ") {
			in = strings.HasPrefix(line, "graph "+graph+":")
			continue
		}
		if !in {
			continue
		}
		if m := lowRankChoice.FindStringSubmatch(line); m != nil {
			if m[1] == "merged" {
				merged++
			} else {
				factored++
			}
		}
	}
	return merged, factored
}

// timeProgram loads a program and times it.
func timeProgram(c *cli.Context, model string, p *benchProgram, vocab, steps, warmup, threads int) (*benchResult, error) {
	start := time.Now()
	rt, err := runtime.Load(p.art, runtime.Options{Threads: threads, Version: version.Version})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", model, err)
	}
	defer rt.Close()
	p.compile += time.Since(start).Seconds()
	ids := rt.Module().Graph("train_step").Input("input_ids")
	res, err := runBench(c, rt, ids.Type, vocab, c.Uint64("seed"), steps, warmup)
	if err != nil {
		return nil, err
	}
	res.where = runsOn(rt)
	if n := c.Int("profile"); n > 0 {
		printProfile(c, rt, n, steps)
	}
	return res, nil
}

// artifactSettings are an artifact's settings under the names of the flags
// that would contradict them.
func artifactSettings(mod *ir.Module, art *artifact.Artifact) map[string]string {
	prec, _ := modulePrecision(mod.Meta)
	have := map[string]string{"peft": "full", "cpu": art.Target.CPU, "dtype": prec.String()}
	if g := mod.Graph("train_step"); g != nil {
		if ids := g.Input("input_ids"); ids != nil && ids.Type.Rank() == 2 {
			have["batch-size"], have["max-length"] = strconv.Itoa(ids.Type.Shape[0]), strconv.Itoa(ids.Type.Shape[1])
		}
	}
	if isSLTrain(mod) {
		for flag, key := range map[string]string{"peft": "peft", "rank": "rank", "sp-ratio": "sp_ratio", "lora-alpha": "lora_alpha", "target-modules": "target_modules"} {
			have[flag] = mod.Meta[key]
		}
	}
	return have
}

// checkArtifactFlags refuses compile flags that say otherwise than the
// artifact (a model setting it fixed, or a compile step it had already).
func checkArtifactFlags(c *cli.Context, path string, mod *ir.Module, art *artifact.Artifact) error {
	have := artifactSettings(mod, art)
	for _, f := range []string{"batch-size", "max-length", "dtype", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "passes", "print-after", "explain", "memory"} {
		if !c.IsSet(f) {
			continue
		}
		v, ok := have[f]
		if ok && sameSetting(f, v, c.Value(f)) {
			continue
		}
		return usagef("bench", "flag --%s: %s is a compiled artifact (%s, batch %s × %s); its settings are fixed (give the config to compile it anew)",
			f, path, metaLabel(mod.Meta), have["batch-size"], have["max-length"])
	}
	return nil
}

// sameSetting compares a flag's value with an artifact's recorded one.
func sameSetting(flag, have string, v any) bool {
	switch x := v.(type) {
	case float64:
		h, err := strconv.ParseFloat(have, 64)
		return err == nil && h == x
	case int:
		return have == strconv.Itoa(x)
	}
	s := fmt.Sprint(v)
	if flag == "dtype" {
		d, _ := parsePrecision(s)
		return d.String() == have
	}
	if flag == "target-modules" { // a set: the order does not matter
		x, y := splitList(s), splitList(have)
		sort.Strings(x)
		sort.Strings(y)
		return strings.Join(x, ",") == strings.Join(y, ",")
	}
	return s == have
}

func splitList(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// isSLTrain reports whether the module was fused by sltrain-fuse.
func isSLTrain(m *ir.Module) bool { return m.Meta["peft"] == "sltrain" }

// metaLabel describes a module's SLTrain settings from its metadata.
func metaLabel(meta map[string]string) string {
	if meta["peft"] != "sltrain" {
		return "full-rank"
	}
	return fmt.Sprintf("SLTrain r %s, δ %s, α %s", meta["rank"], meta["sp_ratio"], meta["lora_alpha"])
}

// runBench times steps of train_step + update after warm-up steps.
func runBench(c *cli.Context, rt *runtime.Runtime, ids ir.Type, vocab int, seed uint64, steps, warmup int) (*benchResult, error) {
	rng := ir.NewRNG(seed)
	tokens := make([]int64, ids.NumElements())
	var times []float64
	perLayer := train.PerLayer(rt.Module())
	tty := isTerminal(c.App.ErrWriter)
	for i := 0; i < warmup+steps; i++ {
		if i == warmup && c.Int("profile") > 0 {
			if err := rt.Profile(true); err != nil {
				return nil, err
			}
		}
		for j := range tokens {
			tokens[j] = int64(rng.Uint64n(uint64(vocab)))
		}
		upd := map[string]float64{"lr": 1e-3, "step": float64(i + 1), "weight_decay": 0, "max_grad_norm": 1e30}
		ts := map[string]float64{"grad_scale": 1}
		if perLayer { // the updates run inside train_step (--optimizer NAME_per_layer)
			upd["grad_coef"] = 1
			for k, v := range upd {
				if rt.Module().Graph("train_step").Input(k) != nil {
					ts[k] = v
				}
			}
		}
		t0 := time.Now()
		if _, err := rt.Run("train_step", runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}, Scalars: ts}); err != nil {
			return nil, err
		}
		if !perLayer {
			if _, err := rt.Run("update", runtime.Inputs{Scalars: upd}); err != nil {
				return nil, err
			}
		}
		d := time.Since(t0).Seconds()
		if i >= warmup {
			times = append(times, d)
		}

		if tty {
			fmt.Fprintf(c.App.ErrWriter, "\rstep %d/%d: %.3f s", i+1, warmup+steps, d)
		}
	}
	if tty {
		fmt.Fprintln(c.App.ErrWriter)
	}
	sort.Float64s(times)
	return &benchResult{stepSeconds: times[len(times)/2]}, nil
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

// vocabSize reads the vocabulary from the embedding's shape.
func vocabSize(m *ir.Module) int {
	for _, g := range m.Graphs {
		if in := g.Input("model.embed_tokens.weight"); in != nil {
			return in.Type.Shape[0]
		}
	}
	return 2
}

// torchScript is the PyTorch baseline, relative to the repository root.
var torchScript = filepath.Join("tools", "torchref", "bench.py")

// torchConfigArg stands for the model config file in torchArgs' argv;
// torchBaseline writes the module's config to a temporary file there.
const torchConfigArg = "{config}"

// projection matches the module names bench.py's model can make SLTrain
// layers of: the attention and MLP projections.
var projection = regexp.MustCompile(`^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$`)

// torchArgs is bench.py's argv (after the interpreter) for the model a
// compiled module describes: every model setting from its metadata and
// train_step's input_ids shape, none from the command line. A model bench.py
// cannot build the same is a usage error.
func torchArgs(mod *ir.Module, threads, steps, warmup int) ([]string, error) {
	meta := mod.Meta
	g := mod.Graph("train_step")
	if g == nil || g.Input("input_ids") == nil || g.Input("input_ids").Type.Rank() != 2 {
		return nil, fmt.Errorf("--baseline torch: the module has no train_step with input_ids [batch, length]")
	}
	if meta["model_config"] == "" {
		return nil, usagef("bench", "--baseline torch: the module records no model config (was it built from a LLaMA config?)")
	}
	prec, ok := modulePrecision(meta)
	if !ok && meta["dtype"] == "f64" {
		prec, ok = precision{DType: ir.F64}, true
	}
	if !ok {
		return nil, usagef("bench", "--baseline torch: the model is %s; tools/torchref/bench.py runs float32, float64, bfloat16 or bf16-mixed only", meta["dtype"])
	}
	dtype := prec.torchName()
	shape := g.Input("input_ids").Type.Shape
	args := []string{torchScript, "--config", torchConfigArg, "--dtype", dtype,
		"--batch-size", strconv.Itoa(shape[0]), "--max-length", strconv.Itoa(shape[1]),
		"--threads", strconv.Itoa(threads), "--steps", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup)}
	if s := meta["seed"]; s != "" {
		args = append(args, "--seed", s)
	}
	switch meta["peft"] {
	case "", "full":
		if len(fusedModules(g)) > 0 {
			return nil, fmt.Errorf("--baseline torch: the module has SLTrain layers but its metadata says full-rank")
		}
		return append(args, "--peft", "full"), nil
	case "sltrain":
	default:
		return nil, usagef("bench", "--baseline torch: peft %q has no PyTorch baseline (bench.py runs sltrain or full)", meta["peft"])
	}
	for _, k := range []string{"rank", "sp_ratio", "lora_alpha"} {
		if _, err := strconv.ParseFloat(meta[k], 64); err != nil {
			return nil, fmt.Errorf("--baseline torch: the module's SLTrain metadata has no valid %s (%q)", k, meta[k])
		}
	}
	targets := splitList(meta["target_modules"])
	if len(targets) == 0 {
		targets = passes.DefaultTargetModules
	}
	// bench.py fuses exactly the projections whose names contain a target;
	// slc must have fused the same layers.
	fused := fusedModules(g)
	for _, m := range fused {
		if !projection.MatchString(m) {
			return nil, usagef("bench", "--baseline torch: the model has an SLTrain layer %s (target modules %s); tools/torchref/bench.py makes SLTrain layers of the attention and MLP projections only", m, strings.Join(targets, ","))
		}
	}
	for _, in := range g.InputsWithRole(ir.Param) {
		if m, ok := strings.CutSuffix(in.Name, ".weight"); ok && projection.MatchString(m) && passes.IsTarget(m, targets) {
			return nil, usagef("bench", "--baseline torch: target modules %s name %s, which slc kept dense; tools/torchref/bench.py would fuse it", strings.Join(targets, ","), m)
		}
	}
	return append(args, "--peft", "sltrain", "--rank", meta["rank"], "--sp-ratio", meta["sp_ratio"],
		"--lora-alpha", meta["lora_alpha"], "--target-modules", strings.Join(targets, ",")), nil
}

// fusedModules are the modules of g's SLTrain layers (those with a lora_A).
func fusedModules(g *ir.Graph) []string {
	var out []string
	for _, in := range g.InputsWithRole(ir.Param) {
		if m, ok := strings.CutSuffix(in.Name, ".lora_A"); ok {
			out = append(out, m)
		}
	}
	return out
}

// paramCount is the number of parameter elements of g (buffers excluded),
// bench.py's "params".
func paramCount(g *ir.Graph) int64 {
	var n int64
	for _, in := range g.InputsWithRole(ir.Param) {
		n += int64(in.Type.NumElements())
	}
	return n
}

// torchResult is what bench.py reports.
type torchResult struct {
	TokensPerS    float64 `json:"tokens_per_s"`
	Params        int64   `json:"params"`
	SLTrainLayers *int    `json:"sltrain_layers"`
}

// torchBaseline runs tools/torchref/bench.py with argv and checks it built
// the module's model (the same parameter count and SLTrain layers).
func torchBaseline(c *cli.Context, mod *ir.Module, argv []string) (*torchResult, error) {
	if _, err := os.Stat(torchScript); err != nil {
		return nil, fmt.Errorf("--baseline torch: %s not found (run slc bench from the repository root)", torchScript)
	}
	cfg, err := os.CreateTemp("", "slc-bench-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(cfg.Name())
	if _, err := cfg.WriteString(mod.Meta["model_config"]); err != nil {
		cfg.Close()
		return nil, err
	}
	if err := cfg.Close(); err != nil {
		return nil, err
	}
	args := append([]string(nil), argv...)
	for i, a := range args {
		if a == torchConfigArg {
			args[i] = cfg.Name()
		}
	}
	printf(c, "Running the PyTorch baseline…\n")
	out, err := exec.Command(torchPython(), args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = oneLine(string(ee.Stderr))
		}
		return nil, fmt.Errorf("--baseline torch: %s failed: %s", torchScript, msg)
	}
	var r torchResult
	if err := json.Unmarshal(lastLine(out), &r); err != nil || r.TokensPerS <= 0 {
		return nil, fmt.Errorf("--baseline torch: cannot read tokens_per_s from %s's output %q", torchScript, string(out))
	}
	g := mod.Graph("train_step")
	if want := paramCount(g); r.Params != want {
		return nil, fmt.Errorf("--baseline torch: %s built a model of %d parameters, slc's has %d: not the same model", torchScript, r.Params, want)
	}
	if want := len(fusedModules(g)); r.SLTrainLayers == nil || *r.SLTrainLayers != want {
		got := "no count of"
		if r.SLTrainLayers != nil {
			got = strconv.Itoa(*r.SLTrainLayers)
		}
		return nil, fmt.Errorf("--baseline torch: %s built %s SLTrain layers, slc's model has %d: not the same model", torchScript, got, want)
	}
	return &r, nil
}

func lastLine(b []byte) []byte {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return []byte(s[i+1:])
		}
	}
	return []byte(s)
}

// defaultBuild reads the model-building flags of slc bench (its --dtype
// already checked).
func defaultBuild(c *cli.Context) frontend.Options {
	p, _ := parsePrecision(c.String("dtype"))
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

// torchPython is the Python that runs the PyTorch baseline: $SLC_PYTHON, else
// Debian's (/usr/bin/python3, with python3-torch), not whatever python3 is
// first on PATH.
func torchPython() string {
	if p := os.Getenv("SLC_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}
