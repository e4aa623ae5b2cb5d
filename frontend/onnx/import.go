// Package onnx imports an ONNX model (a serialized ModelProto) into an slc
// module with one "forward" graph: float initializers of more than one
// element become Param inputs (trainable weights, never folded into
// constants), integer ones Buffer inputs, the other graph inputs Data inputs of their static shapes, graph
// outputs outputs. Each ONNX node is rewritten into slc's small op set (a
// MatMul or Gemm of a weight into Linear, named after its module, so that
// sltrain-fuse applies as for configs; other Gemms into MatMul, Mul and Add;
// Relu into Max with 0; Tanh into 2·sigmoid(2x)−1; Unsqueeze/Squeeze into
// Reshape; …); values computed from constants only are evaluated at import
// and become buffers listed in Meta "derived_buffers". A node it cannot
// express exactly is an error naming the op, the node and the opset, never
// a different graph. AddCausalLM adds the next-token loss for training.
//
// The protobuf is decoded here with protowire rather than through
// github.com/owulveryck/onnx-go (v0.5.0, evaluated): its ModelProto is
// internal and a backend only receives gonum graph nodes, operations with
// already-converted attributes and gorgonia tensors. It does not pass the
// opset on, it drops symbolic dims from input shapes without a word (an
// [N, 3] input arrives as [3]) and allocates every input as a zero tensor, so
// neither the opset check, nor the "symbolic dim" error, nor refusing an
// unknown attribute could be done exactly. The subset of onnx.proto read here
// is small and its field numbers are stable (proto.go).
package onnx

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// Opset range of the default ("ai.onnx") domain that the importer accepts.
const (
	MinOpset = 13
	MaxOpset = 17
)

// Options tune an import.
type Options struct {
	// Dims binds symbolic dimensions (dim_param) of graph inputs to sizes.
	Dims map[string]int
	// Freeze names initializers to keep fixed: a float initializer whose
	// name (or, for an exporter's onnx::MatMul_N weight, its module's
	// "<module>.weight") matches one (Frozen) is a Buffer, not a trained Param.
	Freeze []string
	// Constants gives graph inputs fixed values: they are imported as
	// initializers, so they may feed shape or axes operands.
	Constants map[string]*Tensor
}

// Unsupported is an import error for something the importer does not
// translate: an op, an attribute, a dtype, an operand that must be constant.
type Unsupported struct {
	What   string // "op", "attribute", "dtype", "non-constant input", …
	Detail string // the op, attribute, dtype or value name
	Op     string // the node's op, when inside a node
	Node   string // the node's name
	Opset  int64
}

func (e *Unsupported) Error() string {
	s := "unsupported " + e.What
	if e.Detail != "" && e.What != "op" {
		s += " " + strconv.Quote(e.Detail)
	}
	if e.Op != "" {
		s += fmt.Sprintf(" (op %s, node %q, opset %d)", e.Op, e.Node, e.Opset)
	}
	return s
}

