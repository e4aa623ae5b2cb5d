package driver

import (
	"encoding/json"
	"fmt"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
)

// ONNXLM imports an ONNX model as a causal language model to train (onnx.AddCausalLM):
// the token input's symbolic dims are bound to batch (dim 0) and length (dim 1)
// unless dims names them (and rebind is false: a checkpoint's record of the
// dims it was trained with gives way to the batch and length asked for); a static dim fixes batch or length (a flag that
// says otherwise, set is true, is a usage error of cmd). It returns the
// module, with its "model_config" (the onnx.Descriptor), and the bound shape.
func ONNXLM(cmd, path string, data []byte, dims map[string]int, freeze []string, logits string, batch, length int, batchSet, lengthSet, lossMask, rebind bool) (*ir.Module, *onnx.Descriptor, int, int, error) {
	sizes, params, err := onnx.InputDims(data)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	bound := map[string]int{}
	for k, v := range dims {
		bound[k] = v
	}
	names, err := onnx.InputNames(data)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	token := "input_ids"
	if _, ok := sizes[token]; !ok {
		token = ""
		for _, name := range names {
			if len(sizes[name]) == 2 && token == "" {
				token = name // the first rank-2 input; AddCausalLM checks it is the only data input
			}
		}
	}
	if s := sizes[token]; len(s) == 2 {
		for k, want := range []int{batch, length} {
			flag, set := []string{"batch-size", "max-length"}[k], []bool{batchSet, lengthSet}[k]
			switch p := params[token][k]; {
			case s[k] >= 0 && set && s[k] != int64(want):
				return nil, nil, 0, 0, Usagef(cmd, "flag --%s: %s's input %q has a fixed dim %d of %d (export the model with a symbolic dim to change it)", flag, path, token, k, s[k])
			case p != "":
				if _, ok := bound[p]; !ok || rebind {
					bound[p] = want
				}
			}
		}
	}
	m, err := onnx.Import(data, onnx.Options{Dims: bound, Freeze: freeze})
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	desc, err := onnx.AddCausalLM(m, onnx.LMOptions{Logits: logits, LossMask: lossMask})
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(dims) > 0 || len(bound) > 0 {
		desc.Dims = bound
	}
	desc.Freeze = freeze
	cfg, err := json.Marshal(desc)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	m.Meta["model_config"] = string(cfg)
	t := m.Graph("forward").Input("input_ids").Type
	return m, desc, t.Shape[0], t.Shape[1], nil
}

// OpenONNX is a model to train from an ONNX model's bytes. desc, when
// resuming, is the checkpoint's record of how it was imported (its dims,
// frozen initializers and logits output replace o's).
func OpenONNX(path, kind string, data []byte, desc *onnx.Descriptor, s *Spec, o OpenOptions) (*Model, error) {
	if s.Precision.DType != ir.F32 {
		return nil, Usagef(o.Cmd, "flag --dtype: %s is an ONNX model; slc trains it in its own float32 (or --dtype bf16-mixed)", path)
	}
	dims, freeze, logits := o.Dims, o.Freeze, o.Logits
	if desc != nil {
		dims, freeze, logits = desc.Dims, desc.Freeze, desc.Logits
	}
	m, d, batch, length, err := ONNXLM(o.Cmd, path, data, dims, freeze, logits, s.BatchSize, s.MaxLength, o.BatchSet, o.LengthSet, s.Rows == "documents", desc != nil)
	if err != nil {
		return nil, err
	}
	if dt, _ := ir.ParseDType(m.Meta["dtype"]); dt != ir.F32 {
		return nil, fmt.Errorf("%s: the logits are %s; slc trains float32 ONNX models", path, m.Meta["dtype"])
	}
	s.BatchSize, s.MaxLength = batch, length
	m.Meta["seed"] = fmt.Sprint(s.Seed)
	return &Model{
		Path: path, Kind: kind, ONNX: data, ONNXModule: m, Desc: d, VocabSize: d.VocabSize,
		Build:   frontend.Options{BatchSize: batch, SeqLen: length, Seed: s.Seed, DType: ir.F32, LossMask: s.Rows == "documents"},
		Passes:  s.passOptions(),
		Codegen: o.Codegen,
	}, nil
}
