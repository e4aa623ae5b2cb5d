package main

import (
	"fmt"
	"gitee.com/gidean/conv-linn/bench"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/ir"
)

// printLowerings is bench --lowerings: every SLTrain layer of train_step
// with both lowerings' forward times as measured (or cached) for this
// machine and the pick auto makes from them.
func printLowerings(c *cli.Context, model string, mod *ir.Module) error {
	co, err := codegenOptions(c, "bench", nil, nil)
	if err != nil {
		return err
	}
	if co.Target.IsCUDA() || co.Target.CPU != "" {
		return usagef("bench", "flag --lowerings: times kernels for this machine's CPU; leave --device and --cpu out")
	}
	co.Threads = c.Int("threads")
	layers, err := codegen.MeasureSLTrainLayers(mod, co)
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	printf(c, "SLTrain lowerings of train_step (forward, median wall time on %d threads, this machine; the backward is the same for both):\n", co.Threads)
	printf(c, "  %-34s %6s %5s %5s %4s %6s %5s  %11s %11s  %s\n", "layer", "rows", "in", "out", "r", "nnz", "dtype", "merged ms", "factored ms", "auto")
	for _, l := range layers {
		if l.Graph != "train_step" {
			continue
		}
		dt := l.X.String()
		if l.X != l.W {
			dt = "mixed"
		}
		printf(c, "  %-34s %6d %5d %5d %4d %6d %5s  %11.3f %11.3f  %s\n", l.Node, l.Rows, l.In, l.Out, l.R, l.NNZ, dt,
			float64(l.Merged)/1e6, float64(l.Factored)/1e6, l.Pick)
	}
	return nil
}

// printAutoVsBest compares auto's step with the faster of all-merged and
// all-factored, when all three were timed.
func printAutoVsBest(c *cli.Context, results map[string]*bench.Result) {
	a, m, f := results["auto"], results["merged"], results["factored"]
	if a == nil || m == nil || f == nil {
		return
	}
	best, name := m.StepSeconds, "merged"
	if f.StepSeconds < best {
		best, name = f.StepSeconds, "factored"
	}
	printf(c, "auto vs best: auto %.3f s/step, all-%s %.3f s/step: auto is %+.1f%%\n", a.StepSeconds, name, best, 100*(a.StepSeconds/best-1))
}
