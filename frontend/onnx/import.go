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

// pair fetches a node's first two operands with x (the converters' operand
// accessor).
func pair(x func(int) (string, error)) (string, string, error) {
	u, err := x(0)
	if err != nil {
		return "", "", err
	}
	v, err := x(1)
	return u, v, err
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

func getInt(m map[string]*attrProto, name string, def int64) int64 {
	if a, ok := m[name]; ok {
		return a.i
	}
	return def
}

func getFloat(m map[string]*attrProto, name string, def float64) float64 {
	if a, ok := m[name]; ok {
		return float64(a.f)
	}
	return def
}

var unaryOps = map[string]string{
	"Sqrt": "Sqrt", "Reciprocal": "Recip", "Neg": "Neg", "Exp": "Exp", "Log": "Log", "Sigmoid": "Sigmoid",
}

var binaryOps = map[string]bool{"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true}

// floatOnly lists the ops whose slc form needs floating-point operands.
var floatOnly = map[string]bool{
	"Sqrt": true, "Reciprocal": true, "Exp": true, "Log": true, "Sigmoid": true, "Tanh": true,
	"MatMul": true, "Gemm": true, "Softmax": true, "ReduceMean": true, "ReduceSum": true,
}

// boolKeeping lists the ops whose result is a bool when their first operand is.
var boolKeeping = map[string]bool{
	"Identity": true, "Reshape": true, "Squeeze": true, "Unsqueeze": true, "Expand": true, "Transpose": true,
	"Flatten": true, "Slice": true, "Gather": true, "Concat": true, "Split": true, "Dropout": true, "Trilu": true,
}

// convert translates one node.
func (im *importer) convert(n *nodeProto) error {
	if n.domain != "" && n.domain != "ai.onnx" {
		return im.unsupported("op", n.domain+"."+n.opType)
	}
	if len(n.outputs) != 1 && !(n.opType == "SoftmaxCrossEntropyLoss" && len(n.outputs) == 2) && n.opType != "LayerNormalization" && n.opType != "Split" && n.opType != "Dropout" {
		return im.unsupported(fmt.Sprintf("number of outputs (%d)", len(n.outputs)), "")
	}
	if im.foldable(n) {
		return im.fold(n)
	}
	out := n.outputs[0]
	in := func(k int) string {
		if k < len(n.inputs) {
			return n.inputs[k]
		}
		return ""
	}
	// x reads operand k as an slc value.
	x := func(k int) (string, error) {
		if in(k) == "" {
			return "", fmt.Errorf("node %q (%s): input %d is missing", n.name, n.opType, k)
		}
		return im.value(in(k))
	}
	b := im.b
	b.Scope = n.name
	set := func(v string) error {
		if err := b.Err(); err != nil {
			return fmt.Errorf("node %q (%s): %w", n.name, n.opType, err)
		}
		im.vals[out] = v
		if boolKeeping[n.opType] && im.bools[in(0)] {
			im.bools[out] = true
		}
		return nil
	}
	if floatOnly[n.opType] && len(n.inputs) > 0 {
		if t, ok := im.consts[in(0)]; ok && !t.DType.IsFloat() {
			return im.unsupported("dtype", t.DType.String())
		}
		if v, ok := im.vals[in(0)]; ok && !b.Type(v).DType.IsFloat() {
			return im.unsupported("dtype", b.Type(v).DType.String())
		}
	}

	switch op := n.opType; {
	case unaryOps[op] != "" || op == "Relu" || op == "Tanh" || op == "Identity":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		if op == "Identity" {
			im.bools[out] = im.bools[in(0)]
			if im.params[in(0)] && !Frozen(out, im.freeze) {
				// torch.onnx.export merges initializers of equal values (LLaMA's
				// all-ones norm weights) into one and keeps each name as an
				// Identity of it: the copy is a weight of its own, as it was
				// in the exported model.
				im.params[out] = true
			}
			if t, ok := im.consts[in(0)]; ok {
				im.consts[out] = t
				return nil
			}
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		switch op {
		case "Identity":
			return set(v)
		case "Relu":
			return set(b.Op("Max", nil, v, b.Scalar(0, v)))
		case "Tanh": // tanh x = 2·σ(2x) − 1
			two := b.Scalar(2, v)
			return set(b.Sub(b.Mul(two, b.Unary("Sigmoid", b.Mul(two, v))), b.Scalar(1, v)))
		}
		return set(b.Unary(unaryOps[op], v))

	case binaryOps[op]:
		if _, err := im.attrs(n); err != nil {
			return err
		}
		u, v, err := pair(x)
		if err != nil {
			return err
		}
		if op == "Pow" && b.Type(u).DType != b.Type(v).DType {
			if !b.Type(u).DType.IsFloat() {
				return im.unsupported("dtype", b.Type(u).DType.String())
			}
			v = b.Op("Cast", ir.Attrs{"to": ir.String(b.Type(u).DType.String())}, v)
		}
		return set(b.Op(op, nil, u, v))

	case op == "MatMul":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		if y, ok, err := im.linear(n, in(0), in(1), false); ok || err != nil {
			if err != nil {
				return err
			}
			return set(y)
		}
		u, v, err := pair(x)
		if err != nil {
			return err
		}
		return set(im.matmul(u, v))

	case op == "Gemm":
		a, err := im.attrs(n, "alpha", "beta", "transA", "transB")
		if err != nil {
			return err
		}
		var y string
		if getInt(a, "transA", 0) == 0 {
			if y, _, err = im.linear(n, in(0), in(1), getInt(a, "transB", 0) != 0); err != nil {
				return err
			}
		}
		if y == "" {
			u, v, err := pair(x)
			if err != nil {
				return err
			}
			y = b.MatMul(u, v, getInt(a, "transA", 0) != 0, getInt(a, "transB", 0) != 0)
		}
		if alpha := getFloat(a, "alpha", 1); alpha != 1 {
			y = b.Mul(y, b.Scalar(alpha, y))
		}
		if in(2) != "" {
			c, err := x(2)
			if err != nil {
				return err
			}
			if beta := getFloat(a, "beta", 1); beta != 1 {
				c = b.Mul(c, b.Scalar(beta, c))
			}
			y = b.Add(y, c)
		}
		return set(y)

	case op == "Reshape":
		a, err := im.attrs(n, "allowzero")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		shape, err := im.ints(in(1))
		if err != nil {
			return err
		}
		xs := b.Type(v).Shape
		s := make([]int, len(shape))
		for k, d := range shape {
			switch {
			case d == 0 && getInt(a, "allowzero", 0) == 0:
				if k >= len(xs) {
					return fmt.Errorf("node %q (Reshape): shape[%d] = 0 copies a dim that %v does not have", n.name, k, b.Type(v))
				}
				s[k] = xs[k]
			case d == 0:
				return im.unsupported("attribute", "allowzero=1 with a zero dim")
			default:
				s[k] = int(d)
			}
		}
		return set(im.reshape(v, s))

	case op == "Transpose":
		a, err := im.attrs(n, "perm")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		r := b.Type(v).Rank()
		var perm []int
		if t, ok := im.consts[in(0)]; ok && im.params[in(0)] && len(t.Shape) == 2 && im.uses[in(0)] == 1 {
			if p, ok := a["perm"]; !ok || slices.Equal(p.ints, []int64{1, 0}) {
				im.transposed[out] = in(0) // emitted when used other than by a MatMul (value)
				return nil
			}
		}
		if p, ok := a["perm"]; ok {
			for _, q := range p.ints {
				perm = append(perm, int(q))
			}
		} else {
			for k := r - 1; k >= 0; k-- {
				perm = append(perm, k)
			}
		}
		return set(b.Transpose(v, perm...))

	case op == "Softmax":
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		ax, err := ir.NormAxis(getInt(a, "axis", -1), b.Type(v).Rank())
		if err != nil {
			return fmt.Errorf("node %q (Softmax): %w", n.name, err)
		}
		return set(b.Op("Softmax", ir.Attrs{"axis": ir.Int(int64(ax))}, v))

	case op == "ReduceMean" || op == "ReduceSum":
		var a map[string]*attrProto
		var axes []int64
		var err error
		noop := false
		if op == "ReduceSum" { // axes is an input since opset 13
			if a, err = im.attrs(n, "keepdims", "noop_with_empty_axes"); err != nil {
				return err
			}
			if in(1) != "" {
				if axes, err = im.ints(in(1)); err != nil {
					return err
				}
			}
			noop = getInt(a, "noop_with_empty_axes", 0) != 0
		} else { // an attribute until opset 18
			if a, err = im.attrs(n, "axes", "keepdims"); err != nil {
				return err
			}
			if p, ok := a["axes"]; ok {
				axes = p.ints
			}
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if len(axes) == 0 {
			if noop {
				return set(v)
			}
			for k := range b.Type(v).Rank() {
				axes = append(axes, int64(k))
			}
		}
		r := b.Type(v).Rank()
		norm := make([]int, len(axes))
		for k, ax := range axes {
			q, err := ir.NormAxis(ax, r)
			if err != nil {
				return fmt.Errorf("node %q (%s): %w", n.name, op, err)
			}
			norm[k] = q
		}
		if r == 0 {
			return set(v)
		}
		return set(b.Reduce(op, v, getInt(a, "keepdims", 1) != 0, norm...))

	case op == "Concat":
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		var vs []string
		for k := range n.inputs {
			v, err := x(k)
			if err != nil {
				return err
			}
			vs = append(vs, v)
		}
		if len(vs) == 0 {
			return fmt.Errorf("node %q (Concat): no inputs", n.name)
		}
		ax, err := ir.NormAxis(getInt(a, "axis", 0), b.Type(vs[0]).Rank())
		if err != nil {
			return fmt.Errorf("node %q (Concat): %w", n.name, err)
		}
		return set(b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, vs...))

	case op == "Gather":
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		table, err := x(0)
		if err != nil {
			return err
		}
		if b.Type(table).Rank() == 0 {
			return fmt.Errorf("node %q (Gather): a scalar table", n.name)
		}
		ax, err := ir.NormAxis(getInt(a, "axis", 0), b.Type(table).Rank())
		if err != nil {
			return fmt.Errorf("node %q (Gather): %w", n.name, err)
		}
		rows := int64(b.Type(table).Shape[ax])
		if t, ok := im.consts[in(1)]; ok && !t.DType.IsFloat() {
			c := &Tensor{DType: t.DType, Shape: t.Shape, I: make([]int64, len(t.I))}
			for k, i := range t.I {
				if i < 0 {
					i += rows
				}
				c.I[k] = i
			}
			im.consts[in(1)+"#gather"] = c
			idx, err := im.value(in(1) + "#gather")
			if err != nil {
				return err
			}
			return set(im.gatherAt(table, ax, idx))
		}
		idx, err := x(1)
		if err != nil {
			return err
		}
		if b.Type(idx).DType.IsInt() {
			// ONNX counts negative indices from the end: idx + rows·(0 > idx).
			neg := b.Op("Greater", nil, b.Scalar(0, idx), idx)
			idx = b.Add(idx, b.Mul(neg, b.Scalar(float64(rows), idx)))
		}
		return set(im.gatherAt(table, ax, idx))

	case op == "Cast":
		a, err := im.attrs(n, "to")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if getInt(a, "to", 0) == dtBool { // x ≠ 0, held as 0/1
			if im.bools[in(0)] {
				im.bools[out] = true
				return set(v)
			}
			y := b.Sub(b.Scalar(1, v), im.equal(v, b.Scalar(0, v)))
			if b.Type(y).DType != ir.I64 {
				y = b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, y)
			}
			im.bools[out] = true
			return set(y)
		}
		dt, err := irDType(getInt(a, "to", 0))
		if err != nil {
			return im.unsupported("dtype", dtName(getInt(a, "to", 0)))
		}
		if b.Type(v).DType == dt {
			return set(v)
		}
		return set(b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, v))

	case op == "Constant":
		a, err := im.attrs(n, "value", "value_float", "value_floats", "value_int", "value_ints")
		if err != nil {
			return err
		}
		var t *Tensor
		switch {
		case a["value"] != nil && a["value"].t != nil:
			if t, err = tensorOf(a["value"].t); err != nil {
				var u *Unsupported
				if errors.As(err, &u) {
					return im.unsupported(u.What, u.Detail)
				}
				return err
			}
		case a["value_float"] != nil:
			t = &Tensor{DType: ir.F32, F: []float64{float64(a["value_float"].f)}}
		case a["value_int"] != nil:
			t = &Tensor{DType: ir.I64, I: []int64{a["value_int"].i}}
		case a["value_floats"] != nil:
			t = &Tensor{DType: ir.F32, Shape: []int{len(a["value_floats"].floats)}}
			for _, f := range a["value_floats"].floats {
				t.F = append(t.F, float64(f))
			}
		case a["value_ints"] != nil:
			t = &Tensor{DType: ir.I64, Shape: []int{len(a["value_ints"].ints)}, I: append([]int64{}, a["value_ints"].ints...)}
		default:
			return fmt.Errorf("node %q (Constant): no value", n.name)
		}
		im.consts[out] = t
		im.bools[out] = t.Bool
		return nil

	case op == "Unsqueeze" || op == "Squeeze":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		var axes []int64
		if in(1) != "" {
			if axes, err = im.ints(in(1)); err != nil {
				return err
			}
		}
		xs := b.Type(v).Shape
		var s []int
		if op == "Unsqueeze" {
			r := len(xs) + len(axes)
			ones := make([]bool, r)
			for _, ax := range axes {
				q, err := ir.NormAxis(ax, r)
				if err != nil || ones[q] {
					return fmt.Errorf("node %q (Unsqueeze): bad axes %v for %v", n.name, axes, b.Type(v))
				}
				ones[q] = true
			}
			k := 0
			for q := range r {
				if ones[q] {
					s = append(s, 1)
				} else {
					s = append(s, xs[k])
					k++
				}
			}
		} else {
			drop := make([]bool, len(xs))
			for _, ax := range axes {
				q, err := ir.NormAxis(ax, len(xs))
				if err != nil || xs[q] != 1 {
					return fmt.Errorf("node %q (Squeeze): bad axes %v for %v", n.name, axes, b.Type(v))
				}
				drop[q] = true
			}
			for q, d := range xs {
				if !(drop[q] || (len(axes) == 0 && d == 1)) {
					s = append(s, d)
				}
			}
		}
		return set(im.reshape(v, s))

	case op == "Expand":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		shape, err := im.ints(in(1))
		if err != nil {
			return err
		}
		s := make([]int, len(shape))
		for k, d := range shape {
			s[k] = int(d)
		}
		to, err := ir.Broadcast(b.Type(v).Shape, s)
		if err != nil {
			return fmt.Errorf("node %q (Expand): %w", n.name, err)
		}
		if ir.ShapeEqual(to, b.Type(v).Shape) {
			return set(v)
		}
		return set(b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(to)}, v))
	}
	return im.convertMore(n, in, x, set)
}

