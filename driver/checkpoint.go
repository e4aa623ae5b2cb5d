package driver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/export"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/safetensors"
)

// Defaults of every command that builds a model (the seed's 60M recipe
// uses sequences of 256).
const (
	DefaultBatchSize = 8
	DefaultMaxLength = 256
)

// CheckpointModel is the model of a checkpoint: its config (or ONNX model)
// and SLTrain settings, built at batch × length (0: the length it was
// trained with).
func CheckpointModel(path string, cfgJSON []byte, sl map[string]any, args map[string]any, batch, length int) (*Model, error) {
	if desc, ok := onnx.ParseDescriptor(cfgJSON); ok {
		return checkpointONNX(path, desc, sl, args, batch, length)
	}
	cfg, err := frontend.ParseLlamaConfig(cfgJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: the checkpoint's config.json: %w", path, err)
	}
	if length == 0 {
		if v, ok := args["max_length"].(float64); ok && v >= 2 {
			length = int(v)
		} else {
			length = min(DefaultMaxLength, cfg.MaxSequenceLength)
		}
	}
	if length > cfg.MaxSequenceLength {
		return nil, &LengthError{Path: path, Length: length, Max: cfg.MaxSequenceLength}
	}
	seed, prec, po, err := checkpointSettings(path, sl, args)
	if err != nil {
		return nil, err
	}
	return &Model{
		Path: path, Kind: "checkpoint", Config: cfg, VocabSize: cfg.VocabSize,
		Build:  frontend.Options{BatchSize: batch, SeqLen: length, Seed: seed, DType: prec.DType, LossMask: args["rows"] == "documents"},
		Passes: po,
	}, nil
}

// checkpointSettings are a checkpoint's seed, precision and SLTrain settings.
func checkpointSettings(path string, sl map[string]any, args map[string]any) (uint64, Precision, passes.Options, error) {
	var seed uint64
	if v, ok := args["seed"].(float64); ok && v >= 0 {
		seed = uint64(v)
	}
	prec := F32
	if v, ok := args["dtype"].(string); ok {
		if prec, ok = ParsePrecision(v); !ok {
			return 0, prec, passes.Options{}, fmt.Errorf("%s: the checkpoint's dtype %q is not one slc trains (float32, bfloat16 or bf16-mixed)", path, v)
		}
	}
	po := PassOptions("full", 1, 0, 1, "", seed, prec.Mixed)
	if sl != nil {
		r, _ := sl["r"].(float64)
		sp, _ := sl["sp_ratio"].(float64)
		alpha, _ := sl["lora_alpha"].(float64)
		var targets []string
		if ts, ok := sl["target_modules"].([]any); ok {
			for _, t := range ts {
				if s, ok := t.(string); ok {
					targets = append(targets, s)
				}
			}
		}
		po = PassOptions("sltrain", int(r), sp, alpha, strings.Join(targets, ","), seed, prec.Mixed)
		po.TrainScaling = sl["trainable_scaling"] == true
	}
	opt, _ := args["optimizer"].(string)
	b1, _ := args["beta1"].(float64)
	if opt != "" {
		po = WithOptimizer(po, opt, b1)
	}
	return seed, prec, po, nil
}

// checkpointONNX is the model of a checkpoint of an ONNX model: the
// checkpoint's model.onnx imported as desc records, at batch × length (0:
// the length it was trained with).
func checkpointONNX(path string, desc *onnx.Descriptor, sl map[string]any, args map[string]any, batch, length int) (*Model, error) {
	data, err := os.ReadFile(filepath.Join(path, desc.ONNXFile))
	if err != nil {
		return nil, fmt.Errorf("%s: the checkpoint's ONNX model: %w", path, UnwrapPathErr(err))
	}
	if length == 0 {
		length = desc.MaxSequenceLength
	}
	seed, prec, po, err := checkpointSettings(path, sl, args)
	if err != nil {
		return nil, err
	}
	lossMask := args["rows"] == "documents"
	m, d, b, l, err := ONNXLM("eval", path+"/"+desc.ONNXFile, data, desc.Dims, desc.Freeze, desc.Logits, batch, length, false, false, lossMask, true)
	if err != nil {
		return nil, err
	}
	m.Meta["seed"] = fmt.Sprint(seed)
	return &Model{
		Path: path, Kind: "checkpoint", ONNX: data, ONNXModule: m, Desc: d, VocabSize: d.VocabSize,
		Build:  frontend.Options{BatchSize: b, SeqLen: l, Seed: seed, DType: prec.DType, LossMask: lossMask},
		Passes: po,
	}, nil
}

// CheckpointBatch is the batch size a checkpoint trained with (the
// default when it does not say).
func CheckpointBatch(ck *checkpoint.Checkpoint) int {
	if v, ok := ck.State.Args["batch_size"].(float64); ok && v >= 1 {
		return int(v)
	}
	return DefaultBatchSize
}

// CheckpointForward is a checkpoint's model as an inference graph: the
// forward graph at the trained batch and length, SLTrain fused as it was
// trained, without the loss; values reads the checkpoint's tensors.
func CheckpointForward(cmd, dir string, ck *checkpoint.Checkpoint) (*ir.Graph, *Model, export.ONNXValues, error) {
	m, err := CheckpointModel(dir, ck.Config, ck.SLTrain, ck.State.Args, CheckpointBatch(ck), 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if m.Build.DType != ir.F32 && m.Build.DType != ir.InvalidDType || m.Passes.BF16Mixed {
		return nil, nil, nil, fmt.Errorf("%s: --format onnx writes float32 models; this one trained in %s", dir, ck.State.Args["dtype"])
	}
	var mod *ir.Module
	if m.ONNXModule != nil {
		mod = m.ONNXModule.Clone()
	} else if mod, err = frontend.BuildLlama(m.Config, m.Build); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	fuse, _ := passes.Lookup("sltrain-fuse")
	if err := passes.Run(&passes.State{Module: mod, Options: m.Passes}, []passes.Pass{fuse}); err != nil {
		return nil, nil, nil, PassError(cmd, dir, err)
	}
	g := mod.Graph("forward")
	var outs []*ir.Output
	for _, o := range g.Outputs {
		if o.Name != "loss" {
			outs = append(outs, o)
		}
	}
	g.Outputs = outs
	return g, m, checkpointValues(g, ck), nil
}

// checkpointValues reads a checkpoint's tensors by name for export; a
// derived buffer of an imported model has its import-time values.
func checkpointValues(g *ir.Graph, ck *checkpoint.Checkpoint) export.ONNXValues {
	tensors := map[string]*safetensors.Tensor{}
	for k := range ck.Model.Tensors {
		tensors[ck.Model.Tensors[k].Name] = &ck.Model.Tensors[k]
	}
	return func(name string) ([]float64, []int64, bool) {
		t, ok := tensors[name]
		if !ok {
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
}
