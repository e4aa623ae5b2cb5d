package export

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/version"
)

// ONNXOpset is the ai.onnx opset ONNXModel writes.
const ONNXOpset = 17

// ONNX TensorProto data types and AttributeProto types written here.
const (
	onnxFloat  = 1
	onnxInt32  = 6
	onnxInt64  = 7
	onnxDouble = 11

	attrFloat  = 1
	attrInt    = 2
	attrString = 3
	attrTensor = 4
	attrInts   = 7
)

// ONNXValues gives ONNXModel the values of a graph's state inputs by name
// (float64 for floats, int64 for integers; ok false for one it lacks).
type ONNXValues func(name string) (f []float64, i []int64, ok bool)

// ONNXModel writes an inference graph (data inputs, state inputs, outputs;
// no loss) as an ONNX ModelProto of opset 17: state inputs become
// initializers under their names, each slc op one or a few ONNX ops (Linear
// as MatMul of a Transpose of the weight, so that its name and [out, in]
// layout stay; RoPE as x·cos + rotate_half(x)·sin with Constant tables;
// CausalMask as adding a Constant 0/−inf mask; Rsqrt as Reciprocal of
// Sqrt; Silu as x·Sigmoid(x)). A LowRankSparseAdd is written merged (W =
// B·(A·scale) + S as one "<module>.weight" initializer) unless factored,
// when W is computed in the graph from lora_B, lora_A, sparse_value and
// sparse_index (ScatterElements). An op without an ONNX form is an error
// naming it.
func ONNXModel(g *ir.Graph, values ONNXValues, factored bool) ([]byte, error) {
	w := &onnxWriter{g: g, values: values, factored: factored, types: map[string]ir.Type{}, inits: map[string]bool{}}
	for _, in := range g.Inputs {
		w.types[in.Name] = in.Type
		if in.Init != nil && in.Init.Kind == ir.InitSupport && in.Type.DType == ir.I32 {
			// An SLTrain sparse_index: int64, as the seed's and as
			// ScatterElements' consumers expect, whatever slc trains with.
			w.types[in.Name] = ir.Type{DType: ir.I64, Shape: in.Type.Shape}
		}
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			w.types[o.Name] = o.Type
		}
	}
	live := liveNodes(g)
	for _, in := range g.Inputs {
		if in.Role == ir.Data {
			w.inputs = append(w.inputs, valueInfo(in.Name, in.Type))
		}
	}
	for _, n := range g.Nodes {
		if !live[n] {
			continue
		}
		if err := w.node(n); err != nil {
			return nil, fmt.Errorf("node %q (%s): %w", n.Name, n.Op, err)
		}
	}
	var outs [][]byte
	for _, o := range g.Outputs {
		v := o.Value
		if o.Name != v { // an ONNX output is a value of the graph under its name
			w.emit("Identity", []string{v}, []string{o.Name}, "")
		}
		outs = append(outs, valueInfo(o.Name, w.types[v]))
	}
	var gb []byte
	for _, n := range w.nodes {
		gb = appendBytes(gb, 1, n)
	}
	gb = appendString(gb, 2, g.Name)
	for _, t := range w.initializers {
		gb = appendBytes(gb, 5, t)
	}
	for _, in := range w.inputs {
		gb = appendBytes(gb, 11, in)
	}
	for _, o := range outs {
		gb = appendBytes(gb, 12, o)
	}
	var m []byte
	m = appendVarint(m, 1, 8) // ir_version 8 (ONNX 1.10+)
	m = appendString(m, 2, "slc")
	m = appendString(m, 3, version.Version)
	m = appendBytes(m, 7, gb)
	m = appendBytes(m, 8, appendVarint(appendString(nil, 1, ""), 2, ONNXOpset))
	return m, nil
}

// liveNodes are the nodes that the graph's outputs need.
func liveNodes(g *ir.Graph) map[*ir.Node]bool {
	producer := map[string]*ir.Node{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			producer[o.Name] = n
		}
	}
	live := map[*ir.Node]bool{}
	var need func(v string)
	need = func(v string) {
		n := producer[v]
		if n == nil || live[n] {
			return
		}
		live[n] = true
		for _, in := range n.Inputs {
			need(in)
		}
	}
	for _, o := range g.Outputs {
		need(o.Value)
	}
	return live
}

