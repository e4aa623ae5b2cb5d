package codegen

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/target"
)

// opCase is one small graph whose compiled outputs are checked against the
// reference interpreter.
type opCase struct {
	name     string
	build    func(b *ir.Builder)
	gens     map[string]gen // input generators by name (default "any")
	normwise bool           // norm-wise instead of element-wise relative error
	gemm     bool           // (bf16 cases) the graph has a matrix product
}

// caseFloat is the dtype of the cases' float inputs: f32, or bf16 while
// opCasesOf(ir.BF16) builds them.
var caseFloat = ir.F32

// f32, i64 declare data inputs (f32 is caseFloat).
func f32(b *ir.Builder, name string, shape ...int) string {
	return b.AddInput(name, ir.T(caseFloat, shape...), ir.Data, nil)
}
func i64(b *ir.Builder, name string, shape ...int) string {
	return b.AddInput(name, ir.T(ir.I64, shape...), ir.Data, nil)
}

// unaryCase applies op to an odd-shaped f32 input.
func unaryCase(op, kind string) opCase {
	return opCase{name: op + "_" + kind, gens: map[string]gen{"x": {kind: kind}}, build: func(b *ir.Builder) {
		b.Output("y", b.Unary(op, f32(b, "x", 3, 5, 7)))
	}}
}

// binaryCase applies op to two f32 inputs of the given (broadcasting) shapes.
func binaryCase(op, suffix string, xs, ys []int, xg string) opCase {
	return opCase{name: op + "_" + suffix, gens: map[string]gen{"x": {kind: xg}}, build: func(b *ir.Builder) {
		b.Output("z", b.Op(op, nil, f32(b, "x", xs...), f32(b, "y", ys...)))
	}}
}