// reshape is a Reshape unless the shape is already s.
func (im *importer) reshape(v string, s []int) string {
	if ir.ShapeEqual(im.b.Type(v).Shape, s) {
		return v
	}
	return im.b.Reshape(v, s...)
}

// matmul is ONNX MatMul: NumPy matmul, where a 1-D operand is a row (left) or
// a column (right) vector whose axis is dropped from the result.
func (im *importer) matmul(u, v string) string {
	b := im.b
	tu, tv := b.Type(u), b.Type(v)
	if tu.Rank() == 0 || tv.Rank() == 0 {
		b.Fail(fmt.Errorf("MatMul of a scalar (%v, %v)", tu, tv))
		return ""
	}
	if tu.Rank() == 1 {
		u = b.Reshape(u, 1, tu.Shape[0])
	}
	if tv.Rank() == 1 {
		v = b.Reshape(v, tv.Shape[0], 1)
	}
	y := b.MatMul(u, v, false, false)
	if b.Err() != nil || (tu.Rank() > 1 && tv.Rank() > 1) {
		return y
	}
	ys := b.Type(y).Shape
	s := slices.Clone(ys[:len(ys)-2])
	if tu.Rank() > 1 {
		s = append(s, ys[len(ys)-2])
	}
	if tv.Rank() > 1 {
		s = append(s, ys[len(ys)-1])
	}
	return b.Reshape(y, s...)
}

