package e2e

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/version"
)

// onnxNodeTests is where Debian's libonnx-testdata keeps ONNX's node tests.
const onnxNodeTests = "/usr/share/libonnx-testdata/data/node"

// TestONNXConformanceCompiled runs ONNX's backend node tests through the
// whole compiler: import, the pass pipeline, native x86-64 kernels, the
// runtime's "infer" program, with the suite's tolerances (rtol 1e-3, atol
// 1e-7). A test that does not import (frontend/onnx's TestConformance says
// why) is skipped here; every test that imports must pass. f64 tests run
// with f32 inputs (the runtime binds float data as float32).
//
// Each test compiles and links its own kernels (about 0.15 s): a plain
// go test runs the first test of each op that imports, and the whole suite when -run
// names this test (go test ./e2e -run ONNXConformanceCompiled -v).
func TestONNXConformanceCompiled(t *testing.T) {
	all := strings.Contains(flag.Lookup("test.run").Value.String(), "ONNXConformanceCompiled")
	if testing.Short() {
		t.Skip("compiles hundreds of small programs (-short)")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler to link kernels")
	}
	dirs, _ := filepath.Glob(filepath.Join(onnxNodeTests, "test_*"))
	if len(dirs) == 0 {
		t.Skipf("no ONNX node tests in %s (apt-get install libonnx-testdata)", onnxNodeTests)
	}
	var passed, failed, skipped []string
	why := map[string]int{}
	seen := map[string]bool{}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		op := nodeTestOp(name)
		if !all && seen[op] {
			continue
		}
		reason, err := runCompiledNodeTest(dir)
		seen[op] = seen[op] || reason == ""
		switch {
		case reason != "":
			skipped = append(skipped, name)
			why[reason]++
		case err != nil:
			failed = append(failed, name)
			t.Errorf("%s: %v", name, err)
		default:
			passed = append(passed, name)
		}
	}
	var reasons []string
	for r, n := range why {
		reasons = append(reasons, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(reasons)
	if !all {
		t.Logf("(the first test of each op that imports: -run ONNXConformanceCompiled runs them all)")
	}
	t.Logf("ONNX node tests through the compiled CPU kernels: %d in all, %d run, %d passed, %d failed, %d skipped (%s)",
		len(dirs), len(passed)+len(failed), len(passed), len(failed), len(skipped), strings.Join(reasons, "; "))
}

// nodeTestOp is the op part of a node test's name: test_reduce_sum_keepdims
// → reduce, test_matmul_2d → matmul (the word after "test_").
func nodeTestOp(name string) string {
	op, _, _ := strings.Cut(strings.TrimPrefix(name, "test_"), "_")
	return op
}

// runCompiledNodeTest imports, compiles and runs one node test.
func runCompiledNodeTest(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return "no model", nil
	}
	set := filepath.Join(dir, "test_data_set_0")
	inputs := map[string]*onnx.Tensor{}
	o := onnx.Options{Constants: map[string]*onnx.Tensor{}}
	var m *ir.Module
	for {
		m, err = onnx.Import(data, o)
		var u *onnx.Unsupported
		if errors.As(err, &u) && u.What == "non-constant input" && o.Constants[u.Detail] == nil {
			if len(inputs) == 0 {
				if inputs, err = nodeTestInputs(data, set); err != nil {
					return "test data not read", nil
				}
			}
			if inputs[u.Detail] == nil {
				return "does not import", nil
			}
			o.Constants[u.Detail] = inputs[u.Detail]
			continue
		}
		if err != nil {
			return "does not import", nil
		}
		break
	}
	if len(inputs) == 0 {
		if inputs, err = nodeTestInputs(data, set); err != nil {
			return "test data not read", nil
		}
	}
	fwd := m.Graph("forward")
	outNames := []string{}
	for _, out := range fwd.Outputs {
		outNames = append(outNames, out.Name)
	}
	opt := passes.DefaultOptions()
	opt.PEFT = "full"
	s := &passes.State{Module: m, Options: opt}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		return "", fmt.Errorf("passes: %v", err)
	}
	art, err := codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans})
	if err != nil && strings.Contains(err.Error(), "not supported by the CPU kernels") {
		return "an op or dtype the CPU kernels lack (" + err.Error() + ")", nil
	}
	if err != nil {
		return "", fmt.Errorf("codegen: %v", err)
	}
	rt, err := runtime.Load(art, runtime.Options{Threads: 1, Version: version.Version})
	if err != nil {
		return "", fmt.Errorf("runtime: %v", err)
	}
	defer rt.Close()
	// "infer" computes the outputs other than "loss", "eval" the one named loss.
	outs := map[string]runtime.Tensor{}
	for _, prog := range []string{"infer", "eval"} {
		g := m.Graph(prog)
		if g == nil {
			continue
		}
		in := runtime.Inputs{Data: map[string][]int64{}, Floats: map[string][]float32{}}
		for _, x := range g.Inputs {
			if x.Role != ir.Data {
				continue
			}
			t := inputs[x.Name]
			if t == nil {
				return "", fmt.Errorf("no test data for input %q", x.Name)
			}
			if t.DType.IsFloat() {
				f := make([]float32, len(t.F))
				for k, v := range t.F {
					f[k] = float32(v)
				}
				in.Floats[x.Name] = f
			} else {
				in.Data[x.Name] = t.I
			}
		}
		res, err := rt.Run(prog, in)
		if err != nil {
			return "", fmt.Errorf("run %s: %v", prog, err)
		}
		for k, v := range res {
			outs[k] = v
		}
	}
	for j, name := range outNames {
		b, err := os.ReadFile(filepath.Join(set, fmt.Sprintf("output_%d.pb", j)))
		if err != nil {
			return "test data not read", nil
		}
		want, err := onnx.ParseTensor(b)
		if err != nil {
			return "test data not read", nil
		}
		got, ok := outs[name]
		if !ok {
			return "", fmt.Errorf("no output %q", name)
		}
		if err := compareCompiled(got, want); err != nil {
			return "", fmt.Errorf("output %q: %v", name, err)
		}
	}
	return "", nil
}