// opCases covers every op of ir.OpNames() (TestOpCoverage checks that), with
// broadcasting, odd shapes, every reduction loop shape and the batch forms
// of MatMul.
func opCases() []opCase {
	var cs []opCase
	for _, op := range []string{"Identity", "Neg", "Exp", "Recip", "Sigmoid", "Silu"} {
		cs = append(cs, unaryCase(op, "any"))
	}
	for _, op := range []string{"Log", "Sqrt", "Rsqrt"} {
		cs = append(cs, unaryCase(op, "pos"))
	}
	cs = append(cs, unaryCase("Exp", "wide"), unaryCase("Sigmoid", "wide"), unaryCase("Silu", "wide"))
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Max", "Min", "Greater"} {
		cs = append(cs,
			binaryCase(op, "bcast", []int{4, 1, 5}, []int{3, 1}, "any"),
			binaryCase(op, "scalar", nil, []int{2, 3}, "any"),
			binaryCase(op, "same", []int{37}, []int{37}, "any"))
	}
	cs = append(cs, binaryCase("Pow", "bcast", []int{4, 1, 5}, []int{3, 1}, "pos"), binaryCase("Pow", "rows", []int{5, 7}, []int{7}, "pos"))
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Max", "Min", "Greater"} {
		cs = append(cs, opCase{name: op + "_i64", gens: map[string]gen{"x": {kind: "int", n: 1000}, "y": {kind: "nz"}}, build: func(b *ir.Builder) {
			b.Output("z", b.Op(op, nil, i64(b, "x", 2, 9), i64(b, "y", 9)))
		}})
	}
	cs = append(cs,
		opCase{name: "Neg_i64", gens: map[string]gen{"x": {kind: "int", n: 100}}, build: func(b *ir.Builder) {
			b.Output("y", b.Unary("Neg", i64(b, "x", 11)))
		}},
		opCase{name: "Const", build: func(b *ir.Builder) {
			b.Output("c", b.Const(-1.5, ir.T(ir.F32, 3, 17)))
			b.Output("k", b.Const(3.7, ir.T(ir.I64, 5)))
			b.Output("s", b.Const(2, ir.T(ir.F32)))
		}},
		opCase{name: "Cast", gens: map[string]gen{"i": {kind: "int", n: 1 << 40}}, build: func(b *ir.Builder) {
			x := f32(b, "x", 4, 6)
			b.Output("toI64", b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, b.Mul(x, b.Scalar(10, x))))
			b.Output("toF64", b.Op("Cast", ir.Attrs{"to": ir.String("f64")}, x))
			b.Output("roundTrip", b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, b.Op("Cast", ir.Attrs{"to": ir.String("f64")}, x)))
			b.Output("fromI64", b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, i64(b, "i", 7)))
			b.Output("toI32", b.Op("Cast", ir.Attrs{"to": ir.String("i32")}, i64(b, "j", 7)))
		}},
		// The 8-bit optimizer's pieces: the nearest code index over several
		// decades, its round trip through u8 and the code table, and the
		// block absmax.
		opCase{name: "Quant8", build: func(b *ir.Builder) {
			x := f32(b, "x", 3, 301)
			u8 := func(v string) string { return b.Op("Cast", ir.Attrs{"to": ir.String("u8")}, v) }
			back := func(v string) string { return b.Op("Cast", ir.Attrs{"to": ir.String(caseFloat.String())}, v) }
			for i, scale := range []float64{0.5, 1e-3, 1e-6} {
				v := b.Mul(x, b.Scalar(scale, x))
				qs, qu := u8(b.Unary("Quant8Signed", v)), u8(b.Unary("Quant8Unsigned", b.Mul(v, v)))
				b.Output(fmt.Sprintf("qs%d", i), qs)
				b.Output(fmt.Sprintf("qu%d", i), qu)
				b.Output(fmt.Sprintf("ds%d", i), b.Unary("Dequant8Signed", back(qs)))
				b.Output(fmt.Sprintf("du%d", i), b.Unary("Dequant8Unsigned", back(qu)))
			}
			b.Output("absmax", b.Op("AbsMaxLast", nil, x))
		}},
		// A fused chain: RMSNorm (x·x → mean → +ε → rsqrt → x·r·w) then SwiGLU.
		opCase{name: "FusedRMSNormSwiGLU", normwise: true, build: func(b *ir.Builder) {
			x, w := f32(b, "x", 3, 5, 16), f32(b, "w", 16)
			ms := b.Reduce("ReduceMean", b.Mul(x, x), true, -1)
			r := b.Unary("Rsqrt", b.Add(ms, b.Scalar(1e-6, ms)))
			h := b.Mul(b.Mul(x, r), w)
			b.Output("h", h)
			b.Output("g", b.Mul(b.Unary("Silu", h), b.Unary("Sigmoid", x)))
		}},
		opCase{name: "FusedMultiOutput", build: func(b *ir.Builder) {
			x, y := f32(b, "x", 6, 10), f32(b, "y", 10)
			s := b.Add(x, y)
			b.Output("s", s)
			b.Output("p", b.Mul(s, b.Sub(x, b.Scalar(0.5, x))))
			b.Output("n", b.Unary("Neg", s))
		}},
	)
	// Reductions: innermost reduced (register accumulator), innermost kept
	// (row accumulator), middle axes, everything, keepdims, and a fused
	// producer whose intermediate value is also written.
	for _, rc := range []struct {
		name  string
		op    string
		shape []int
		axes  []int
		keep  bool
	}{
		{"Sum_inner", "ReduceSum", []int{5, 37}, []int{1}, false},
		{"Sum_outer", "ReduceSum", []int{37, 5}, []int{0}, false},
		{"Sum_middle", "ReduceSum", []int{3, 4, 5}, []int{1}, true},
		{"Sum_outer2", "ReduceSum", []int{3, 4, 5}, []int{0, 2}, true},
		{"Sum_mixed", "ReduceSum", []int{2, 3, 4, 5}, []int{0, 2}, false},
		{"Mean_all", "ReduceMean", []int{3, 4, 5}, []int{0, 1, 2}, false},
		{"Mean_last", "ReduceMean", []int{2, 3, 33}, []int{-1}, true},
		{"Mean_first_long", "ReduceMean", []int{100, 3}, []int{0}, false},
		{"Sum_inner_outer", "ReduceSum", []int{3, 4, 5, 40}, []int{1, 3}, false},
		{"Sum_inner_short", "ReduceSum", []int{6, 7}, []int{1}, true},
	} {
		cs = append(cs, opCase{name: "Reduce" + rc.name, normwise: true, build: func(b *ir.Builder) {
			b.Output("y", b.Reduce(rc.op, f32(b, "x", rc.shape...), rc.keep, rc.axes...))
		}})
	}
	cs = append(cs, opCase{name: "ReduceInnerFusedWithOutput", normwise: true, build: func(b *ir.Builder) {
		x, y, z := f32(b, "x", 4, 37), f32(b, "y", 4, 1), f32(b, "z", 37)
		s := b.Mul(b.Add(x, y), z)
		b.Output("s", s)
		b.Output("m", b.Reduce("ReduceMean", b.Unary("Exp", s), true, 1))
	}})
	cs = append(cs, opCase{name: "ReduceFusedWithOutput", normwise: true, build: func(b *ir.Builder) {
		x, y := f32(b, "x", 4, 9), f32(b, "y", 4, 9)
		s := b.Add(x, y)
		b.Output("s", s)
		b.Output("m", b.Reduce("ReduceSum", b.Mul(s, s), false, 0))
	}})
	cs = append(cs,
		opCase{name: "Reshape", build: func(b *ir.Builder) {
			x := f32(b, "x", 4, 6)
			b.Output("view", b.Reshape(x, 2, 12))
			b.Output("chain", b.Reshape(b.Unary("Neg", x), 3, 8))
			b.Output("ids", b.Reshape(i64(b, "i", 2, 3), 6))
		}},
		opCase{name: "ReshapeThenKernel", build: func(b *ir.Builder) {
			x := f32(b, "x", 4, 6)
			b.Output("y", b.Transpose(b.Reshape(b.Unary("Exp", x), 2, 2, 6), 2, 0, 1))
		}},
		opCase{name: "Expand", build: func(b *ir.Builder) {
			b.Output("y", b.Op("Expand", ir.Attrs{"shape": ir.Ints(2, 3, 4)}, f32(b, "x", 3, 1)))
		}},
		opCase{name: "Transpose", build: func(b *ir.Builder) {
			b.Output("y", b.Transpose(f32(b, "x", 3, 4, 5), 2, 0, 1))
			b.Output("z", b.Transpose(f32(b, "w", 2, 3, 4, 5), 0, 2, 1, 3))
		}},
		opCase{name: "Slice", build: func(b *ir.Builder) {
			b.Output("y", b.Slice(f32(b, "x", 3, 7, 2), 1, 2, 5))
			b.Output("labels", b.Slice(i64(b, "ids", 2, 9), 1, 1, 9))
		}},
		opCase{name: "Concat", build: func(b *ir.Builder) {
			b.Output("y", b.Op("Concat", ir.Attrs{"axis": ir.Int(1)}, f32(b, "x0", 2, 3), f32(b, "x1", 2, 1), f32(b, "x2", 2, 4)))
			b.Output("ids", b.Op("Concat", ir.Attrs{"axis": ir.Int(0)}, i64(b, "i0", 2), i64(b, "i1", 3)))
		}},
		opCase{name: "Gather", gens: map[string]gen{"idx": {kind: "idx", n: 10}}, build: func(b *ir.Builder) {
			b.Output("y", b.Op("Gather", nil, f32(b, "table", 10, 4), i64(b, "idx", 2, 3)))
		}},
		opCase{name: "GatherScalarRows", gens: map[string]gen{"idx": {kind: "idx", n: 50}}, build: func(b *ir.Builder) {
			b.Output("y", b.Op("Gather", nil, f32(b, "table", 50, 1), i64(b, "idx", 33)))
		}},
		opCase{name: "ScatterAdd", normwise: true, gens: map[string]gen{"idx": {kind: "idx", n: 5}}, build: func(b *ir.Builder) {
			b.Output("y", b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(5)}, f32(b, "u", 2, 3, 4), i64(b, "idx", 2, 3)))
		}},
		opCase{name: "ScatterAddFlat", gens: map[string]gen{"idx": {kind: "support", n: 300}}, build: func(b *ir.Builder) {
			b.Output("y", b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(300)}, f32(b, "u", 40, 1), i64(b, "idx", 40)))
		}},
		opCase{name: "Softmax", normwise: true, build: func(b *ir.Builder) {
			b.Output("y", b.Op("Softmax", nil, f32(b, "x", 3, 37)))
			b.Output("z", b.Op("Softmax", ir.Attrs{"axis": ir.Int(1)}, f32(b, "w", 2, 5, 3)))
		}},
		opCase{name: "SoftmaxCrossEntropy", normwise: true, gens: map[string]gen{"labels": {kind: "idx", n: 11}}, build: func(b *ir.Builder) {
			logits, labels := f32(b, "logits", 2, 3, 11), i64(b, "labels", 2, 3)
			b.Output("loss", b.Op("SoftmaxCrossEntropy", nil, logits, labels))
			b.Output("dlogits", b.Op("SoftmaxCrossEntropyGrad", nil, logits, labels, f32(b, "dloss", 2, 3)))
		}},
		opCase{name: "SoftmaxCrossEntropyLongRows", normwise: true, gens: map[string]gen{"labels": {kind: "idx", n: 37}}, build: func(b *ir.Builder) {
			logits, labels := f32(b, "logits", 5, 37), i64(b, "labels", 5)
			b.Output("loss", b.Op("SoftmaxCrossEntropy", nil, logits, labels))
			b.Output("dlogits", b.Op("SoftmaxCrossEntropyGrad", nil, logits, labels, f32(b, "dloss", 5)))
		}},
		opCase{name: "RoPE", normwise: true, build: func(b *ir.Builder) {
			x := f32(b, "x", 2, 3, 8, 6)
			b.Output("y", b.Op("RoPE", nil, x))
			b.Output("inv", b.Op("RoPE", ir.Attrs{"inverse": ir.Int(1), "base": ir.Float(500)}, x))
			b.Output("seq1", b.Op("RoPE", ir.Attrs{"seq_axis": ir.Int(1)}, f32(b, "w", 2, 5, 2, 8)))
		}},
		opCase{name: "CausalMask", build: func(b *ir.Builder) {
			b.Output("y", b.Op("CausalMask", nil, f32(b, "x", 2, 5, 5)))
			b.Output("z", b.Op("CausalMask", ir.Attrs{"fill": ir.String("zero")}, f32(b, "w", 4, 6)))
		}},
		opCase{name: "MatMul", normwise: true, build: func(b *ir.Builder) {
			b.Output("nn", b.MatMul(f32(b, "a", 5, 7), f32(b, "b", 7, 3), false, false))
			b.Output("tn", b.MatMul(f32(b, "at", 7, 5), f32(b, "b2", 7, 3), true, false))
			b.Output("nt", b.MatMul(f32(b, "a3", 5, 7), f32(b, "bt", 3, 7), false, true))
			b.Output("tt", b.MatMul(f32(b, "at4", 7, 5), f32(b, "bt4", 3, 7), true, true))
		}},
		opCase{name: "MatMulBatched", normwise: true, build: func(b *ir.Builder) {
			b.Output("same", b.MatMul(f32(b, "a", 2, 3, 4, 5), f32(b, "b", 2, 3, 5, 6), false, false))
			b.Output("sharedB", b.MatMul(f32(b, "a2", 2, 4, 5), f32(b, "b2", 5, 6), false, false))
			b.Output("sharedBt", b.MatMul(f32(b, "a3", 2, 5, 4), f32(b, "b3", 5, 6), true, false))
			b.Output("sharedA", b.MatMul(f32(b, "a4", 4, 5), f32(b, "b4", 2, 6, 5), false, true))
			b.Output("bcast", b.MatMul(f32(b, "a5", 2, 1, 4, 5), f32(b, "b5", 3, 5, 6), false, false))
			b.Output("self", b.MatMul(f32(b, "a6", 6, 6), "a6", false, true))
		}},
		opCase{name: "Linear", normwise: true, build: func(b *ir.Builder) {
			b.Output("y", b.Op("Linear", nil, f32(b, "x", 2, 3, 5), f32(b, "w", 4, 5)))
		}},
		lowRankCase("LowRankSparseAdd"),
		opCase{name: "DeadCode", build: func(b *ir.Builder) {
			x := f32(b, "x", 4, 4)
			b.MatMul(x, x, false, false) // read by nothing: no kernel
			b.Op("Softmax", nil, x)
			b.Unary("Exp", x)
			b.Output("y", b.Unary("Neg", x))
		}},
		opCase{name: "ZeroSized", build: func(b *ir.Builder) {
			e := f32(b, "e", 3, 0)
			b.Output("sum", b.Reduce("ReduceSum", e, false, 1))
			b.Output("mean", b.Reduce("ReduceMean", e, true, 1))
			b.Output("exp", b.Unary("Exp", f32(b, "z", 0, 4)))
			b.Output("mm", b.MatMul(f32(b, "a", 0, 3), f32(b, "b", 3, 2), false, false))
			b.Output("k0", b.MatMul(e, f32(b, "c", 0, 2), false, false))
			b.Output("cat", b.Op("Concat", ir.Attrs{"axis": ir.Int(1)}, f32(b, "x", 3, 2), e))
			b.Output("soft", b.Op("Softmax", nil, e))
		}},
	)
	return cs
}