// Import reads a serialized ModelProto.
func Import(data []byte, o Options) (*ir.Module, error) {
	m, err := decodeModel(data)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if m.graph == nil {
		return nil, errors.New("ONNX model has no graph")
	}
	opset := int64(-1)
	for _, s := range m.opsets {
		if s.domain == "" || s.domain == "ai.onnx" {
			opset = s.version
		}
	}
	if opset < 0 {
		return nil, errors.New("ONNX model imports no ai.onnx opset")
	}
	if opset < MinOpset || opset > MaxOpset {
		return nil, &Unsupported{What: "opset", Detail: strconv.FormatInt(opset, 10) + fmt.Sprintf(" (want %d–%d)", MinOpset, MaxOpset)}
	}
	g := m.graph
	if g.sparseInit > 0 {
		return nil, &Unsupported{What: "sparse initializer"}
	}
	im := &importer{b: ir.NewBuilder("forward"), opset: opset, vals: map[string]string{}, consts: map[string]*Tensor{}, bools: map[string]bool{},
		params: map[string]bool{}, uses: map[string]int{}, transposed: map[string]string{}, initNames: map[string]bool{}, freeze: o.Freeze}
	for _, p := range g.initializer {
		t, err := tensorOf(p)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", p.name, err)
		}
		im.consts[p.name] = t
		im.initNames[p.name] = true
		// A one-element float initializer is a constant (an ε or a scale
		// that a graph optimizer turned into an initializer), not a weight.
		if t.DType.IsFloat() && t.len() > 1 && !Frozen(p.name, o.Freeze) {
			im.params[p.name] = true
		}
	}
	for _, n := range g.nodes {
		for _, in := range n.inputs {
			im.uses[in]++
		}
	}
	for _, out := range g.outputs {
		im.uses[out.name]++
	}
	for name, t := range o.Constants {
		im.consts[name] = t
	}
	for _, in := range g.inputs {
		if _, ok := im.consts[in.name]; ok {
			continue // an initializer listed as an input too (IR version < 4 style)
		}
		t, err := inputType(in, o.Dims)
		if err != nil {
			return nil, err
		}
		im.bools[in.name] = in.elemType == dtBool
		im.vals[in.name] = im.b.AddInput(in.name, t, ir.Data, nil)
	}
	for _, n := range g.nodes {
		im.node = n
		if err := im.convert(n); err != nil {
			return nil, err
		}
		if err := im.b.Err(); err != nil {
			return nil, fmt.Errorf("node %q (%s): %w", n.name, n.opType, err)
		}
	}
	im.node = nil
	for _, out := range g.outputs {
		v, err := im.value(out.name)
		if err != nil {
			return nil, err
		}
		if declared := out.hasType && out.tensor && out.elemType == dtBool; declared != im.bools[out.name] {
			return nil, fmt.Errorf("output %q: declared bool %v, computed bool %v", out.name, declared, im.bools[out.name])
		}
		if out.hasType && out.tensor && !im.bools[out.name] {
			if err := checkOutput(out, im.b.Type(v)); err != nil {
				return nil, err
			}
		}
		im.b.Output(out.name, v)
	}
	if err := im.b.Err(); err != nil {
		return nil, err
	}
	if err := im.b.G.Verify(); err != nil {
		return nil, err
	}
	meta := map[string]string{"source": "onnx", "onnx_opset": strconv.FormatInt(opset, 10)}
	if len(im.derived) > 0 {
		meta["derived_buffers"] = strings.Join(im.derived, ",")
	}
	return &ir.Module{Meta: meta, Graphs: []*ir.Graph{im.b.G}}, nil
}

// inputType is a graph input's static type.
func inputType(in *valueInfo, bind map[string]int) (ir.Type, error) {
	if !in.hasType || !in.tensor {
		return ir.Type{}, &Unsupported{What: "input type (not a tensor)", Detail: in.name}
	}
	dt, err := irDType(in.elemType)
	if in.elemType == dtBool {
		dt, err = ir.I64, nil // a bool input is an i64 of 0/1
	}
	if err != nil {
		return ir.Type{}, fmt.Errorf("input %q: %w", in.name, err)
	}
	if !in.hasShape {
		return ir.Type{}, fmt.Errorf("input %q has no shape", in.name)
	}
	var shape []int
	for k, d := range in.dims {
		switch {
		case d.known && d.value >= 0 && d.value <= math.MaxInt32:
			shape = append(shape, int(d.value))
		case d.param != "":
			n, ok := bind[d.param]
			if !ok {
				return ir.Type{}, fmt.Errorf("input %q: dim %d is symbolic (%q): bind it to a size", in.name, k, d.param)
			}
			shape = append(shape, n)
		default:
			return ir.Type{}, fmt.Errorf("input %q: dim %d has no size", in.name, k)
		}
	}
	return ir.Type{DType: dt, Shape: shape}, nil
}

// checkOutput compares an output's declared type with the imported one.
func checkOutput(out *valueInfo, t ir.Type) error {
	dt, err := irDType(out.elemType)
	if err != nil {
		return fmt.Errorf("output %q: %w", out.name, err)
	}
	if dt != t.DType {
		return fmt.Errorf("output %q is declared %v but computes %v", out.name, dt, t.DType)
	}
	if !out.hasShape {
		return nil
	}
	if len(out.dims) != t.Rank() {
		return fmt.Errorf("output %q is declared rank %d but computes %v", out.name, len(out.dims), t)
	}
	for k, d := range out.dims {
		if d.known && d.value != int64(t.Shape[k]) {
			return fmt.Errorf("output %q is declared dim %d = %d but computes %v", out.name, k, d.value, t)
		}
	}
	return nil
}

