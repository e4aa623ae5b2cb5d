package onnx

import (
	"errors"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// graphModel is a ModelProto of opset 17 with one f32 input x [2, 3, 4], the
// given nodes (NodeProto bytes) and one output y.
func graphModel(nodes ...[]byte) []byte {
	dims := msg(1, msg(1, int64(2)), 1, msg(1, int64(3)), 1, msg(1, int64(4)))
	tensorType := msg(1, int64(dtFloat), 2, dims)
	var g []any
	for _, n := range nodes {
		g = append(g, 1, n)
	}
	g = append(g, 2, "g", 11, msg(1, "x", 2, msg(1, tensorType)), 12, msg(1, "y"))
	return msg(1, int64(8), 8, msg(1, "", 2, int64(17)), 7, msg(g...))
}

// node is a NodeProto op(inputs) -> out with the given attributes.
func node(op, out string, attrs [][]byte, inputs ...string) []byte {
	var kv []any
	for _, in := range inputs {
		kv = append(kv, 1, in)
	}
	kv = append(kv, 2, out, 3, out, 4, op)
	for _, a := range attrs {
		kv = append(kv, 5, a)
	}
	return msg(kv...)
}

// intsConst is a Constant node with a value_ints attribute.
func intsConst(out string, v ...int64) []byte {
	var p []byte
	for _, x := range v {
		p = protowire.AppendVarint(p, uint64(x))
	}
	return node("Constant", out, [][]byte{msg(1, "value_ints", 20, int64(attrInts), 8, p)})
}

// TestFoldShapeChain: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))
// is folded at import into one Reshape to [2, 12].
func TestFoldShapeChain(t *testing.T) {
	m, err := Import(graphModel(
		node("Shape", "s", nil, "x"),
		intsConst("zero", 0),
		node("Constant", "i0", [][]byte{msg(1, "value_int", 20, int64(attrInt), 3, int64(0))}),
		node("Gather", "d0", nil, "s", "i0"),
		node("Unsqueeze", "d0v", nil, "d0", "zero"),
		intsConst("rest", -1),
		node("Concat", "shape", [][]byte{msg(1, "axis", 20, int64(attrInt), 3, int64(0))}, "d0v", "rest"),
		node("Reshape", "y", nil, "x", "shape"),
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	if len(g.Nodes) != 1 || g.Nodes[0].Op != "Reshape" || !g.Nodes[0].Outputs[0].Type.Equal(ir.T(ir.F32, 2, 12)) {
		t.Fatalf("want one Reshape to [2, 12], got %v", g)
	}
}

// TestSliceNeedsConstants: Slice with computed starts is the typed error.
func TestSliceNeedsConstants(t *testing.T) {
	_, err := Import(graphModel(
		node("Cast", "xi", [][]byte{msg(1, "to", 20, int64(attrInt), 3, int64(dtInt64))}, "x"),
		node("Reshape", "st", nil, "xi", "flat"),
		node("Slice", "y", nil, "x", "st", "st"),
	), Options{Constants: map[string]*Tensor{"flat": {DType: ir.I64, Shape: []int{1}, I: []int64{-1}}}})
	var u *Unsupported
	if !errors.As(err, &u) || u.What != "non-constant input" {
		t.Fatalf("got %v, want a non-constant input error", err)
	}
}

// TestEqualNaN: Equal(x, x) is false only for NaN, true for ±inf.
func TestEqualNaN(t *testing.T) {
	m, err := Import(graphModel(
		node("Equal", "e", nil, "x", "x"),
		node("Cast", "y", [][]byte{msg(1, "to", 20, int64(attrInt), 3, int64(dtFloat))}, "e"),
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float64, 24)
	in[0], in[1], in[2], in[3] = math.NaN(), math.Inf(1), math.Inf(-1), -0.0
	out, err := interp.Run(m.Graph("forward"), map[string]*interp.Tensor{"x": interp.FromFloats(ir.T(ir.F32, 2, 3, 4), in)})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range out["y"].F {
		if want := map[bool]float64{true: 0, false: 1}[k == 0]; v != want {
			t.Fatalf("y[%d] = %v, want %v", k, v, want)
		}
	}
}

// TestErf: the approximation against math.Erf, within 2·10⁻⁷ absolute or
// 10⁻⁶ relative, and at ±∞ and NaN.
func TestErf(t *testing.T) {
	m, err := Import(graphModel(node("Erf", "y", nil, "x")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float64, 24)
	for k := range in {
		in[k] = math.Pow(1.9, float64(k-14)) * float64(1-2*(k%2))
	}
	in[0], in[1], in[2] = math.Inf(1), math.Inf(-1), math.NaN()
	g := m.Graph("forward")
	bind, err := interp.InitState(g)
	if err != nil {
		t.Fatal(err)
	}
	x := interp.FromFloats(ir.T(ir.F32, 2, 3, 4), in)
	bind["x"] = x
	out, err := interp.Run(g, bind)
	if err != nil {
		t.Fatal(err)
	}
	for k, got := range out["y"].F {
		want := math.Erf(x.F[k])
		if math.IsNaN(want) != math.IsNaN(got) || math.Abs(got-want) > max(2e-7, 1e-6*math.Abs(want)) {
			t.Errorf("erf(%v) = %v, want %v", x.F[k], got, want)
		}
	}
}

// TestOneHot: OneHot with constant operands is folded; −1 is the last class
// and an index out of range matches no class.
func TestOneHot(t *testing.T) {
	c := map[string]*Tensor{
		"idx":    {DType: ir.I64, Shape: []int{3}, I: []int64{1, -1, 3}},
		"depth":  {DType: ir.I64, I: []int64{3}},
		"values": {DType: ir.F32, Shape: []int{2}, F: []float64{-2, 5}},
	}
	m, err := Import(graphModel(node("OneHot", "y", nil, "idx", "depth", "values")), Options{Constants: c})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	bind, err := interp.InitState(g)
	if err != nil {
		t.Fatal(err)
	}
	bind["x"] = interp.NewTensor(ir.T(ir.F32, 2, 3, 4))
	out, err := interp.Run(g, bind)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{-2, 5, -2, -2, -2, 5, -2, -2, -2}
	if y := out["y"]; !y.Type.Equal(ir.T(ir.F32, 3, 3)) || !slices.Equal(y.F, want) {
		t.Fatalf("y = %v %v, want %v", y.Type, y.F, want)
	}
}