type onnxWriter struct {
	g            *ir.Graph
	values       ONNXValues
	factored     bool
	types        map[string]ir.Type
	nodes        [][]byte
	initializers [][]byte
	inputs       [][]byte
	inits        map[string]bool // initializers written
	fresh        int
}

// tmp is a fresh value name.
func (w *onnxWriter) tmp(hint string) string {
	w.fresh++
	return fmt.Sprintf("onnx_%s_%d", hint, w.fresh)
}

// emit appends a node; attrs are encoded AttributeProtos.
func (w *onnxWriter) emit(op string, in, out []string, name string, attrs ...[]byte) {
	var b []byte
	for _, v := range in {
		b = appendString(b, 1, v)
	}
	for _, v := range out {
		b = appendString(b, 2, v)
	}
	if name != "" {
		b = appendString(b, 3, name)
	}
	b = appendString(b, 4, op)
	for _, a := range attrs {
		b = appendBytes(b, 5, a)
	}
	w.nodes = append(w.nodes, b)
}

// op1 emits a one-output node into a fresh value and returns it.
func (w *onnxWriter) op1(op, hint, name string, t ir.Type, in []string, attrs ...[]byte) string {
	v := w.tmp(hint)
	w.emit(op, in, []string{v}, name, attrs...)
	w.types[v] = t
	return v
}

// constant emits a Constant node holding t's values (f for floats, i for
// integers).
func (w *onnxWriter) constant(hint string, t ir.Type, f []float64, i []int64) string {
	v := w.tmp(hint)
	w.emit("Constant", nil, []string{v}, "", attrT("value", tensor("", t, f, i)))
	w.types[v] = t
	return v
}

func (w *onnxWriter) ints(hint string, v ...int) string {
	i := make([]int64, len(v))
	for k, x := range v {
		i[k] = int64(x)
	}
	return w.constant(hint, ir.T(ir.I64, len(v)), nil, i)
}

// state writes a state input as an initializer (once).
func (w *onnxWriter) state(name string) error {
	if w.inits[name] {
		return nil
	}
	in := w.g.Input(name)
	if in == nil {
		return nil // a node's value, not an input
	}
	if in.Role == ir.Data {
		return nil
	}
	f, i, ok := w.values(name)
	if !ok {
		return fmt.Errorf("no value for %q", name)
	}
	w.initializers = append(w.initializers, tensor(name, w.types[name], f, i))
	w.inits[name] = true
	return nil
}