type importer struct {
	b      *ir.Builder
	opset  int64
	vals   map[string]string  // ONNX value → slc value
	consts map[string]*Tensor // ONNX values known at import time
	node   *nodeProto
	bools  map[string]bool // ONNX bool values, held as 0/1 I64
	noFold bool            // convert without folding all-constant nodes (fold's own scratch import)
	// params are the float initializers (and Identity copies of them): the
	// model's trainable weights, never folded into constants.
	params map[string]bool
	// uses counts each ONNX value's consumers (node operands and graph outputs).
	uses map[string]int
	// transposed maps the output of a 2-D Transpose of a weight to the weight,
	// so that a MatMul of it becomes a Linear of the weight itself.
	transposed map[string]string
	// initNames are the initializers' names; derived lists the buffers
	// computed at import (rotary tables, masks, index tables): functions of
	// the shapes, not state (Meta "derived_buffers").
	initNames map[string]bool
	derived   []string
	freeze    []string // Options.Freeze
}

func (im *importer) unsupported(what, detail string) error {
	e := &Unsupported{What: what, Detail: detail, Opset: im.opset}
	if im.node != nil {
		e.Op, e.Node = im.node.opType, im.node.name
	}
	return e
}

// value returns the slc value of an ONNX value, materialising a constant as
// a Const (when all its elements are equal) or as a state input.
func (im *importer) value(name string) (string, error) {
	if v, ok := im.vals[name]; ok {
		return v, nil
	}
	if w, ok := im.transposed[name]; ok {
		u, err := im.value(w)
		if err != nil {
			return "", err
		}
		v := im.b.Transpose(u, 1, 0)
		im.vals[name] = v
		return v, im.b.Err()
	}
	t, ok := im.consts[name]
	if !ok {
		return "", fmt.Errorf("value %q is used before it is defined", name)
	}
	n := t.len()
	uniform := n > 0 && !im.params[name]
	for k := 1; k < n && uniform; k++ {
		uniform = t.at(k) == t.at(0)
	}
	for k := 0; k < n && !t.DType.IsFloat(); k++ {
		if t.I[k] > 1<<53 || t.I[k] < -(1<<53) {
			return "", im.unsupported("integer constant beyond 2^53", name)
		}
	}
	var v string
	if uniform {
		v = im.b.Const(t.at(0), t.Type())
	} else {
		data := make([]float64, n)
		for k := range data {
			data[k] = t.at(k)
		}
		role := ir.Buffer // a folded constant (a rotary table, a mask): not trained
		if im.params[name] {
			role = ir.Param
		}
		in := name
		for k := 1; in == "" || im.b.Type(in).DType != ir.InvalidDType; k++ {
			in = name + "_" + strconv.Itoa(k)
		}
		v = im.b.AddInput(in, t.Type(), role, &ir.Init{Kind: ir.InitExplicit, Data: data})
		if _, fromFile := im.initNames[name]; role == ir.Buffer && !fromFile {
			im.derived = append(im.derived, in)
		}
	}
	if err := im.b.Err(); err != nil {
		return "", err
	}
	im.vals[name] = v
	return v, nil
}

// constant returns the import-time value of a node operand.
func (im *importer) constant(name string) (*Tensor, error) {
	if t, ok := im.consts[name]; ok {
		return t, nil
	}
	return nil, im.unsupported("non-constant input", name)
}

// ints reads a constant integer operand (a shape, axes).
func (im *importer) ints(name string) ([]int64, error) {
	t, err := im.constant(name)
	if err != nil {
		return nil, err
	}
	if t.DType.IsFloat() {
		return nil, fmt.Errorf("%q is %v, want an integer tensor", name, t.DType)
	}
	return t.I, nil
}

// attrs checks a node's attributes against the allowed names and returns them
// by name.
func (im *importer) attrs(n *nodeProto, allowed ...string) (map[string]*attrProto, error) {
	m := map[string]*attrProto{}
	for _, a := range n.attrs {
		if !slices.Contains(allowed, a.name) || a.refName != "" || a.other {
			return nil, im.unsupported("attribute", a.name)
		}
		m[a.name] = a
	}
	return m, nil
}

// reshape is a Reshape unless the shape is already s.
func (im *importer) reshape(v string, s []int) string {
	if ir.ShapeEqual(im.b.Type(v).Shape, s) {
		return v
	}
	return im.b.Reshape(v, s...)
}

// Frozen reports whether an initializer's name matches one of the patterns:
// a glob (path.Match, when it has *, ? or [) or else a substring.
func Frozen(name string, patterns []string) bool {
	for _, p := range patterns {
		if strings.ContainsAny(p, "*?[") {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		} else if p != "" && strings.Contains(name, p) {
			return true
		}
	}
	return false
}