// lowRankCase is an SLTrain layer: x [3,5,16], W [12,16] = B[12,4]·A[4,16]·2 + S.
func lowRankCase(name string) opCase {
	return opCase{name: name, normwise: true, gens: map[string]gen{"index": {kind: "support", n: 12 * 16}}, build: func(b *ir.Builder) {
		x := f32(b, "x", 3, 5, 16)
		B, A := f32(b, "B", 12, 4), f32(b, "A", 4, 16)
		v, idx := f32(b, "values", 20), i64(b, "index", 20)
		b.Output("y", b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(2)}, x, B, A, v, idx))
	}}
}

// buildCases builds one module holding a graph per case.
func buildCases(t testing.TB, cases []opCase) *ir.Module {
	t.Helper()
	m := &ir.Module{}
	for _, c := range cases {
		b := ir.NewBuilder(c.name)
		c.build(b)
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		m.Graphs = append(m.Graphs, b.G)
	}
	return m
}

var (
	opsOnce sync.Once
	opsArt  *artifact.Artifact
	opsErr  error
)

// opsArtifact compiles all op cases into one artifact, once per test binary.
func opsArtifact(t testing.TB) *artifact.Artifact {
	t.Helper()
	opsOnce.Do(func() {
		opsArt, opsErr = compilePlanned(buildCases(t, opCases()), Options{})
	})
	if opsErr != nil {
		t.Fatal(opsErr)
	}
	return opsArt
}

