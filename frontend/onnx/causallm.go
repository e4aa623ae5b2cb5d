package onnx

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"gitee.com/gidean/conv-linn/frontend/nexttoken"
	"gitee.com/gidean/conv-linn/ir"
)

// LMOptions choose the outputs AddCausalLM reads.
type LMOptions struct {
	// Logits names the output holding the logits [B, L, V]; "" takes the
	// output named "logits", else the only rank-3 float output.
	Logits string
	// LossMask adds the data input "loss_mask" (f32[B, L−1]), as the LLaMA
	// frontend's Options.LossMask: the loss is then Σ mask·CE / Σ mask.
	LossMask bool
}

// Descriptor is what slc records of an imported language model in the
// module's "model_config" metadata (and so in a checkpoint's config.json):
// enough to import the same ONNX model again.
type Descriptor struct {
	ModelType         string         `json:"model_type"` // "onnx"
	ONNXFile          string         `json:"onnx_file"`  // the model's file in a checkpoint
	Logits            string         `json:"logits"`     // the logits output's ONNX name
	Dims              map[string]int `json:"dims,omitempty"`
	Freeze            []string       `json:"freeze,omitempty"` // Options.Freeze
	VocabSize         int            `json:"vocab_size"`
	MaxSequenceLength int            `json:"max_sequence_length"`
	Opset             int64          `json:"onnx_opset"`
}

// ParseDescriptor reads a Descriptor; ok is false for JSON that is not one
// (a LLaMA config).
func ParseDescriptor(data []byte) (*Descriptor, bool) {
	var d Descriptor
	if json.Unmarshal(data, &d) != nil || d.ModelType != "onnx" {
		return nil, false
	}
	return &d, true
}

// AddCausalLM makes an imported model a causal language model to train: its
// token input (named "input_ids", else its only integer input of rank 2)
// becomes "input_ids" i64[B, L], its logits output (LMOptions.Logits) becomes
// "logits" [B, L, V], other outputs are dropped, and the output "loss" is the
// LLaMA frontend's: the mean cross-entropy of the L−1 next-token predictions
// (labels = input ids shifted by one). The module's metadata gets batch_size,
// max_length, dtype and (with LossMask) rows = documents, as BuildLlama's.
func AddCausalLM(m *ir.Module, o LMOptions) (*Descriptor, error) {
	g := m.Graph("forward")
	if g == nil {
		return nil, fmt.Errorf("no forward graph")
	}
	b := ir.BuilderFor(g)
	logits, err := logitsOutput(g, b, o.Logits)
	if err != nil {
		return nil, err
	}
	lo := g.Output(logits)
	lt := b.Type(lo.Value)
	if lt.Rank() != 3 || !lt.DType.IsFloat() {
		return nil, fmt.Errorf("output %q is %v, want logits [B, L, V] of floats", logits, lt)
	}
	ids, err := tokenInput(g)
	if err != nil {
		return nil, err
	}
	bs, seq, v := lt.Shape[0], lt.Shape[1], lt.Shape[2]
	if ids.Type.DType != ir.I64 || !slices.Equal(ids.Type.Shape, []int{bs, seq}) {
		return nil, fmt.Errorf("input %q is %v, want i64[%d, %d] for logits %v", ids.Name, ids.Type, bs, seq, lt)
	}
	if seq < 2 {
		return nil, fmt.Errorf("a next-token loss needs rows of >= 2 tokens; input %q is %v", ids.Name, ids.Type)
	}
	if ids.Name != "input_ids" {
		if g.Input("input_ids") != nil {
			return nil, fmt.Errorf("input_ids is taken by a non-data input")
		}
		rename(g, ids, "input_ids")
	}
	b = ir.BuilderFor(g) // the renamed input
	b.Scope = "loss"
	loss := nexttoken.Loss(b, b.Slice(lo.Value, 1, 0, seq-1), "input_ids", o.LossMask)
	logitsValue := lo.Value
	g.Outputs = nil
	b.Output("loss", loss)
	b.Output("logits", logitsValue)
	if err := b.Err(); err != nil {
		return nil, err
	}
	if err := g.Verify(); err != nil {
		return nil, err
	}
	if m.Meta == nil {
		m.Meta = map[string]string{}
	}
	m.Meta["batch_size"] = strconv.Itoa(bs)
	m.Meta["max_length"] = strconv.Itoa(seq)
	m.Meta["dtype"] = lt.DType.String()
	if o.LossMask {
		m.Meta["rows"] = "documents"
	}
	opset, _ := strconv.ParseInt(m.Meta["onnx_opset"], 10, 64)
	return &Descriptor{ModelType: "onnx", ONNXFile: "model.onnx", Logits: logits, VocabSize: v, MaxSequenceLength: seq, Opset: opset}, nil
}

