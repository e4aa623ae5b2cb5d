package ir

import (
	"math"
	"strings"
	"testing"
)

// tinyGraph builds a small graph touching several ops, inits and roles.
func tinyGraph(t *testing.T) *Module {
	t.Helper()
	b := NewBuilder("forward")
	x := b.AddInput("x", T(F32, 2, 3, 4), Data, nil)
	w := b.AddInput("w", T(F32, 5, 4), Param, &Init{Kind: InitNormal, Std: 0.02, Seed: 7})
	idx := b.AddInput("idx", T(I64, 3), Buffer, &Init{Kind: InitSupport, Total: 20, Seed: 9})
	lr := b.AddInput("lr", T(F32), Scalar, nil)
	b.Scope = "layer"
	y := b.Op("Linear", nil, x, w)
	y = b.Mul(y, lr)
	y = b.Op("CausalMask", nil, b.Reshape(b.Slice(y, 2, 0, 2), 2, 3, 2))
	s := b.Reduce("ReduceSum", y, false, 0, 1, 2)
	c := b.Const(math.Inf(-1), T(F32))
	s = b.Op("Max", nil, s, c)
	b.Output("loss", s)
	b.Output("idx_out", b.Unary("Identity", idx))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return &Module{Meta: map[string]string{"model": "tiny"}, Graphs: []*Graph{b.G}}
}

func TestTextRoundTrip(t *testing.T) {
	m := tinyGraph(t)
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	text := m.MarshalText()
	back, err := ParseText(text)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	if !m.Equal(back) {
		t.Fatalf("round trip changed the module:\n%s\nvs\n%s", text, back.MarshalText())
	}
	if string(back.MarshalText()) != string(text) {
		t.Fatal("printing is not deterministic")
	}
}

