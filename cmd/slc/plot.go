package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/train"
)

func plotCommand() *cli.Command {
	labels := &stringList{}
	return &cli.Command{
		Name:      "plot",
		Usage:     "draw the loss curves of one or more runs (their metrics.jsonl) into one PNG",
		ArgsUsage: "METRICS.jsonl [METRICS.jsonl …]",
		Description: "Each METRICS.jsonl is the metrics file of an slc train run (SAVE_DIR/metrics.jsonl). The\n" +
			"PNG (768 × 480) shows every run's training loss per update as a thin line and its eval loss\n" +
			"as a line with markers, one colour per run, against the update step; the legend names each\n" +
			"run by its --label, or by the directory its metrics file is in. The file is written\n" +
			"atomically; a missing, empty or malformed METRICS file is an error naming it (and the line).\n\n" +
			"  slc plot runs/ablation/full/metrics.jsonl runs/ablation/sltrain/metrics.jsonl -o cmp.png\n" +
			"  slc plot a/metrics.jsonl b/metrics.jsonl --label 'r 32' --label 'r 64' --ymax 3 -o zoom.png",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("plot"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the plot to `FILE`.png", TakesFile: true},
			&cli.GenericFlag{Name: "label", Value: labels, Usage: "`NAME` of a run in the legend: give it once per METRICS file, in their order", DefaultText: "the name of the directory each METRICS file is in"},
			&cli.StringFlag{Name: "title", Usage: "`TEXT` above the plot"},
			&cli.Float64Flag{Name: "ymax", Usage: "top of the loss axis `Y`, to zoom past the first updates' loss (about ln(vocabulary))", DefaultText: "fit every point"},
			&cli.BoolFlag{Name: "eval-only", Usage: "draw only the eval loss (the training loss is noisy and can hide small differences)"},
		},
		Action: func(c *cli.Context) error { return plotMain(c, *labels) },
	}
}

// stringList is a repeatable string flag that keeps each value whole
// (urfave/cli's StringSliceFlag would split a label at its commas).
type stringList []string

func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
func (l *stringList) String() string     { return strings.Join(*l, ", ") }

func plotMain(c *cli.Context, labels []string) error {
	const cmd = "plot"
	paths := c.Args().Slice()
	out := c.String("output")
	switch {
	case len(paths) == 0:
		return usagef(cmd, "missing METRICS.jsonl argument")
	case out == "":
		return usagef(cmd, "missing -o FILE.png")
	case !strings.EqualFold(filepath.Ext(out), ".png"):
		return usagef(cmd, "-o %s: the plot is a PNG; give a name ending in .png", out)
	case c.IsSet("ymax") && !(c.Float64("ymax") > 0 && !math.IsInf(c.Float64("ymax"), 0)):
		return usagef(cmd, "flag --ymax: must be a finite number > 0, got %v", c.Float64("ymax"))
	case len(labels) > 0 && len(labels) != len(paths):
		return usagef(cmd, "%d --label for %d METRICS files: give one per file, in their order, or none", len(labels), len(paths))
	}
	for _, p := range paths {
		if p == "" {
			return usagef(cmd, "METRICS.jsonl is an empty path")
		}
	}
	if len(labels) == 0 {
		labels = train.CurveLabels(paths)
	}
	evalOnly := c.Bool("eval-only")
	runs := make([]train.Curves, len(paths))
	for i, p := range paths {
		r, err := train.ReadCurves(p, evalOnly)
		if err != nil {
			return err
		}
		r.Label = labels[i]
		runs[i] = r
	}
	if err := train.PlotRuns(out, runs, train.PlotOptions{Title: c.String("title"), EvalOnly: evalOnly, YMax: c.Float64("ymax")}); err != nil {
		if !strings.HasPrefix(err.Error(), out+": ") { // a write error names out already
			err = fmt.Errorf("%s: %w", out, err)
		}
		return err
	}
	printf(c, "Plot: %s (%d run%s: %s)\n", out, len(runs), map[bool]string{true: "", false: "s"}[len(runs) == 1], strings.Join(labels, ", "))
	return nil
}