// nodeTestInputs reads a node test's input_N.pb files, matched to the graph
// inputs that are not initializers, in order.
func nodeTestInputs(model []byte, set string) (map[string]*onnx.Tensor, error) {
	names, err := onnx.InputNames(model)
	if err != nil {
		return nil, err
	}
	out := map[string]*onnx.Tensor{}
	for k, name := range names {
		b, err := os.ReadFile(filepath.Join(set, fmt.Sprintf("input_%d.pb", k)))
		if errors.Is(err, os.ErrNotExist) {
			continue // an optional input left out
		}
		if err != nil {
			return nil, err
		}
		t, err := onnx.ParseTensor(b)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// compareCompiled compares a runtime output with the test's, with the
// suite's tolerances (f64 results are checked at f32 precision: the runtime
// binds float inputs as float32).
func compareCompiled(got runtime.Tensor, want *onnx.Tensor) error {
	if fmt.Sprint(got.Type.Shape) != fmt.Sprint(append([]int{}, want.Shape...)) {
		return fmt.Errorf("got %v, want %v", got.Type, want.Type())
	}
	if !want.DType.IsFloat() {
		g, err := got.Int64s()
		if err != nil {
			return err
		}
		for k, v := range want.I {
			if g[k] != v {
				return fmt.Errorf("element %d: got %d, want %d", k, g[k], v)
			}
		}
		return nil
	}
	g, err := got.Float32s()
	if err != nil {
		return err
	}
	rtol, atol := 1e-3, 1e-7
	if want.DType == ir.F64 {
		atol = 1e-6 // the inputs were rounded to f32
	}
	for k, w := range want.F {
		v := float64(g[k])
		switch {
		case math.IsNaN(w) && math.IsNaN(v), v == w:
		case math.IsInf(w, 0) && v == w:
		case math.Abs(v-w) > atol+rtol*math.Abs(w) || math.IsNaN(v):
			return fmt.Errorf("element %d: got %v, want %v", k, v, w)
		}
	}
	return nil
}