func TestVerifyErrorsNameTheNode(t *testing.T) {
	m := tinyGraph(t)
	m.Graphs[0].Nodes[0].Outputs[0].Type = T(F32, 2, 3, 6)
	err := m.Verify()
	if err == nil || !strings.Contains(err.Error(), "node 0 (Linear") || !strings.Contains(err.Error(), "f32[2,3,5]") {
		t.Fatalf("got %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	good := string(tinyGraph(t).MarshalText())
	for _, c := range []struct{ name, text, want string }{
		{"syntax", "{\n  \"format\": ", "unexpected end"},
		{"format", `{"graphs": []}`, `"format"`},
		{"unknown op", strings.Replace(good, `"op": "Linear"`, `"op": "Frobnicate"`, 1), `unknown op "Frobnicate"`},
		{"unknown dtype", strings.Replace(good, `"f32[5,4]"`, `"q7[5,4]"`, 1), `unknown dtype "q7"`},
		{"bad attr", strings.Replace(good, `"axis": 2`, `"axis": "two"`, 1), `attribute "axis"`},
		{"unknown field", strings.Replace(good, `"format"`, `"colour": 1, "format"`, 1), `colour`},
	} {
		_, err := ParseText([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestSupportIsSortedDistinctAndSeeded(t *testing.T) {
	a, _ := Support(1, 1000, 30)
	b, _ := Support(1, 1000, 30)
	c, _ := Support(2, 1000, 30)
	if len(a) != 30 {
		t.Fatalf("len %d", len(a))
	}
	for i := 1; i < len(a); i++ {
		if a[i] <= a[i-1] || a[i] >= 1000 {
			t.Fatalf("not sorted/distinct/in range: %v", a)
		}
	}
	same := true
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed gave different supports")
		}
		same = same && a[i] == c[i]
	}
	if same {
		t.Fatal("different seeds gave the same support")
	}
	full, _ := Support(3, 10, 10)
	for i, v := range full {
		if v != int64(i) {
			t.Fatalf("full support %v", full)
		}
	}
}

// TestSupportCheckDType: a support fits its dtype, or Check refuses it
// (an i32 index of a space over 2³¹ would wrap).
func TestSupportCheckDType(t *testing.T) {
	for _, c := range []struct {
		d     DType
		total int64
		ok    bool
	}{{I32, 1 << 31, true}, {I32, 1<<31 + 1, false}, {I64, 1<<31 + 1, true}, {U8, 256, true}, {U8, 257, false}} {
		err := (&Init{Kind: InitSupport, Total: c.total, Seed: 1}).Check(T(c.d, 4))
		if (err == nil) != c.ok {
			t.Errorf("support of %d in %v: %v, want ok %v", c.total, c.d, err, c.ok)
		}
	}
}

func TestInitMoments(t *testing.T) {
	n := 200000
	x := make([]float64, n)
	if err := Fill(&Init{Kind: InitNormal, Mean: 1, Std: 2, Seed: 5}, x); err != nil {
		t.Fatal(err)
	}
	var s, s2 float64
	for _, v := range x {
		s += v
		s2 += v * v
	}
	mean := s / float64(n)
	std := math.Sqrt(s2/float64(n) - mean*mean)
	if math.Abs(mean-1) > 0.02 || math.Abs(std-2) > 0.02 {
		t.Fatalf("normal(1,2): mean %v std %v", mean, std)
	}
	u := make([]float32, n)
	Fill(&Init{Kind: InitUniform, Low: -0.5, High: 0.5, Seed: 5}, u)
	for _, v := range u {
		if v < -0.5 || v > 0.5 {
			t.Fatalf("uniform out of range: %v", v)
		}
	}
}

func TestShapeRules(t *testing.T) {
	for _, c := range []struct {
		op    string
		in    []Type
		attrs Attrs
		want  string // output type or error substring
	}{
		{"MatMul", []Type{T(F32, 2, 3, 4), T(F32, 4, 5)}, nil, "f32[2,3,5]"},
		{"MatMul", []Type{T(F32, 4, 3), T(F32, 5, 4)}, Attrs{"transpose_a": Int(1), "transpose_b": Int(1)}, "f32[3,5]"},
		{"MatMul", []Type{T(F32, 2, 3), T(F32, 4, 5)}, nil, "inner dimensions"},
		{"Add", []Type{T(F32, 2, 1, 4), T(F32, 3, 1)}, nil, "f32[2,3,4]"},
		{"Add", []Type{T(F32, 2), T(BF16, 2)}, nil, "no implicit casts"},
		{"ReduceMean", []Type{T(F32, 2, 3, 4)}, Attrs{"axes": Ints(-1), "keepdims": Int(1)}, "f32[2,3,1]"},
		{"Reshape", []Type{T(F32, 2, 3, 4)}, Attrs{"shape": Ints(6, -1)}, "f32[6,4]"},
		{"Transpose", []Type{T(F32, 2, 3, 4)}, Attrs{"perm": Ints(0, 2, 1)}, "f32[2,4,3]"},
		{"Gather", []Type{T(F32, 10, 4), T(I64, 2, 3)}, nil, "f32[2,3,4]"},
		{"ScatterAdd", []Type{T(F32, 2, 3, 4), T(I64, 2, 3)}, Attrs{"num_rows": Int(10)}, "f32[10,4]"},
		{"SoftmaxCrossEntropy", []Type{T(F32, 6, 10), T(I64, 6)}, nil, "f32[6]"},
		{"LowRankSparseAdd", []Type{T(F32, 2, 8), T(F32, 6, 2), T(F32, 2, 8), T(F32, 4), T(I64, 4)}, Attrs{"scale": Float(2)}, "f32[2,6]"},
		{"Concat", []Type{T(F32, 2, 3), T(F32, 2, 5)}, Attrs{"axis": Int(1)}, "f32[2,8]"},
		{"Linear", []Type{T(F32, 2, 3)}, nil, "takes 2 inputs"},
		{"Softmax", []Type{T(F32, 2, 3)}, Attrs{"dim": Int(1)}, `no attribute "dim"`},
	} {
		out, err := InferTypes(c.op, c.in, c.attrs)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = out[0].String()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s%v: got %q, want %q", c.op, c.in, got, c.want)
		}
	}
}
