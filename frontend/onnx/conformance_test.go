package onnx

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir/interp"
)

// nodeTests is where Debian's libonnx-testdata keeps ONNX's backend node tests.
const nodeTests = "/usr/share/libonnx-testdata/data/node"

// supportedOps are the ONNX ops the importer translates.
var supportedOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Sqrt": true, "Reciprocal": true,
	"Neg": true, "Exp": true, "Log": true, "Sigmoid": true, "Relu": true, "Tanh": true, "Identity": true,
	"MatMul": true, "Gemm": true, "Reshape": true, "Transpose": true, "Softmax": true, "ReduceMean": true,
	"ReduceSum": true, "Concat": true, "Gather": true, "Cast": true, "Constant": true, "Unsqueeze": true,
	"Squeeze": true, "Expand": true, "Shape": true, "Slice": true, "Flatten": true, "LogSoftmax": true,
	"NegativeLogLikelihoodLoss": true, "SoftmaxCrossEntropyLoss": true,
	"Equal": true, "Less": true, "Greater": true, "Where": true, "ConstantOfShape": true, "Range": true, "Trilu": true,
	"LayerNormalization": true, "Split": true,
	"Max": true, "Min": true, "Sum": true, "Mean": true, "Clip": true, "Abs": true, "LeakyRelu": true, "Size": true,
	"Dropout": true, "GatherElements": true, "CastLike": true, "Elu": true, "Selu": true, "Celu": true,
	"HardSigmoid": true, "HardSwish": true, "ThresholdedRelu": true, "Softsign": true, "Softplus": true, "PRelu": true,
	"ReduceSumSquare": true, "ReduceL1": true, "ReduceL2": true, "ReduceLogSum": true,
	"Not": true, "And": true, "Or": true, "Xor": true, "DepthToSpace": true, "SpaceToDepth": true, "EyeLike": true,
	"GlobalAveragePool": true, "BatchNormalization": true, "InstanceNormalization": true, "Tile": true, "Mod": true, "Erf": true, "OneHot": true, "CumSum": true,
	"Cos": true, "Sin": true, "Einsum": true, "ScatterElements": true,
}

// ONNX's backend tests compare with these tolerances.
const rtol, atol = 1e-3, 1e-7