func (w *onnxWriter) node(n *ir.Node) error {
	if n.Op != "LowRankSparseAdd" || w.factored {
		for _, in := range n.Inputs {
			if err := w.state(in); err != nil {
				return err
			}
		}
	}
	in, t := n.Inputs, n.Outputs[0].Type
	var out []string
	for _, o := range n.Outputs {
		out = append(out, o.Name)
	}
	y := out[0]
	name := n.Name
	switch n.Op {
	case "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Neg", "Sqrt", "Exp", "Log", "Sigmoid", "Identity":
		w.emit(n.Op, in, out, name)
	case "Recip":
		w.emit("Reciprocal", in, out, name)
	case "Rsqrt":
		w.emit("Reciprocal", []string{w.op1("Sqrt", "sqrt", name, t, in)}, out, name)
	case "Silu":
		w.emit("Mul", []string{in[0], w.op1("Sigmoid", "sigmoid", name, t, in)}, out, name)
	case "Greater":
		g := w.op1("Greater", "greater", name, ir.Type{DType: ir.I64, Shape: t.Shape}, in)
		w.emit("Cast", []string{g}, out, name, attrI("to", onnxDType(t.DType)))
	case "Const":
		v := n.Attrs.GetFloat("value", 0)
		scalar := []float64{v}
		var iv []int64
		if !t.DType.IsFloat() {
			scalar, iv = nil, []int64{int64(v)}
		}
		if t.Rank() == 0 {
			w.emit("Constant", nil, out, name, attrT("value", tensor("", t, scalar, iv)))
		} else {
			w.emit("ConstantOfShape", []string{w.ints("shape", t.Shape...)}, out, name, attrT("value", tensor("", ir.Type{DType: t.DType, Shape: []int{1}}, scalar, iv)))
		}
	case "Cast":
		w.emit("Cast", in, out, name, attrI("to", onnxDType(t.DType)))
	case "ReduceSum", "ReduceMean":
		axes := n.Attrs.GetInts("axes")
		keep := attrI("keepdims", n.Attrs.GetInt("keepdims", 0))
		if n.Op == "ReduceSum" {
			ax := make([]int, len(axes))
			for k, a := range axes {
				ax[k] = int(a)
			}
			w.emit("ReduceSum", []string{in[0], w.ints("axes", ax...)}, out, name, keep)
		} else {
			w.emit("ReduceMean", in, out, name, attrInts64("axes", axes), keep)
		}
	case "MatMul":
		if n.Attrs.GetString("out_dtype", "") != "" {
			return fmt.Errorf("a mixed-precision product has no ONNX form here")
		}
		u, v := in[0], in[1]
		if n.Attrs.GetInt("transpose_a", 0) != 0 {
			u = w.swapLast(u, name)
		}
		if n.Attrs.GetInt("transpose_b", 0) != 0 {
			v = w.swapLast(v, name)
		}
		w.emit("MatMul", []string{u, v}, out, name)
	case "Linear":
		if n.Attrs.GetString("out_dtype", "") != "" {
			return fmt.Errorf("a mixed-precision product has no ONNX form here")
		}
		w.linear(in[0], in[1], y, name)
	case "LowRankSparseAdd":
		return w.lowRankSparseAdd(n)
	case "Reshape":
		w.emit("Reshape", []string{in[0], w.ints("shape", t.Shape...)}, out, name)
	case "Expand":
		w.emit("Expand", []string{in[0], w.ints("shape", t.Shape...)}, out, name)
	case "Transpose":
		w.emit("Transpose", in, out, name, attrInts64("perm", n.Attrs.GetInts("perm")))
	case "Slice":
		ax, s, e := int(n.Attrs.GetInt("axis", 0)), int(n.Attrs.GetInt("start", 0)), int(n.Attrs.GetInt("end", 0))
		w.emit("Slice", []string{in[0], w.ints("starts", s), w.ints("ends", e), w.ints("axes", ax)}, out, name)
	case "Concat":
		w.emit("Concat", in, out, name, attrI("axis", n.Attrs.GetInt("axis", 0)))
	case "Gather":
		w.emit("Gather", in, out, name, attrI("axis", 0))
	case "Softmax":
		w.emit("Softmax", in, out, name, attrI("axis", n.Attrs.GetInt("axis", -1)))
	case "RoPE":
		return w.rope(n)
	case "CausalMask":
		if f := n.Attrs.GetString("fill", "neg_inf"); f != "neg_inf" {
			return fmt.Errorf("fill %q", f)
		}
		r := t.Rank()
		rows, cols := t.Shape[r-2], t.Shape[r-1]
		mask := make([]float64, rows*cols)
		for i := range rows {
			for j := i + 1; j < cols; j++ {
				mask[i*cols+j] = math.Inf(-1)
			}
		}
		m := w.constant("causal_mask", ir.Type{DType: t.DType, Shape: []int{rows, cols}}, mask, nil)
		w.emit("Add", []string{in[0], m}, out, name)
	default:
		return fmt.Errorf("slc has no ONNX form for op %s", n.Op)
	}
	return nil
}

// swapLast transposes the last two axes of v.
func (w *onnxWriter) swapLast(v, name string) string {
	t := w.types[v]
	r := t.Rank()
	perm := make([]int64, r)
	for k := range perm {
		perm[k] = int64(k)
	}
	perm[r-2], perm[r-1] = perm[r-1], perm[r-2]
	s := slices.Clone(t.Shape)
	s[r-2], s[r-1] = s[r-1], s[r-2]
	return w.op1("Transpose", "transposed", name, ir.Type{DType: t.DType, Shape: s}, []string{v}, attrInts64("perm", perm))
}

// linear writes y = x·Wᵀ as MatMul(x, Transpose(W)).
func (w *onnxWriter) linear(x, weight, y, name string) {
	wt := w.swapLast(weight, name)
	w.emit("MatMul", []string{x, wt}, []string{y}, name)
}