// seedOf derives a stable seed from a name.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// inputsFor draws random inputs for every input of g.
func inputsFor(g *ir.Graph, gens map[string]gen) map[string]*interp.Tensor {
	r := rand.New(rand.NewPCG(seedOf(g.Name), 1))
	vals := map[string]*interp.Tensor{}
	for _, in := range g.Inputs {
		gg, ok := gens[in.Name]
		if !ok {
			gg = gen{kind: "any"}
		}
		if gg.kind == "nz" {
			v := random(r, in.Type, gen{n: 7})
			for i := range v.I {
				if v.I[i] == 0 {
					v.I[i] = 3
				}
			}
			vals[in.Name] = v
			continue
		}
		vals[in.Name] = random(r, in.Type, gg)
	}
	return vals
}

// checkCase runs case c's graph from art with 1, 2 and 3 threads against the
// interpreter, and checks that the thread count does not change a bit.
func checkCase(t *testing.T, m *machine, g *ir.Graph, c opCase) {
	checkCaseTol(t, m, g, c, 1e-5)
}

// checkCaseTol is checkCase with relative tolerance tol. Inputs are rounded
// to their dtype first, so that the kernel and the interpreter read the same
// values.
func checkCaseTol(t *testing.T, m *machine, g *ir.Graph, c opCase, tol float64) {
	vals := inputsFor(g, c.gens)
	for _, v := range vals {
		for i := range v.F {
			v.F[i] = interp.RoundTo(v.Type.DType, v.F[i])
		}
	}
	want, err := interp.Run(g, vals)
	if err != nil {
		t.Fatal(err)
	}
	var first map[string]*interp.Tensor
	for _, nth := range []int{1, 2, 3, 8} {
		in := map[string]*interp.Tensor{}
		for k, v := range vals {
			in[k] = v.Clone()
		}
		got := m.run(t, g.Name, in, nth)
		names := make([]string, 0, len(want))
		for name := range want {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if err := compareTensors(got[name], want[name], tol, c.normwise); err != nil {
				t.Errorf("%d threads: output %q: %v", nth, name, err)
			}
			if first != nil {
				if err := compareTensors(got[name], first[name], 0, false); err != nil {
					t.Errorf("%d threads differ from 1 thread: output %q: %v", nth, name, err)
				}
			}
		}
		if first == nil {
			first = got
		}
	}
}

