package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/export"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/summary"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a checkpoint's weights for PyTorch / Hugging Face",
		ArgsUsage: "CKPT",
		Description: "CKPT is a checkpoint directory of slc train (or a save dir: its latest). --format hf writes\n" +
			"config.json and model.safetensors with dense LLaMA weights under HF's names, every SLTrain\n" +
			"layer merged as W = B·(A·scale) + S (loadable by transformers' LlamaForCausalLM);\n" +
			"--format sltrain writes the factored tensors (lora_A, lora_B, sparse_value, sparse_index)\n" +
			"with config.json and sltrain_config.json. DIR is replaced atomically, and only when it\n" +
			"holds nothing but those files.\n\n" +
			"  slc export runs/shakespeare/latest -o runs/shakespeare/hf --dtype bfloat16",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("export"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the export to `DIR`", TakesFile: true},
			&cli.StringFlag{Name: "format", Value: "hf", Usage: "`FORMAT`: hf (dense, merged) or sltrain (factored)"},
			&cli.StringFlag{Name: "dtype", Value: "float32", Usage: "`DTYPE` of the weights: float32 or bfloat16"},
		},
		Action: func(c *cli.Context) error { return exportMain(c) },
	}
}

// exportDType reads --dtype (PyTorch's names, or slc's).
func exportDType(s string) (ir.DType, bool) {
	switch strings.ToLower(s) {
	case "float32", "f32", "fp32":
		return ir.F32, true
	case "bfloat16", "bf16":
		return ir.BF16, true
	}
	return 0, false
}

func exportMain(c *cli.Context) error {
	const cmd = "export"
	out, format := c.String("output"), c.String("format")
	dt, ok := exportDType(c.String("dtype"))
	switch {
	case out == "":
		return usagef(cmd, "missing -o DIR")
	case format != "hf" && format != "sltrain":
		return usagef(cmd, "flag --format: %q is not hf or sltrain", format)
	case !ok:
		return usagef(cmd, "flag --dtype: %q is not float32 or bfloat16", c.String("dtype"))
	}
	dir, ck, err := openCheckpoint(c, cmd)
	if err != nil {
		return err
	}
	files := "config.json, model.safetensors"
	if format == "hf" {
		err = export.HF(ck, out, dt)
	} else {
		if ck.SLTrain == nil {
			return fmt.Errorf("%s: a full-rank checkpoint has no SLTrain factors; export it with --format hf", dir)
		}
		err = export.SLTrain(ck, out, dt)
		files += ", sltrain_config.json"
	}
	if err != nil {
		return err
	}
	what := "dense HF LLaMA weights"
	if format == "hf" && ck.SLTrain != nil {
		what += ", SLTrain layers merged as W = B·A·scale + S"
	} else if format == "sltrain" {
		what = "SLTrain factors"
	}
	printf(c, "Wrote %s (%s: %s; %s, %s bytes of weights) from %s (update %d)\n", out, files, what, dt, summary.Grouped(fileSize(out+"/"+export.ModelFile)), dir, ck.State.Step)
	return nil
}