// lowRankSparseAdd writes SLTrain's layer: merged into one dense weight, or
// with W computed from its factors in the graph.
func (w *onnxWriter) lowRankSparseAdd(n *ir.Node) error {
	if n.Attrs.GetString("out_dtype", "") != "" {
		return fmt.Errorf("a mixed-precision product has no ONNX form here")
	}
	x, bn, an, vn, in := n.Inputs[0], n.Inputs[1], n.Inputs[2], n.Inputs[3], n.Inputs[4]
	scale := n.Attrs.GetFloat("scale", 1)
	bt, at := w.types[bn], w.types[an]
	out, rank, inF := bt.Shape[0], bt.Shape[1], at.Shape[1]
	dt := bt.DType
	module := strings.TrimSuffix(bn, ".lora_B")
	if !w.factored {
		b, _, ok1 := w.values(bn)
		a, _, ok2 := w.values(an)
		if !ok2 { // the seed's trainable scale: an is A·tanh(scaling), computed in the graph
			a, ok2 = w.scaledA(module, dt)
		}
		v, _, ok3 := w.values(vn)
		_, idx, ok4 := w.values(in)
		if !(ok1 && ok2 && ok3 && ok4) {
			return fmt.Errorf("no values for %s's factors", module)
		}
		wd := mergeDense(out, inF, rank, b, slices.Clone(a), v, idx, scale)
		name := module + ".weight"
		wtType := ir.Type{DType: dt, Shape: []int{out, inF}}
		w.types[name] = wtType
		w.initializers = append(w.initializers, tensor(name, wtType, roundAll(dt, wd), nil))
		w.inits[name] = true
		w.linear(x, name, n.Outputs[0].Name, n.Name)
		return nil
	}
	sc := w.constant("scale", ir.Type{DType: dt}, []float64{scale}, nil)
	as := w.op1("Mul", "a_scaled", n.Name, at, []string{an, sc})
	ba := w.op1("MatMul", "ba", n.Name, ir.Type{DType: dt, Shape: []int{out, inF}}, []string{bn, as})
	flat := ir.Type{DType: dt, Shape: []int{out * inF}}
	zeros := w.op1("ConstantOfShape", "zeros", n.Name, flat, []string{w.ints("shape", out*inF)},
		attrT("value", tensor("", ir.Type{DType: dt, Shape: []int{1}}, []float64{0}, nil)))
	s := w.op1("ScatterElements", "sparse", n.Name, flat, []string{zeros, in, vn}, attrI("axis", 0))
	s = w.op1("Reshape", "sparse_2d", n.Name, ir.Type{DType: dt, Shape: []int{out, inF}}, []string{s, w.ints("shape", out, inF)})
	wt := w.op1("Add", "weight", n.Name, ir.Type{DType: dt, Shape: []int{out, inF}}, []string{ba, s})
	w.linear(x, wt, n.Outputs[0].Name, n.Name)
	return nil
}

// scaledA is A·tanh(scaling) of an SLTrain layer trained with the seed's
// --train_scaling, rounded as the graph computes it: tanh rounded to dt,
// then each product rounded to dt.
func (w *onnxWriter) scaledA(module string, dt ir.DType) ([]float64, bool) {
	a, _, ok := w.values(module + ".lora_A")
	s, _, ok2 := w.values(module + suffixScaling)
	if !ok || !ok2 || len(s) != 1 {
		return nil, false
	}
	t := roundTo(dt, math.Tanh(s[0]))
	out := make([]float64, len(a))
	for i, x := range a {
		out[i] = roundTo(dt, x*t)
	}
	return out, true
}

