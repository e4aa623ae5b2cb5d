package onnx

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// msg encodes a protobuf message from (field, value) pairs: a string or []byte
// is a bytes field, an int64 a varint.
func msg(kv ...any) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		num := protowire.Number(kv[i].(int))
		switch v := kv[i+1].(type) {
		case string:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, v)
		case []byte:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		case int64:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	return b
}

// model is a ModelProto of opset 17 with one f32 input x of the given dims
// (an int64 or a symbolic name) and one node op(x) -> y.
func model(op string, attrs [][]byte, dims ...any) []byte {
	var shape []any
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			shape = append(shape, 1, msg(1, int64(d)))
		case string:
			shape = append(shape, 1, msg(2, d))
		}
	}
	tensorType := msg(1, int64(dtFloat), 2, msg(shape...))
	node := []any{1, "x", 2, "y", 3, "n0", 4, op}
	for _, a := range attrs {
		node = append(node, 5, a)
	}
	graph := msg(1, msg(node...), 2, "g", 11, msg(1, "x", 2, msg(1, tensorType)), 12, msg(1, "y"))
	return msg(1, int64(8), 8, msg(1, "", 2, int64(17)), 7, graph)
}

func TestImportRelu(t *testing.T) {
	m, err := Import(model("Relu", nil, "N", 3), Options{Dims: map[string]int{"N": 2}})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	if in := g.Input("x"); in == nil || in.Role != ir.Data || !in.Type.Equal(ir.T(ir.F32, 2, 3)) {
		t.Fatalf("input x: %+v", in)
	}
	out, err := interp.Run(g, map[string]*interp.Tensor{"x": interp.FromFloats(ir.T(ir.F32, 2, 3), []float64{-1, 2, -3, 4, 0, -0.5})})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0, 2, 0, 4, 0, 0}
	for k, v := range out["y"].F {
		if v != want[k] {
			t.Fatalf("y = %v, want %v", out["y"].F, want)
		}
	}
}

func TestImportErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want []string
	}{
		{"symbolic dim", model("Relu", nil, "N", 3), []string{`input "x"`, "dim 0", `"N"`}},
		{"unknown op", model("Frobnicate", nil, 2), []string{"unsupported op", "Frobnicate", `node "n0"`, "opset 17"}},
		{"unknown attribute", model("Relu", [][]byte{msg(1, "alpha", 20, int64(attrFloat))}, 2), []string{`unsupported attribute "alpha"`, "Relu", `node "n0"`, "opset 17"}},
		{"no graph", msg(1, int64(8), 2, "pytorch"), []string{"no graph"}},
		{"not protobuf", []byte{0xff, 0xff}, []string{"not an ONNX model"}},
	} {
		_, err := Import(c.data, Options{})
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
}

func TestParseTensorFields(t *testing.T) {
	packed := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = protowire.AppendVarint(b, v)
		}
		return b
	}
	f32 := func(vs ...float32) []byte {
		var b []byte
		for _, v := range vs {
			b = protowire.AppendFixed32(b, math.Float32bits(v))
		}
		return b
	}
	neg := uint64(1<<64 - 3) // -3 as a varint
	for _, c := range []struct {
		name string
		data []byte
		want Tensor
	}{
		{"int64_data packed", msg(1, packed(3), 2, int64(dtInt64), 7, packed(1, neg, 7)), Tensor{DType: ir.I64, Shape: []int{3}, I: []int64{1, -3, 7}}},
		{"int32_data unpacked", msg(1, int64(2), 2, int64(dtInt32), 5, int64(4), 5, int64(neg)), Tensor{DType: ir.I32, Shape: []int{2}, I: []int64{4, -3}}},
		{"float_data", msg(1, packed(1, 2), 2, int64(dtFloat), 4, f32(0.5, -2)), Tensor{DType: ir.F32, Shape: []int{1, 2}, F: []float64{0.5, -2}}},
		{"raw_data f32", msg(1, packed(2), 2, int64(dtFloat), 9, f32(1.25, 3)), Tensor{DType: ir.F32, Shape: []int{2}, F: []float64{1.25, 3}}},
		{"scalar", msg(2, int64(dtFloat), 4, f32(7)), Tensor{DType: ir.F32, F: []float64{7}}},
	} {
		got, err := ParseTensor(c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.DType != c.want.DType || fmt.Sprint(got.Shape, got.F, got.I) != fmt.Sprint(c.want.Shape, c.want.F, c.want.I) {
			t.Errorf("%s: got %v %v %v %v, want %v %v %v %v", c.name, got.DType, got.Shape, got.F, got.I, c.want.DType, c.want.Shape, c.want.F, c.want.I)
		}
	}
	// A bool tensor is held as 0/1 i64 values (any non-zero byte is true).
	if b, err := ParseTensor(msg(1, packed(3), 2, int64(dtBool), 9, []byte{1, 0, 7})); err != nil || !b.Bool || b.DType != ir.I64 || fmt.Sprint(b.I) != "[1 0 1]" {
		t.Errorf("a bool tensor: %+v, %v", b, err)
	}
	if _, err := ParseTensor(msg(1, packed(3), 2, int64(dtBool), 9, []byte{1, 0})); err == nil {
		t.Errorf("a bool tensor with 2 bytes for 3 elements: no error")
	}
}
