package onnx

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// exportLike writes (with /usr/bin/python3's onnx) a graph shaped like
// torch.onnx.export's: a MatMul of a folded-transpose initializer
// ("onnx::MatMul_7") under a module scope, a Gemm with transB of a named
// weight, a MatMul of a Transpose of a weight, two norm weights merged into one
// initializer and an Identity (the exporter's deduplication), and prints x and
// NumPy's y.
const exportLike = `
import sys
import numpy as np
from onnx import helper, TensorProto, numpy_helper, save
rng = np.random.default_rng(1)
wq = rng.standard_normal((5, 4)).astype(np.float32)   # q_proj.weight [out, in]
wfc = rng.standard_normal((3, 5)).astype(np.float32)  # fc.weight [out, in]
w2 = rng.standard_normal((2, 3)).astype(np.float32)   # head.weight [out, in]
ones = np.ones((4,), np.float32)
nodes = [
    helper.make_node("Identity", ["blk.norm1.weight"], ["blk.norm2.weight"], name="Identity_0"),
    helper.make_node("Mul", ["x", "blk.norm1.weight"], ["h0"], name="/blk/norm1/Mul"),
    helper.make_node("Mul", ["h0", "blk.norm2.weight"], ["h1"], name="/blk/norm2/Mul"),
    helper.make_node("MatMul", ["h1", "onnx::MatMul_7"], ["q"], name="/blk/attn/q_proj/MatMul"),
    helper.make_node("Gemm", ["q", "fc.weight", "fc.bias"], ["f"], name="/fc/Gemm", transB=1),
    helper.make_node("Transpose", ["head.weight"], ["wt"], name="/head/Transpose", perm=[1, 0]),
    helper.make_node("MatMul", ["f", "wt"], ["y"], name="/head/MatMul"),
]
g = helper.make_graph(nodes, "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    initializer=[numpy_helper.from_array(ones, "blk.norm1.weight"), numpy_helper.from_array(wq.T.copy(), "onnx::MatMul_7"),
                 numpy_helper.from_array(wfc, "fc.weight"), numpy_helper.from_array(np.arange(3, dtype=np.float32), "fc.bias"),
                 numpy_helper.from_array(w2, "head.weight")])
save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
x = rng.standard_normal((2, 4)).astype(np.float32)
y = ((x @ wq.T) @ wfc.T + np.arange(3)) @ w2.T
print(" ".join(repr(float(v)) for v in x.ravel()))
print(" ".join(repr(float(v)) for v in y.ravel()))
`