// rope writes y = x·cos + rotate_half(x)·sin with the tables of the RoPE op
// (θ = p·base^(−2i/D), positions along seq_axis) as Constants.
func (w *onnxWriter) rope(n *ir.Node) error {
	if n.Attrs.GetInt("inverse", 0) != 0 {
		return fmt.Errorf("an inverse rotation")
	}
	x := n.Inputs[0]
	t := n.Outputs[0].Type
	r := t.Rank()
	ax, err := ir.NormAxis(n.Attrs.GetInt("seq_axis", -2), r)
	if err != nil {
		return err
	}
	base := n.Attrs.GetFloat("base", 10000)
	D, S := t.Shape[r-1], t.Shape[ax]
	h := D / 2
	cos, sin := make([]float64, S*D), make([]float64, S*D)
	for p := range S {
		for i := range h {
			theta := float64(p) * math.Pow(base, -2*float64(i)/float64(D))
			c, s := math.Cos(theta), math.Sin(theta)
			cos[p*D+i], cos[p*D+i+h] = c, c
			sin[p*D+i], sin[p*D+i+h] = s, s
		}
	}
	shape := []int{S}
	for range r - 2 - ax {
		shape = append(shape, 1)
	}
	shape = append(shape, D)
	tt := ir.Type{DType: t.DType, Shape: shape}
	ct := w.constant("rope_cos", tt, roundAll(t.DType, cos), nil)
	st := w.constant("rope_sin", tt, roundAll(t.DType, sin), nil)
	half := slices.Clone(t.Shape)
	half[r-1] = h
	ht := ir.Type{DType: t.DType, Shape: half}
	hi := w.op1("Slice", "rope_hi", n.Name, ht, []string{x, w.ints("starts", h), w.ints("ends", D), w.ints("axes", r-1)})
	lo := w.op1("Slice", "rope_lo", n.Name, ht, []string{x, w.ints("starts", 0), w.ints("ends", h), w.ints("axes", r-1)})
	rot := w.op1("Concat", "rope_rot", n.Name, t, []string{w.op1("Neg", "rope_neg", n.Name, ht, []string{hi}), lo}, attrI("axis", int64(r-1)))
	xc := w.op1("Mul", "rope_xcos", n.Name, t, []string{x, ct})
	rs := w.op1("Mul", "rope_rsin", n.Name, t, []string{rot, st})
	w.emit("Add", []string{xc, rs}, []string{n.Outputs[0].Name}, n.Name)
	return nil
}

func roundAll(dt ir.DType, v []float64) []float64 {
	if dt != ir.F32 {
		return v
	}
	out := make([]float64, len(v))
	for k, x := range v {
		out[k] = float64(float32(x))
	}
	return out
}

func onnxDType(dt ir.DType) int64 {
	switch dt {
	case ir.F32:
		return onnxFloat
	case ir.F64:
		return onnxDouble
	case ir.I32:
		return onnxInt32
	case ir.I64:
		return onnxInt64
	}
	return 0
}

// tensor encodes a TensorProto with raw_data.
func tensor(name string, t ir.Type, f []float64, i []int64) []byte {
	var b []byte
	for _, d := range t.Shape {
		b = appendVarint(b, 1, uint64(d))
	}
	b = appendVarint(b, 2, uint64(onnxDType(t.DType)))
	if name != "" {
		b = appendString(b, 8, name)
	}
	var raw []byte
	switch t.DType {
	case ir.F32:
		for _, x := range f {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(x)))
		}
	case ir.F64:
		for _, x := range f {
			raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(x))
		}
	case ir.I32:
		for _, x := range i {
			raw = binary.LittleEndian.AppendUint32(raw, uint32(int32(x)))
		}
	case ir.I64:
		for _, x := range i {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(x))
		}
	}
	return appendBytes(b, 9, raw)
}

// valueInfo encodes a ValueInfoProto of a static tensor type.
func valueInfo(name string, t ir.Type) []byte {
	var shape []byte
	for _, d := range t.Shape {
		shape = appendBytes(shape, 1, appendVarint(nil, 1, uint64(d)))
	}
	tt := appendBytes(appendVarint(nil, 1, uint64(onnxDType(t.DType))), 2, shape)
	return appendBytes(appendString(nil, 1, name), 2, appendBytes(nil, 1, tt))
}

func attrI(name string, v int64) []byte {
	return appendVarint(appendVarint(appendString(nil, 1, name), 3, uint64(v)), 20, attrInt)
}

func attrT(name string, t []byte) []byte {
	return appendVarint(appendBytes(appendString(nil, 1, name), 5, t), 20, attrTensor)
}

func attrInts64(name string, v []int64) []byte {
	b := appendString(nil, 1, name)
	for _, x := range v {
		b = appendVarint(b, 8, uint64(x))
	}
	return appendVarint(b, 20, attrInts)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), v)
}