func TestOps(t *testing.T) {
	art := opsArtifact(t)
	m := load(t, art)
	cases := opCases()
	mod := buildCases(t, cases)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkCase(t, m, mod.Graphs[i], c) })
	}
}

// TestOpCoverage checks that the op cases exercise every op of the IR.
func TestOpCoverage(t *testing.T) {
	seen := map[string]bool{}
	for _, g := range buildCases(t, opCases()).Graphs {
		for _, n := range g.Nodes {
			seen[n.Op] = true
		}
	}
	for _, op := range ir.OpNames() {
		if !seen[op] {
			t.Errorf("no test case uses op %s", op)
		}
	}
}

// TestSLTrainLowerings checks both lowerings of LowRankSparseAdd, forced.
func TestSLTrainLowerings(t *testing.T) {
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		for _, mode := range []string{"merged", "factored"} {
			for _, cpu := range []string{"", "x86-64-v3"} {
				t.Run(dt.String()+"/"+mode+"/cpu="+cpu, func(t *testing.T) {
					caseFloat = dt
					c := lowRankCase("lrsa_" + mode)
					mod := buildCases(t, []opCase{c})
					caseFloat = ir.F32
					art, err := compilePlanned(mod, Options{SLTrainLowering: mode, Target: target.NewCPU(cpu, "")})
					if err != nil {
						t.Fatal(err)
					}
					tol := 1e-5
					if dt == ir.BF16 {
						tol = 1.0 / 128 // one bf16 ulp, norm-wise: f32 accumulation before the rounding
					}
					checkCaseTol(t, load(t, art), mod.Graphs[0], c, tol)
				})
			}
		}
	}
}