// logitsOutput names the output holding the logits: name when given, else
// "logits", else the only rank-3 float output.
func logitsOutput(g *ir.Graph, b *ir.Builder, name string) (string, error) {
	if name == "" {
		if g.Output("logits") != nil {
			name = "logits"
		} else {
			var cands []string
			for _, out := range g.Outputs {
				if t := b.Type(out.Value); t.Rank() == 3 && t.DType.IsFloat() {
					cands = append(cands, out.Name)
				}
			}
			if len(cands) != 1 {
				return "", fmt.Errorf("no output named \"logits\" and %d rank-3 float outputs %v: name the logits [B, L, V] with --logits", len(cands), cands)
			}
			name = cands[0]
		}
	}
	if g.Output(name) == nil {
		var names []string
		for _, out := range g.Outputs {
			names = append(names, out.Name)
		}
		return "", fmt.Errorf("no output %q (outputs: %v)", name, names)
	}
	return name, nil
}

// tokenInput is the graph's token input: the data input "input_ids", else
// its only integer data input of rank 2; it must be the only data input.
func tokenInput(g *ir.Graph) (*ir.Input, error) {
	var ids *ir.Input
	var data []string
	for _, in := range g.Inputs {
		if in.Role == ir.Data {
			data = append(data, in.Name)
			if in.Name == "input_ids" {
				ids = in
			}
		}
	}
	if ids == nil {
		for _, in := range g.Inputs {
			if in.Role == ir.Data && in.Type.DType.IsInt() && in.Type.Rank() == 2 {
				if ids != nil {
					return nil, fmt.Errorf("inputs %q and %q are both integer [B, L]: name the token input input_ids", ids.Name, in.Name)
				}
				ids = in
			}
		}
	}
	if ids == nil {
		return nil, fmt.Errorf("no token input: want input_ids, or one integer input [B, L] (inputs: %v)", data)
	}
	if len(data) != 1 {
		return nil, fmt.Errorf("slc trains on token ids alone, but the model has the data inputs %v (export it with input_ids only)", data)
	}
	return ids, nil
}

// rename gives the input in a new name, in every node and output that reads it.
func rename(g *ir.Graph, in *ir.Input, name string) {
	old := in.Name
	in.Name = name
	for _, n := range g.Nodes {
		for k, v := range n.Inputs {
			if v == old {
				n.Inputs[k] = name
			}
		}
	}
	for _, out := range g.Outputs {
		if out.Value == old {
			out.Value = name
		}
	}
}

// InputDims lists the dims of a model's graph inputs that are not
// initializers, by name: a size, or -1 for a symbolic dim whose name is in
// the same position of the second map's entry ("" for a dim with neither).
func InputDims(data []byte) (map[string][]int64, map[string][]string, error) {
	m, err := decodeModel(data)
	if err != nil {
		return nil, nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if m.graph == nil {
		return nil, nil, fmt.Errorf("ONNX model has no graph")
	}
	inits := map[string]bool{}
	for _, p := range m.graph.initializer {
		inits[p.name] = true
	}
	sizes, params := map[string][]int64{}, map[string][]string{}
	for _, in := range m.graph.inputs {
		if inits[in.name] {
			continue
		}
		for _, d := range in.dims {
			v := int64(-1)
			if d.known {
				v = d.value
			}
			sizes[in.name] = append(sizes[in.name], v)
			params[in.name] = append(params[in.name], d.param)
		}
	}
	return sizes, params, nil
}

// InputNames lists a model's graph inputs that are not initializers, in
// order (the order of a backend test's input_N.pb files).
func InputNames(data []byte) ([]string, error) {
	m, err := decodeModel(data)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if m.graph == nil {
		return nil, fmt.Errorf("ONNX model has no graph")
	}
	inits := map[string]bool{}
	for _, p := range m.graph.initializer {
		inits[p.name] = true
	}
	var names []string
	for _, in := range m.graph.inputs {
		if !inits[in.name] {
			names = append(names, in.name)
		}
	}
	return names, nil
}
