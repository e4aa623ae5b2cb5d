package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/export"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/safetensors"
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
	printf(c, "Wrote %s (%s: %s; %s, %s bytes of weights) from %s (update %d)\n", out, files, what, dt, summary.Grouped(fileSize(out+"/"+export.ModelFile)), dir, ck.State.Step)
	return nil
}

// exportONNX writes a checkpoint's model as an inference ONNX graph: the
// forward graph at the trained batch and length, SLTrain fused as it was
// trained, without the loss, with the checkpoint's values.
func exportONNX(c *cli.Context, dir string, ck *checkpoint.Checkpoint, out string, factored bool) error {
	g, m, values, err := checkpointForward(dir, ck)
	if err != nil {
		return err
	}
	data, err := export.ONNXModel(g, values, factored)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := atomicfile.WriteBytes(out, 0o644, data); err != nil {
		return fmt.Errorf("%s: %w", out, unwrapPathErr(err))
	}
	how := "SLTrain layers merged as W = B·A·scale + S"
	switch {
	case ck.SLTrain == nil:
		how = "full-rank"
	case factored:
		how = "SLTrain layers factored (W computed from lora_B, lora_A, sparse_value, sparse_index)"
	}
	printf(c, "Wrote %s (ONNX opset %d, input_ids i64[%d,%d] → logits; %s; %s bytes) from %s (update %d)\n",
		out, export.ONNXOpset, m.build.BatchSize, m.build.SeqLen, how, summary.Grouped(int64(len(data))), dir, ck.State.Step)
	return nil
}

// checkpointForward is a checkpoint's model as an inference graph: the
// forward graph at the trained batch and length, SLTrain fused as it was
// trained, without the loss; values reads the checkpoint's tensors.
func checkpointForward(dir string, ck *checkpoint.Checkpoint) (*ir.Graph, *modelSpec, export.ONNXValues, error) {
	batch := defaultBatchSize
	if v, ok := ck.State.Args["batch_size"].(float64); ok && v >= 1 {
		batch = int(v)
	}
	m, err := checkpointModel(dir, ck.Config, ck.SLTrain, ck.State.Args, batch, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if m.build.DType != ir.F32 && m.build.DType != ir.InvalidDType || m.passes.BF16Mixed {
		return nil, nil, nil, fmt.Errorf("%s: --format onnx writes float32 models; this one trained in %s", dir, ck.State.Args["dtype"])
	}
	var mod *ir.Module
	if m.onnxModule != nil {
		mod = m.onnxModule.Clone()
	} else if mod, err = frontend.BuildLlama(m.config, m.build); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	fuse, _ := passes.Lookup("sltrain-fuse")
	if err := passes.Run(&passes.State{Module: mod, Options: m.passes}, []passes.Pass{fuse}); err != nil {
		return nil, nil, nil, passError("export", dir, err)
	}
	g := mod.Graph("forward")
	var outs []*ir.Output
	for _, o := range g.Outputs {
		if o.Name != "loss" {
			outs = append(outs, o)
		}
	}
	g.Outputs = outs
	tensors := map[string]*safetensors.Tensor{}
	for k := range ck.Model.Tensors {
		tensors[ck.Model.Tensors[k].Name] = &ck.Model.Tensors[k]
	}
	values := func(name string) ([]float64, []int64, bool) {
		t, ok := tensors[name]
		if !ok { // a derived buffer of an imported model: its import-time values
			if in := g.Input(name); in != nil && in.Init != nil && in.Init.Kind == ir.InitExplicit {
				if in.Type.DType.IsFloat() {
					return in.Init.Data, nil, true
				}
				iv := make([]int64, len(in.Init.Data))
				for k, v := range in.Init.Data {
					iv[k] = int64(v)
				}
				return nil, iv, true
			}
			return nil, nil, false
		}
		if t.DType.IsFloat() {
			f, err := t.Float64s()
			return f, nil, err == nil
		}
		i, err := t.Int64s()
		return nil, i, err == nil
	}
	return g, m, values, nil
}