// TestMixedProducts runs bf16-mixed's matrix products against the
// interpreter: MatMul and Linear of bf16 operands with an f32 out_dtype, and
// LowRankSparseAdd's mixed form (bf16 x, f32 factors) in both lowerings, and
// the loss gradient of bf16 logits with an f32 dloss, on
// this host and for a target without AVX-512 (the fallback widens bf16 to f32).
// The products are exact in f32 and only the summation order differs, but
// merged and factored round different things (see lowRankSparseAddMixed):
// factored is checked to one bf16 ulp against the interpreter's merged
// rounding.
func TestMixedProducts(t *testing.T) {
	bf := func(b *ir.Builder, name string, shape ...int) string {
		return b.AddInput(name, ir.T(ir.BF16, shape...), ir.Data, nil)
	}
	outF32 := ir.Attrs{"out_dtype": ir.String("f32")}
	mm := func(b *ir.Builder, x, y string, ta, tb int64) string {
		return b.Op("MatMul", ir.Attrs{"transpose_a": ir.Int(ta), "transpose_b": ir.Int(tb), "out_dtype": ir.String("f32")}, x, y)
	}
	products := opCase{name: "mixed_products", normwise: true, build: func(b *ir.Builder) {
		b.Output("nn", mm(b, bf(b, "a", 5, 37), bf(b, "b", 37, 19), 0, 0))
		b.Output("tn", mm(b, bf(b, "at", 37, 5), bf(b, "b2", 37, 3), 1, 0))
		b.Output("nt", mm(b, bf(b, "a3", 5, 37), bf(b, "bt", 3, 37), 0, 1))
		b.Output("batched", mm(b, bf(b, "a4", 2, 3, 4, 33), bf(b, "b4", 2, 3, 33, 6), 0, 0))
		b.Output("linear", b.Op("Linear", outF32, bf(b, "x", 2, 3, 35), bf(b, "w", 17, 35)))
	}}
	// The loss gradient from saved bf16 logits, f32 dloss and result (rows
	// long enough for the vector loop and a tail).
	ceGrad := opCase{name: "mixed_ce_grad", normwise: true, gens: map[string]gen{"labels": {kind: "idx", n: 37}}, build: func(b *ir.Builder) {
		b.Output("dlogits", b.Op("SoftmaxCrossEntropyGrad", nil, bf(b, "logits", 5, 37), i64(b, "labels", 5), f32(b, "dloss", 5)))
	}}
	lrsa := func(mode string) opCase {
		return opCase{name: "mixed_lrsa_" + mode, normwise: true, gens: map[string]gen{"index": {kind: "support", n: 12 * 36}}, build: func(b *ir.Builder) {
			x := bf(b, "x", 3, 5, 36)
			B, A := f32(b, "B", 12, 4), f32(b, "A", 4, 36)
			v, idx := f32(b, "values", 40), i64(b, "index", 40)
			b.Output("y", b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(2), "out_dtype": ir.String("f32")}, x, B, A, v, idx))
		}}
	}
	for _, mode := range []string{"merged", "factored"} {
		for _, cpu := range []string{"", "x86-64-v3"} {
			t.Run(mode+"/cpu="+cpu, func(t *testing.T) {
				cases := []opCase{products, lrsa(mode), ceGrad}
				mod := buildCases(t, cases)
				art, err := compilePlanned(mod, Options{SLTrainLowering: mode, Target: target.NewCPU(cpu, "")})
				if err != nil {
					t.Fatal(err)
				}
				m := load(t, art)
				checkCaseTol(t, m, mod.Graphs[0], cases[0], 1e-6) // exact products, f32 sums
				tol := 1e-6
				if mode == "factored" {
					tol = 1.0 / 128
				}
				checkCaseTol(t, m, mod.Graphs[1], cases[1], tol)
				checkCaseTol(t, m, mod.Graphs[2], cases[2], 1e-6)
			})
		}
	}
}