// linear turns a matrix product x·w (wᵀ when transB) whose w is a 2-D weight
// (an initializer, or a Transpose of one) used by this node alone into slc's
// Linear y = x·Wᵀ with W [out, in], the form sltrain-fuse rewrites. W is the
// initializer itself when the product already reads it transposed (Gemm's
// transB, MatMul of a Transpose): it keeps its name. Otherwise W holds the
// initializer's values transposed and is named after the node's module,
// "<module>.weight": torch.onnx.export folds each nn.Linear's transpose into
// a new initializer ("onnx::MatMul_305") while the node keeps the module's
// scope ("/model/layers.0/self_attn/q_proj/MatMul" → module
// "model.layers.0.self_attn.q_proj"), so the weight gets its PyTorch name
// back. The Linear node is named after the module. ok is false when the
// product is not such a Linear (it is then a MatMul).
func (im *importer) linear(n *nodeProto, xn, wn string, transB bool) (string, bool, error) {
	b := im.b
	src, direct := wn, transB
	if w, ok := im.transposed[wn]; ok && !transB && im.uses[wn] == 1 {
		src, direct = w, true
	}
	t, ok := im.consts[src]
	if !ok || !im.params[src] || len(t.Shape) != 2 || im.uses[src] != 1 || xn == "" {
		return "", false, nil
	}
	if _, isConst := im.consts[xn]; isConst && !im.params[xn] {
		return "", false, nil
	}
	x, err := im.value(xn)
	if err != nil {
		return "", false, err
	}
	if b.Type(x).Rank() < 2 || !b.Type(x).DType.IsFloat() || b.Type(x).DType != t.DType {
		return "", false, nil
	}
	module := scopePath(n.name)
	var w string
	if direct {
		if module == "" {
			module = strings.TrimSuffix(src, ".weight")
		}
		if w, err = im.value(src); err != nil {
			return "", false, err
		}
	} else {
		if module == "" {
			module = n.name
		}
		if module == "" {
			module = src
		}
		name := module + ".weight"
		if Frozen(name, im.freeze) { // frozen under its module's name: a fixed MatMul operand
			delete(im.params, src)
			return "", false, nil
		}
		if _, taken := im.consts[name]; taken || b.Type(name).DType != ir.InvalidDType {
			name = src // a clash: the initializer's own name, its values transposed
		}
		rows, cols := t.Shape[0], t.Shape[1] // [in, out]
		data := make([]float64, rows*cols)
		for i := range rows {
			for j := range cols {
				data[j*rows+i] = t.F[i*cols+j]
			}
		}
		w = b.AddInput(name, ir.T(t.DType, cols, rows), ir.Param, &ir.Init{Kind: ir.InitExplicit, Data: data})
	}
	scope := b.Scope
	b.Scope = module
	y := b.Op("Linear", nil, x, w)
	b.Scope = scope
	return y, true, b.Err()
}

// scopePath is the module path of an exported node's name: the scope without
// the op's own last component, with dots for slashes
// ("/model/layers.0/mlp/up_proj/MatMul" → "model.layers.0.mlp.up_proj"); ""
// for a name without a scope.
func scopePath(name string) string {
	k := strings.LastIndexByte(name, '/')
	if k < 0 {
		return ""
	}
	return strings.ReplaceAll(strings.Trim(name[:k], "/"), "/", ".")
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
