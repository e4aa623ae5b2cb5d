package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// onnxMLP writes a small ONNX model (Gemm with transB and a bias, Relu,
// MatMul, Softmax) with /usr/bin/python3's onnx, and prints an input x and
// NumPy's y for it.
const onnxMLP = `
import sys
import numpy as np
from onnx import helper, TensorProto, numpy_helper, save
rng = np.random.default_rng(0)
w1 = rng.standard_normal((8, 4)).astype(np.float32)
b1 = rng.standard_normal((8,)).astype(np.float32)
w2 = rng.standard_normal((8, 3)).astype(np.float32)
nodes = [
    helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
    helper.make_node("Relu", ["h"], ["r"], name="act"),
    helper.make_node("MatMul", ["r", "w2"], ["z"], name="fc2"),
    helper.make_node("Softmax", ["z"], ["y"], name="probs", axis=-1),
]
g = helper.make_graph(nodes, "mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])
save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
x = rng.standard_normal((2, 4)).astype(np.float32)
z = np.maximum(x @ w1.T + b1, 0) @ w2
y = np.exp(z - z.max(-1, keepdims=True))
y /= y.sum(-1, keepdims=True)
print(" ".join(repr(float(v)) for v in x.ravel()))
print(" ".join(repr(float(v)) for v in y.ravel()))
`

func onnxFloats(t *testing.T, line string) []float64 {
	t.Helper()
	var out []float64
	for _, f := range strings.Fields(line) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestCompileONNX compiles an ONNX model to IR and to an artifact; the
// inference program computes NumPy's result.
func TestCompileONNX(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import onnx, numpy").Run() != nil {
		t.Skip("/usr/bin/python3 has no onnx (apt-get install python3-onnx)")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "mlp.onnx")
	py, err := exec.Command("/usr/bin/python3", "-c", onnxMLP, model).Output()
	if err != nil {
		t.Fatalf("making the ONNX model: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(py)), "\n")
	if len(lines) != 2 {
		t.Fatalf("python printed %q", py)
	}
	x, want := onnxFloats(t, lines[0]), onnxFloats(t, lines[1])

	m, err := ir.ParseText([]byte(mustSlc(t, "compile", model, "--emit", "ir")))
	if err != nil {
		t.Fatalf("--emit ir output does not parse: %v", err)
	}
	g := m.Graph("infer")
	if g == nil || m.Graph("train_step") != nil {
		t.Fatalf("want an infer graph and no train_step, got %d graphs", len(m.Graphs))
	}
	bind, err := interp.InitState(g)
	if err != nil {
		t.Fatal(err)
	}
	bind["x"] = interp.FromFloats(ir.T(ir.F32, 2, 4), x)
	out, err := interp.Run(g, bind)
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if got := out["y"].F[k]; math.Abs(got-w) > 1e-5 {
			t.Fatalf("y[%d] = %v, NumPy says %v", k, got, w)
		}
	}

	art := filepath.Join(dir, "mlp.slc")
	if s := mustSlc(t, "compile", model, "-o", art); !strings.Contains(s, "Wrote "+art) || !strings.Contains(s, "1 programs") {
		t.Errorf("compile -o .slc:\n%s", s)
	}
	if st, err := os.Stat(art); err != nil || st.Size() == 0 {
		t.Errorf("no artifact: %v", err)
	}
	if _, errs, code := slc(t, "compile", model, "--batch-size", "2"); code != 2 || !strings.Contains(errs, "ONNX model") {
		t.Errorf("a config flag on an ONNX model: exit %d, %q", code, errs)
	}
}

// --dim binds an ONNX input's symbolic dimension; unbound, the import names
// it; a malformed --dim or one on a config is a usage error.
func TestCompileONNXDims(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import onnx, numpy").Run() != nil {
		t.Skip("/usr/bin/python3 has no onnx (apt-get install python3-onnx)")
	}
	model := filepath.Join(t.TempDir(), "mlp_n.onnx")
	script := strings.NewReplacer(`[2, 4])]`, `["N", 4])]`, `[2, 3])]`, `["N", 3])]`).Replace(onnxMLP)
	if script == onnxMLP {
		t.Fatal("the model script has no [2, 4] input to make symbolic")
	}
	if err := exec.Command("/usr/bin/python3", "-c", script, model).Run(); err != nil {
		t.Fatalf("making the ONNX model: %v", err)
	}
	m, err := ir.ParseText([]byte(mustSlc(t, "compile", model, "--dim", "N=5", "--emit", "ir")))
	if err != nil {
		t.Fatal(err)
	}
	if in := m.Graph("infer").Input("x"); in == nil || !in.Type.Equal(ir.T(ir.F32, 5, 4)) {
		t.Errorf("x with --dim N=5: %v", in)
	}
	if _, errs, code := slc(t, "compile", model); code != 1 || !strings.Contains(errs, "N") || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("unbound symbolic dim: exit %d, %q", code, errs)
	}
	for _, bad := range [][]string{{model, "--dim", "N"}, {model, "--dim", "N=0"}, {model, "--dim", "N=2", "--dim", "N=3"}, {configTiny, "--dim", "N=2"}} {
		if _, errs, code := slc(t, append([]string{"compile"}, bad...)...); code != 2 || !strings.Contains(errs, "--dim") {
			t.Errorf("compile %v: exit %d, %q; want a usage error about --dim", bad, code, errs)
		}
	}
}