// bf16Cases are the op cases with bf16 float inputs.
func bf16Cases() []opCase {
	caseFloat = ir.BF16
	defer func() { caseFloat = ir.F32 }()
	var cs []opCase
	for _, c := range opCases() {
		// Build now, while caseFloat is bf16.
		b := ir.NewBuilder(c.name)
		c.build(b)
		g := b.G
		if slices.ContainsFunc(g.Nodes, func(n *ir.Node) bool {
			return n.Op == "MatMul" || n.Op == "Linear" || n.Op == "LowRankSparseAdd"
		}) {
			c.gemm = true
		}
		c.build = func(b *ir.Builder) { *b.G = *g.Clone() }
		cs = append(cs, c)
	}
	return cs
}

// TestOpsBF16 runs the element-wise, reduction, movement and nn kernels on
// bf16 values (loaded into f32, computed in f32, rounded to bf16 at every
// node) against the interpreter, which rounds at the same points, on this
// host and for a target without AVX-512: bit for bit, but for softmax and
// cross-entropy (see below).
func TestOpsBF16(t *testing.T) {
	cases := bf16Cases()
	mod := buildCases(t, cases)
	for _, cpu := range []string{"", "x86-64-v3"} {
		t.Run("cpu="+cpu, func(t *testing.T) {
			art, err := compilePlanned(mod, Options{Target: target.NewCPU(cpu, "")})
			if err != nil {
				t.Fatal(err)
			}
			m := load(t, art)
			for i, c := range cases {
				tol := 1e-9 // bit for bit: same f32 math, same rounding points
				if strings.HasPrefix(c.name, "Softmax") || c.gemm {
					// Softmax kernels keep exp(x − m) in the bf16 output
					// between their passes, a second rounding the interpreter
					// does not make; GEMMs accumulate in f32, not f64, before
					// the rounding to bf16: one bf16 ulp (2⁻⁸ relative).
					tol = 1.0 / 128
				}
				t.Run(c.name, func(t *testing.T) { checkCaseTol(t, m, mod.Graphs[i], c, tol) })
			}
		})
	}
}