// TestImportLinear: matrix products of weights become Linear nodes named
// after their modules, the folded-transpose weight gets its module's name
// back, merged initializers are separate parameters again, and the graph
// computes NumPy's result.
func TestImportLinear(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import onnx, numpy").Run() != nil {
		t.Skip("/usr/bin/python3 has no onnx (apt-get install python3-onnx)")
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	out, err := exec.Command("/usr/bin/python3", "-c", exportLike, path).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Import(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	var linears []string
	for _, n := range g.Nodes {
		if n.Op == "Linear" {
			linears = append(linears, n.Name+"("+n.Inputs[1]+")")
		}
		if n.Op == "MatMul" {
			t.Errorf("a MatMul is left: %v", n)
		}
	}
	want := []string{"blk.attn.q_proj(blk.attn.q_proj.weight)", "fc(fc.weight)", "head(head.weight)"}
	if !slices.Equal(linears, want) {
		t.Errorf("Linear nodes %v, want %v", linears, want)
	}
	for name, shape := range map[string][]int{"blk.attn.q_proj.weight": {5, 4}, "fc.weight": {3, 5}, "head.weight": {2, 3}, "blk.norm1.weight": {4}, "blk.norm2.weight": {4}} {
		in := g.Input(name)
		if in == nil || in.Role != ir.Param || !slices.Equal(in.Type.Shape, shape) {
			t.Errorf("input %s: %+v, want a param of shape %v", name, in, shape)
		}
	}
	if g.Input("onnx::MatMul_7") != nil {
		t.Errorf("the exporter's initializer name is left")
	}
	// --freeze: the matched initializers are buffers, and a frozen weight's
	// product stays a MatMul (nothing to fuse or train).
	fm, err := Import(data, Options{Freeze: []string{"fc.*", "norm2"}})
	if err != nil {
		t.Fatal(err)
	}
	fg := fm.Graph("forward")
	if in := fg.Input("blk.norm2.weight"); in != nil && in.Role == ir.Param {
		t.Errorf("frozen blk.norm2.weight (all ones: a constant) is a param")
	}
	for _, name := range []string{"fc.weight", "fc.bias"} {
		if in := fg.Input(name); in == nil || in.Role != ir.Buffer {
			t.Errorf("frozen %s: %+v, want a buffer", name, in)
		}
	}
	if in := fg.Input("blk.norm1.weight"); in == nil || in.Role != ir.Param {
		t.Errorf("blk.norm1.weight (not frozen): %+v", in)
	}
	for _, n := range fg.Nodes {
		if n.Op == "Linear" && n.Name == "fc" {
			t.Errorf("a frozen weight's Gemm became a Linear")
		}
	}
	// An exporter-named weight is frozen by its module's name.
	qm, err := Import(data, Options{Freeze: []string{"q_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range qm.Graph("forward").Nodes {
		if n.Op == "Linear" && n.Name == "blk.attn.q_proj" {
			t.Errorf("--freeze q_proj: blk.attn.q_proj is still a trainable Linear")
		}
	}
	if in := qm.Graph("forward").Input("onnx::MatMul_7"); in == nil || in.Role != ir.Buffer {
		t.Errorf("--freeze q_proj: onnx::MatMul_7 is %+v, want a buffer", in)
	}
	if !Frozen("a.b.weight", []string{"a.*"}) || Frozen("a.b.weight", []string{"b.*"}) || !Frozen("a.b.weight", []string{"b."}) {
		t.Errorf("Frozen's glob/substring rule")
	}

	bind, err := interp.InitState(g)
	if err != nil {
		t.Fatal(err)
	}
	var x []float64
	for _, f := range strings.Fields(lines[0]) {
		v, _ := strconv.ParseFloat(f, 64)
		x = append(x, v)
	}
	bind["x"] = interp.FromFloats(ir.T(ir.F32, 2, 4), x)
	res, err := interp.Run(g, bind)
	if err != nil {
		t.Fatal(err)
	}
	for k, f := range strings.Fields(lines[1]) {
		v, _ := strconv.ParseFloat(f, 64)
		if got := res["y"].F[k]; math.Abs(got-v) > 1e-4*(1+math.Abs(v)) {
			t.Errorf("y[%d] = %v, want %v", k, got, v)
		}
	}
}

// TestEinsum: the matrix-product, batched, outer-product and reduction forms
// against direct sums.
func TestEinsum(t *testing.T) {
	for _, eq := range []string{"ij,jk->ik", "bij,bjk->bik", "i,j->ij", "ij,kj->ik", "ij->ji", "ij->i", "ij,jk", "bij,bkj->bki"} {
		lhs, out, explicit := strings.Cut(eq, "->")
		terms := strings.Split(lhs, ",")
		size := map[rune]int{'i': 2, 'j': 3, 'k': 4, 'b': 2}
		b := ir.NewBuilder("g")
		im := &importer{b: b, opset: 17, vals: map[string]string{}, consts: map[string]*Tensor{}, bools: map[string]bool{}, params: map[string]bool{}}
		var ops []string
		bind := map[string]*interp.Tensor{}
		vals := make([][]float64, len(terms))
		for k, term := range terms {
			var shape []int
			n := 1
			for _, c := range term {
				shape = append(shape, size[c])
				n *= size[c]
			}
			for e := range n {
				vals[k] = append(vals[k], float64(e%5)-1.5+float64(k))
			}
			name := "x" + strconv.Itoa(k)
			ops = append(ops, b.AddInput(name, ir.T(ir.F64, shape...), ir.Data, nil))
			bind[name] = interp.FromFloats(ir.T(ir.F64, shape...), vals[k])
		}
		if !explicit {
			out = "ik"
		}
		y, err := im.einsum(eq, ops)
		if err != nil {
			t.Fatalf("%s: %v", eq, err)
		}
		b.Output("y", y)
		res, err := interp.Run(b.G, bind)
		if err != nil {
			t.Fatalf("%s: %v", eq, err)
		}
		// Direct evaluation: every assignment of the letters.
		letters := []rune{}
		for _, c := range strings.ReplaceAll(lhs, ",", "") {
			if !slices.Contains(letters, c) {
				letters = append(letters, c)
			}
		}
		outShape := []int{}
		for _, c := range out {
			outShape = append(outShape, size[c])
		}
		n := 1
		for _, d := range outShape {
			n *= d
		}
		want := make([]float64, n)
		var walk func(k int, at map[rune]int)
		walk = func(k int, at map[rune]int) {
			if k == len(letters) {
				p := 1.0
				for t, term := range terms {
					off := 0
					for _, c := range term {
						off = off*size[c] + at[c]
					}
					p *= vals[t][off]
				}
				off := 0
				for _, c := range out {
					off = off*size[c] + at[c]
				}
				want[off] += p
				return
			}
			for v := range size[letters[k]] {
				at[letters[k]] = v
				walk(k+1, at)
			}
		}
		walk(0, map[rune]int{})
		if !slices.Equal(res["y"].Type.Shape, outShape) || !slices.Equal(res["y"].F, want) {
			t.Errorf("%s: got %v %v, want %v %v", eq, res["y"].Type.Shape, res["y"].F, outShape, want)
		}
	}
}

// A one-element float initializer (an ε) is a constant, not a parameter.
func TestScalarInitializerIsConstant(t *testing.T) {
	raw := binary.LittleEndian.AppendUint32(nil, math.Float32bits(1e-6))
	eps := msg(1, int64(1), 2, int64(dtFloat), 8, "eps", 9, raw) // TensorProto: dims [1], name, raw_data
	dims := msg(1, msg(1, int64(2)), 1, msg(1, int64(3)))
	tt := msg(1, int64(dtFloat), 2, dims)
	graph := msg(1, node("Add", "y", nil, "x", "eps"), 2, "g", 5, eps, 11, msg(1, "x", 2, msg(1, tt)), 12, msg(1, "y"))
	m, err := Import(msg(1, int64(8), 8, msg(1, "", 2, int64(17)), 7, graph), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range m.Graph("forward").Inputs {
		if in.Role == ir.Param {
			t.Errorf("input %s is a param", in.Name)
		}
	}
}
