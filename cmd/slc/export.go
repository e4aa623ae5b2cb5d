package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/driver"
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
			"holds nothing but those files. --format onnx writes -o FILE.onnx: the model (a LLaMA config's\n" +
			"or an ONNX model's) as an inference ONNX graph (opset 17; input_ids → logits at the batch and\n" +
			"length it was trained with), SLTrain layers merged, or computed from their factors with\n" +
			"--factored; the file is written atomically.\n\n" +
			"  slc export runs/shakespeare/latest -o runs/shakespeare/hf --dtype bfloat16",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("export"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the export to `DIR`", TakesFile: true},
			&cli.StringFlag{Name: "format", Value: "hf", Usage: "`FORMAT`: hf (dense, merged), sltrain (factored) or onnx (an inference graph)"},
			&cli.BoolFlag{Name: "factored", Usage: "--format onnx: keep SLTrain layers factored (W = B·A·scale + S computed in the graph)"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "`DTYPE` of the weights: f32 (float32) or bf16 (bfloat16)"},
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
	case format != "hf" && format != "sltrain" && format != "onnx":
		return usagef(cmd, "flag --format: %q is not hf, sltrain or onnx", format)
	case c.IsSet("factored") && format != "onnx":
		return usagef(cmd, "flag --factored applies to --format onnx")
	case format == "onnx" && c.IsSet("dtype") && dt != ir.F32:
		return usagef(cmd, "flag --dtype: --format onnx writes the model as it was trained (float32)")
	case !ok:
		return usagef(cmd, "flag --dtype: %q is not f32 or bf16 (an export's weights)", c.String("dtype"))
	}
	dir, ck, err := openCheckpoint(c, cmd)
	if err != nil {
		return err
	}
	if format == "onnx" {
		return exportONNX(c, dir, ck, out, c.Bool("factored"))
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
	printf(c, "Wrote %s (%s: %s; %s, %s bytes of weights) from %s (update %d)\n", out, files, what, dt, summary.Grouped(driver.FileSize(out+"/"+export.ModelFile)), dir, ck.State.Step)
	return nil
}

// exportONNX writes a checkpoint's model as an inference ONNX graph: the
// forward graph at the trained batch and length, SLTrain fused as it was
// trained, without the loss, with the checkpoint's values.
func exportONNX(c *cli.Context, dir string, ck *checkpoint.Checkpoint, out string, factored bool) error {
	g, m, values, err := driver.CheckpointForward("export", dir, ck)
	if err != nil {
		return err
	}
	data, err := export.ONNXModel(g, values, factored)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := atomicfile.WriteBytes(out, 0o644, data); err != nil {
		return fmt.Errorf("%s: %w", out, driver.UnwrapPathErr(err))
	}
	how := "SLTrain layers merged as W = B·A·scale + S"
	switch {
	case ck.SLTrain == nil:
		how = "full-rank"
	case factored:
		how = "SLTrain layers factored (W computed from lora_B, lora_A, sparse_value, sparse_index)"
	}
	printf(c, "Wrote %s (ONNX opset %d, input_ids i64[%d,%d] → logits; %s; %s bytes) from %s (update %d)\n",
		out, export.ONNXOpset, m.Build.BatchSize, m.Build.SeqLen, how, summary.Grouped(int64(len(data))), dir, ck.State.Step)
	return nil
}
