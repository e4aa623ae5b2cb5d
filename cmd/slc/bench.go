package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/version"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "time full training steps (train_step + AdamW update) of a model on random tokens",
		ArgsUsage: "MODEL",
		Description: "MODEL is a LLaMA config (compiled first, with the flags of slc compile) or a .slc artifact.\n" +
			"Each timed step runs train_step then update on fresh random token ids; the figures are\n" +
			"the median of --steps steps after --warmup untimed ones. GFLOP/s counts the products\n" +
			"(MatMul, Linear, LowRankSparseAdd at its factored cost) of train_step. --baseline torch runs\n" +
			"the seed's semantics in PyTorch (tools/torchref/bench.py, Debian's /usr/bin/python3) on the\n" +
			"same model, batch and threads in the same run and prints the ratio.\n\n" +
			"  slc bench testdata/configs/llama_20m.json --rank 64 --baseline torch",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("bench"),
		Flags: append(append([]cli.Flag{
			&cli.IntFlag{Name: "batch-size", Aliases: []string{"batch_size"}, Value: defaultBatchSize, Usage: "`N` sequences per batch"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Value: defaultMaxLength, Usage: "`L` tokens per sequence"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "`S` seeds the initial weights and the random tokens"},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads (default: all cores)"},
			&cli.IntFlag{Name: "steps", Value: 5, Usage: "`N` timed steps"},
			&cli.IntFlag{Name: "warmup", Value: 2, Usage: "`N` untimed steps first"},
			&cli.StringFlag{Name: "baseline", Value: "none", Usage: "`WHAT` to compare against in the same run: none or torch"},
			&cli.IntFlag{Name: "profile", Usage: "after the run, list the `N` kernels that took the most time over the timed steps"},
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
	baseline := c.String("baseline")
	if baseline != "none" && baseline != "torch" {
		return usagef(cmd, "flag --baseline: %q is not none or torch", baseline)
	}
	po, err := pipelineOptions(c, cmd)
	if err != nil {
		return err
	}

	var art *artifact.Artifact
	start := time.Now()
	if filepath.Ext(model) == ".slc" {
		if art, err = artifact.ReadFile(model); err != nil {
			return err
		}
	} else {
		src, err := readSource(model)
		if err != nil {
			return err
		}
		if src.kind != kindConfig {
			return fmt.Errorf("%s: slc bench needs a LLaMA config or a .slc artifact, not %s", model, src.kind)
		}
		opt := defaultBuild(c)
		m, err := buildLlama(src.path, &opt, c.IsSet("max-length"))
		if err != nil {
			return err
		}
		st, err := runPipeline(c, src.path, m, true, po)
		if err != nil {
			return err
		}
		co, err := codegenOptions(c, cmd, st, nil)
		if err != nil {
			return err
		}
		printf(c, "Compiling %s (%s, batch %d × %d tokens)…\n", model, peftLabel(po.PEFT, po.Rank, po.SpRatio), opt.BatchSize, opt.SeqLen)
		if art, err = compileNative(src.path, m, co); err != nil {
			return err
		}
	}
	compileTime := time.Since(start).Seconds()

	rt, err := runtime.Load(art, runtime.Options{Threads: threads, Version: version.Version})
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	defer rt.Close()
	g := rt.Module().Graph("train_step")
	if g == nil || rt.Module().Graph("update") == nil {
		return fmt.Errorf("%s: the artifact has no train_step and update programs", model)
	}
	ids := g.Input("input_ids")
	if ids == nil {
		return fmt.Errorf("%s: train_step has no input_ids", model)
	}
	vocab := vocabSize(rt.Module())
	res, err := runBench(c, rt, ids.Type, vocab, c.Uint64("seed"), steps, warmup)
	if err != nil {
		return err
	}
	res.flopsPerStep = summary.FLOPs(g)
	res.compileSecond = compileTime
	tokens := ids.Type.NumElements()
	printf(c, "slc:     %.3f s/step (median of %d), %.0f tokens/s, %.1f GFLOP/s (%.1f GFLOP per step), %d threads; compile+load %.1f s\n",
		res.stepSeconds, steps, float64(tokens)/res.stepSeconds, float64(res.flopsPerStep)/res.stepSeconds/1e9,
		float64(res.flopsPerStep)/1e9, threads, res.compileSecond)
	if n := c.Int("profile"); n > 0 {
		printProfile(c, rt, n, steps)
	}
	if baseline == "torch" {
		meta := rt.Module().Meta
		tps, err := torchBaseline(c, meta, ids.Type, po.PEFT, threads, steps, warmup)
		if err != nil {
			return err
		}
		printf(c, "PyTorch: %.0f tokens/s (tools/torchref/bench.py, %d threads, OPENBLAS_CORETYPE=SkylakeX)\n", tps, threads)
		printf(c, "ratio:   %.2f× PyTorch\n", float64(tokens)/res.stepSeconds/tps)
	}
	return nil
}

func peftLabel(peft string, r int, sp float64) string {
	if peft == "full" {
		return "full-rank"
	}
	return fmt.Sprintf("SLTrain r %d, δ %g", r, sp)
}

// runBench times steps of train_step + update after warm-up steps.
func runBench(c *cli.Context, rt *runtime.Runtime, ids ir.Type, vocab int, seed uint64, steps, warmup int) (*benchResult, error) {
	rng := ir.NewRNG(seed)
	tokens := make([]int64, ids.NumElements())
	var times []float64
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
		t0 := time.Now()
		if _, err := rt.Run("train_step", runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}, Scalars: map[string]float64{"grad_scale": 1}}); err != nil {
			return nil, err
		}
		if _, err := rt.Run("update", runtime.Inputs{Scalars: map[string]float64{"lr": 1e-3, "step": float64(i + 1), "weight_decay": 0, "max_grad_norm": 1e30}}); err != nil {
			return nil, err
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
		printf(c, "  %8.2f ms  %5.1f%%  %-10s %s (%d calls/step)\n", 1e3*k.Seconds/float64(steps), 100*k.Seconds/total, k.Program, k.Kernel, k.Calls/int64(steps))
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

// torchBaseline runs tools/torchref/bench.py on the same model and returns its tokens/s.
func torchBaseline(c *cli.Context, meta map[string]string, ids ir.Type, peft string, threads, steps, warmup int) (float64, error) {
	script := filepath.Join("tools", "torchref", "bench.py")
	if _, err := os.Stat(script); err != nil {
		return 0, fmt.Errorf("--baseline torch: %s not found (run slc bench from the repository root)", script)
	}
	cfg, err := os.CreateTemp("", "slc-bench-*.json")
	if err != nil {
		return 0, err
	}
	defer os.Remove(cfg.Name())
	if _, err := cfg.WriteString(meta["model_config"]); err != nil {
		return 0, err
	}
	cfg.Close()
	args := []string{script, "--config", cfg.Name(), "--peft", peft,
		"--batch-size", strconv.Itoa(ids.Shape[0]), "--max-length", strconv.Itoa(ids.Shape[1]),
		"--threads", strconv.Itoa(threads), "--steps", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup)}
	if peft == "sltrain" {
		args = append(args, "--rank", meta["rank"], "--sp-ratio", meta["sp_ratio"], "--lora-alpha", meta["lora_alpha"])
	}
	printf(c, "Running the PyTorch baseline…\n")
	out, err := exec.Command("/usr/bin/python3", args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = oneLine(string(ee.Stderr))
		}
		return 0, fmt.Errorf("--baseline torch: %s failed: %s", script, msg)
	}
	var r struct {
		TokensPerS float64 `json:"tokens_per_s"`
	}
	if err := json.Unmarshal(lastLine(out), &r); err != nil || r.TokensPerS <= 0 {
		return 0, fmt.Errorf("--baseline torch: cannot read tokens_per_s from %s's output %q", script, string(out))
	}
	return r.TokensPerS, nil
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

// defaultBuild reads the model-building flags shared with slc compile (f32).
func defaultBuild(c *cli.Context) frontend.Options {
	return frontend.Options{BatchSize: c.Int("batch-size"), SeqLen: c.Int("max-length"), Seed: c.Uint64("seed"), DType: ir.F32}
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
