package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/spectrum"
	"gitee.com/gidean/conv-linn/train"
)

func analyzeCommand() *cli.Command {
	labels := &stringList{}
	return &cli.Command{
		Name:      "analyze",
		Usage:     "singular-value spectra of a checkpoint's layers: L = B·A·scale, S and L + S (or dense W), with plots",
		ArgsUsage: "CKPT [CKPT …]",
		Description: "Each CKPT is a checkpoint directory of slc train (or a save dir: its latest) or an export of\n" +
			"one (slc export --format sltrain or hf). For every SLTrain layer it computes the singular values\n" +
			"of L = B·A·scale (its r values), of S and of W = L + S; for a dense layer (a full-rank run, an\n" +
			"HF export) those of W. float64, LAPACK's SVD (gonum), layers in parallel. DIR gets\n" +
			"spectrum.csv (run, layer, component, index, value), summary.csv (per layer: effective rank\n" +
			"exp(entropy of σ/Σσ), stable rank ‖W‖²_F/‖W‖²₂, S's share of ‖L‖²_F + ‖S‖²_F, the top-r energy of\n" +
			"W and the part of it in L's column space) and the seed's figure for block --layer: singular\n" +
			"value against index, log scale, one panel per projection (spectrum.png, spectrum_tail.png\n" +
			"from index --tail-from); with several CKPTs one pair per run (spectrum-K.png) and\n" +
			"compare.png / compare_tail.png, their L + S or W side by side. The summary is printed as a\n" +
			"table. DIR is replaced atomically, and only when it holds nothing but these files.\n\n" +
			"  slc analyze runs/ablation/sltrain runs/ablation/full -o runs/ablation/spectrum",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("analyze"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the CSVs and figures into `DIR`", TakesFile: true},
			&cli.IntFlag{Name: "layer", Usage: "block `N` the figures show (model.layers.N.*)", DefaultText: "the middle block"},
			&cli.GenericFlag{Name: "label", Value: labels, Usage: "`NAME` of a run in the CSVs and legends: once per CKPT, in their order", DefaultText: "the CKPT directory's name"},
			&cli.IntFlag{Name: "rank", Usage: "`R` of the top-r energy of dense layers", DefaultText: "the r of an SLTrain CKPT among the arguments"},
			&cli.IntFlag{Name: "tail-from", Usage: "first singular value `INDEX` of the tail views", DefaultText: "the rank r, else a quarter of the smallest layer dimension"},
			&cli.IntFlag{Name: "threads", Usage: "`N` layers analyzed at once", DefaultText: "the number of CPUs"},
		},
		Action: func(c *cli.Context) error { return analyzeMain(c, *labels) },
	}
}

func analyzeMain(c *cli.Context, labels []string) error {
	const cmd = "analyze"
	args := c.Args().Slice()
	out := c.String("output")
	switch {
	case len(args) == 0:
		return usagef(cmd, "missing CKPT argument")
	case out == "":
		return usagef(cmd, "missing -o DIR")
	case len(labels) > 0 && len(labels) != len(args):
		return usagef(cmd, "%d --label for %d CKPTs: give one per CKPT, in their order, or none", len(labels), len(args))
	case c.IsSet("layer") && c.Int("layer") < 0:
		return usagef(cmd, "flag --layer: want a block number >= 0, got %d", c.Int("layer"))
	case c.IsSet("rank") && c.Int("rank") < 1:
		return usagef(cmd, "flag --rank: want an integer >= 1, got %d", c.Int("rank"))
	case c.IsSet("tail-from") && c.Int("tail-from") < 1:
		return usagef(cmd, "flag --tail-from: want an index >= 1, got %d", c.Int("tail-from"))
	case c.IsSet("threads") && c.Int("threads") < 1:
		return usagef(cmd, "flag --threads: want an integer >= 1, got %d", c.Int("threads"))
	}
	if slices.Contains(args, "") {
		return usagef(cmd, "CKPT is an empty path")
	}
	if len(labels) == 0 {
		labels = spectrum.CheckpointLabels(args, train.LatestLink)
	}
	if err := spectrum.CheckOutput(out); err != nil {
		return err
	}
	runs, rank, err := spectrum.OpenRuns(args, labels, c.Int("rank"), train.ResolveCheckpoint)
	if err != nil {
		return err
	}
	block, err := spectrum.FigureBlock(runs, c.Int("layer"), c.IsSet("layer"))
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	for _, r := range runs {
		if !r.Model.SLTrain() {
			fmt.Fprintf(c.App.ErrWriter, "slc: %s: not SLTrain (%s without lora_A/lora_B/sparse_value): only the spectra of its dense weights W\n", r.Model.Path, r.Model.Kind)
		}
	}
	tailFrom := c.Int("tail-from")
	if tailFrom == 0 {
		tailFrom = spectrum.DefaultTailFrom(runs, rank)
	}
	for i := range runs {
		bar := spectrum.NewLayerBar(c.App.ErrWriter, isTerminal(c.App.ErrWriter), runs[i].Label)
		res, err := spectrum.Analyze(runs[i].Model, spectrum.Options{Workers: c.Int("threads"), Rank: rank, Progress: bar.Update})
		bar.Finish()
		if err != nil {
			return fmt.Errorf("%s: %w", runs[i].Model.Path, err)
		}
		runs[i].Results = res
	}
	for _, run := range runs {
		printf(c, "%s: %s, %s (%s), %d layers\n", run.Label, run.Model.Path, run.Model.Kind, spectrum.Describe(run.Model), len(run.Results))
		if err := spectrum.WriteTable(c.App.Writer, run); err != nil {
			return err
		}
		printf(c, "\n")
	}
	files, err := spectrum.Files(runs, block, tailFrom)
	if err != nil {
		return &internalError{Err: err}
	}
	if err := spectrum.WriteDir(out, files); err != nil {
		return err
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	printf(c, "Wrote %s: %s (figures of block %d, tail from index %d)\n", out, strings.Join(names, ", "), block, tailFrom)
	return nil
}