// TestConformance runs every ONNX node test whose ops are all supported through
// the importer and the reference interpreter and compares the outputs.
func TestConformance(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(nodeTests, "test_*"))
	if err != nil || len(dirs) == 0 {
		t.Skipf("no ONNX node tests in %s (apt-get install libonnx-testdata)", nodeTests)
	}
	skipped := map[string]int{}
	skippedNames := map[string][]string{}
	var failed, passed []string
	missing := map[string]int{} // unsupported op → tests that need it
	nFrozen := 0
	for _, dir := range dirs {
		name := filepath.Base(dir)
		reason, frozen, err := runNodeTest(dir)
		if frozen && reason == "" {
			nFrozen++
		}
		if op, ok := strings.CutPrefix(reason, "unsupported op "); ok {
			for _, o := range strings.Split(op, ",") {
				missing[o]++
			}
			reason = "unsupported op"
		}
		switch {
		case reason != "":
			skipped[reason]++
			skippedNames[reason] = append(skippedNames[reason], name)
		case err != nil:
			failed = append(failed, name)
			t.Errorf("%s: %v", name, err)
		default:
			passed = append(passed, name)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ONNX node tests: %d in all, %d run, %d passed, %d failed, %d skipped\n",
		len(dirs), len(passed)+len(failed), len(passed), len(failed), len(dirs)-len(passed)-len(failed))
	fmt.Fprintf(&b, "  (%d of the tests run take a shape or axes operand as a graph input: it is imported as a constant from the test data)\n", nFrozen)
	reasons := make([]string, 0, len(skipped))
	for r := range skipped {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if skipped[reasons[i]] != skipped[reasons[j]] {
			return skipped[reasons[i]] > skipped[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	for _, r := range reasons {
		fmt.Fprintf(&b, "  skipped %4d  %s", skipped[r], r)
		if r != "unsupported op" {
			fmt.Fprintf(&b, ": %s", strings.Join(skippedNames[r], " "))
		}
		b.WriteString("\n")
	}
	for _, f := range failed {
		fmt.Fprintf(&b, "  failed        %s\n", f)
	}
	fmt.Fprintf(&b, "  passed: %s\n", strings.Join(passed, " "))
	ops := make([]string, 0, len(missing))
	for o := range missing {
		ops = append(ops, o)
	}
	sort.Slice(ops, func(i, j int) bool {
		if missing[ops[i]] != missing[ops[j]] {
			return missing[ops[i]] > missing[ops[j]]
		}
		return ops[i] < ops[j]
	})
	b.WriteString("  unsupported ops by the number of tests that use them:")
	for _, o := range ops {
		fmt.Fprintf(&b, " %s %d", o, missing[o])
	}
	b.WriteString("\n")
	t.Log("\n" + b.String())
}

// runNodeTest imports and runs one test directory. A non-empty reason means the
// test was skipped.
func runNodeTest(dir string) (reason string, frozen bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return "no model.onnx", false, nil
	}
	m, err := decodeModel(data)
	if err != nil || m.graph == nil {
		return "", false, fmt.Errorf("decode: %v", err)
	}
	var ops []string
	for _, n := range m.graph.nodes {
		if !supportedOps[n.opType] || (n.domain != "" && n.domain != "ai.onnx") {
			ops = append(ops, n.opType)
		}
	}
	if len(ops) > 0 {
		sort.Strings(ops)
		return "unsupported op " + strings.Join(slices.Compact(ops), ","), false, nil
	}
	set := filepath.Join(dir, "test_data_set_0")
	inits := map[string]bool{}
	for _, p := range m.graph.initializer {
		inits[p.name] = true
	}
	inputs := map[string]*Tensor{}
	k := 0
	for _, in := range m.graph.inputs {
		if inits[in.name] {
			continue
		}
		if !in.tensor {
			return "non-tensor input (sequence, optional, map)", false, nil
		}
		t, err := readTensor(filepath.Join(set, fmt.Sprintf("input_%d.pb", k)))
		k++
		if err != nil {
			var u *Unsupported
			if errors.As(err, &u) {
				return "input " + u.Error(), false, nil
			}
			if os.IsNotExist(errors.Unwrap(err)) || os.IsNotExist(err) {
				continue // an optional input left out
			}
			return "", false, err
		}
		inputs[in.name] = t
	}
	o := Options{Constants: map[string]*Tensor{}}
	for {
		mod, err := Import(data, o)
		var u *Unsupported
		if errors.As(err, &u) && u.What == "non-constant input" && inputs[u.Detail] != nil && o.Constants[u.Detail] == nil {
			o.Constants[u.Detail] = inputs[u.Detail] // a shape or axes operand fed as a graph input
			continue
		}
		if errors.As(err, &u) {
			what := u.What
			if u.What == "attribute" || u.What == "dtype" {
				what += " " + u.Detail
			}
			return "unsupported " + what, false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("import: %v", err)
		}
		g := mod.Graph("forward")
		frozen = len(o.Constants) > 0
		bind, err := interp.InitState(g)
		if err != nil {
			return "", frozen, err
		}
		for _, in := range g.Inputs {
			if in.Init != nil {
				continue
			}
			t := inputs[in.Name]
			if t == nil {
				return "", frozen, fmt.Errorf("no test data for input %q", in.Name)
			}
			if t.DType.IsFloat() {
				bind[in.Name] = interp.FromFloats(in.Type, t.F)
			} else {
				bind[in.Name] = interp.FromInts(in.Type, t.I)
			}
		}
		outs, err := interp.Run(g, bind)
		if err != nil {
			return "", frozen, fmt.Errorf("run: %v", err)
		}
		for j, out := range m.graph.outputs {
			want, err := readTensor(filepath.Join(set, fmt.Sprintf("output_%d.pb", j)))
			if err != nil {
				var u *Unsupported
				if errors.As(err, &u) {
					return "output " + u.Error(), frozen, nil
				}
				return "", frozen, err
			}
			if err := compare(outs[out.name], want); err != nil {
				return "", frozen, fmt.Errorf("output %q: %v", out.name, err)
			}
		}
		return "", frozen, nil
	}
}

func readTensor(path string) (*Tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTensor(b)
}

// compare checks got against want with ONNX's tolerances.
func compare(got *interp.Tensor, want *Tensor) error {
	if got == nil {
		return errors.New("missing")
	}
	if got.Type.DType != want.DType || fmt.Sprint(got.Type.Shape) != fmt.Sprint(nonNil(want.Shape)) {
		return fmt.Errorf("got %v, want %v", got.Type, want.Type())
	}
	if !want.DType.IsFloat() {
		for k, v := range want.I {
			if got.I[k] != v {
				return fmt.Errorf("element %d: got %d, want %d", k, got.I[k], v)
			}
		}
		return nil
	}
	for k, w := range want.F {
		g := got.F[k]
		switch {
		case math.IsNaN(w) && math.IsNaN(g), g == w:
		case math.Abs(g-w) > atol+rtol*math.Abs(w) || math.IsNaN(g):
			return fmt.Errorf("element %d: got %v, want %v", k, g, w)
		}
	}
	return nil
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}
