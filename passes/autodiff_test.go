package passes

import (
	"math"
	"slices"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// fdHarness builds an F64 test graph and remembers the input values: the float
// inputs made with x are the ones differentiated.
type fdHarness struct {
	b    *ir.Builder
	rng  *ir.RNG
	vals map[string]*interp.Tensor
	wrt  []string
}

func newHarness(seed uint64) *fdHarness {
	return &fdHarness{b: ir.NewBuilder("fd"), rng: ir.NewRNG(seed), vals: map[string]*interp.Tensor{}}
}

// x adds a differentiated f64 input with values uniform in [lo, hi).
func (h *fdHarness) x(name string, lo, hi float64, shape ...int) string {
	v := h.data(name, lo, hi, shape...)
	h.wrt = append(h.wrt, v)
	return v
}

// data adds a non-differentiated f64 input with values uniform in [lo, hi).
func (h *fdHarness) data(name string, lo, hi float64, shape ...int) string {
	t := ir.T(ir.F64, shape...)
	v := make([]float64, t.NumElements())
	for i := range v {
		v[i] = lo + (hi-lo)*h.rng.Float64()
	}
	h.vals[name] = interp.FromFloats(t, v)
	return h.b.AddInput(name, t, ir.Data, nil)
}

// ints adds an i64 input with the given values.
func (h *fdHarness) ints(name string, v []int64, shape ...int) string {
	t := ir.T(ir.I64, shape...)
	h.vals[name] = interp.FromInts(t, v)
	return h.b.AddInput(name, t, ir.Data, nil)
}

// fdCase checks one gradient rule: build returns the output of a graph that
// uses op; the harness projects it to a scalar loss with random weights.
type fdCase struct {
	name  string
	op    string
	build func(h *fdHarness) string
}

// un is a case applying a unary op to one input in [lo, hi).
func un(op string, lo, hi float64) fdCase {
	return fdCase{op, op, func(h *fdHarness) string { return h.b.Unary(op, h.x("x", lo, hi, 3, 4)) }}
}

// bin is a case applying a binary op to inputs of shapes sx and sy.
func bin(name, op string, lo, hi float64, sx, sy []int) fdCase {
	return fdCase{name, op, func(h *fdHarness) string {
		return h.b.Op(op, nil, h.x("x", lo, hi, sx...), h.x("y", lo, hi, sy...))
	}}
}

// mm is a MatMul case with the given shapes and transposes.
func mm(name string, sa, sb []int, ta, tb bool) fdCase {
	return fdCase{name, "MatMul", func(h *fdHarness) string {
		return h.b.MatMul(h.x("a", -1, 1, sa...), h.x("b", -1, 1, sb...), ta, tb)
	}}
}

func s(v ...int) []int { return v }

var fdCases = []fdCase{
	{"Identity", "Identity", func(h *fdHarness) string { return h.b.Unary("Identity", h.x("x", -1, 1, 3, 4)) }},
	un("Neg", -1, 1), un("Exp", -1, 1), un("Log", 0.5, 2), un("Sqrt", 0.5, 2), un("Rsqrt", 0.5, 2),
	un("Recip", 0.5, 2), un("Sigmoid", -2, 2), un("Silu", -2, 2),
	bin("Add", "Add", -1, 1, s(3, 4), s(3, 4)),
	bin("Add/broadcast", "Add", -1, 1, s(2, 3, 4), s(3, 1)),
	{"Add/fan-out", "Add", func(h *fdHarness) string {
		x := h.x("x", -1, 1, 3)
		return h.b.Add(h.b.Mul(x, x), x)
	}},
	bin("Sub/broadcast", "Sub", -1, 1, s(2, 1, 4), s(3, 4)),
	bin("Mul/broadcast", "Mul", -1, 1, s(4), s(2, 3, 4)),
	bin("Mul/scalar", "Mul", -1, 1, nil, s(2, 3)),
	bin("Div/broadcast", "Div", 0.5, 2, s(2, 3), s(2, 1)),
	bin("Pow/broadcast", "Pow", 0.5, 1.5, s(2, 3), s(3)),
	bin("Max/broadcast", "Max", -1, 1, s(2, 3), s(3)),
	bin("Min/broadcast", "Min", -1, 1, s(4, 1), s(4, 3)),
	{"Cast", "Cast", func(h *fdHarness) string {
		// f64→f64 keeps the check exact; the int→float Cast carries no gradient.
		x := h.b.Op("Cast", ir.Attrs{"to": ir.String("f64")}, h.x("x", -1, 1, 2, 3))
		k := h.b.Op("Cast", ir.Attrs{"to": ir.String("f64")}, h.ints("k", []int64{1, 2, 3}, 3))
		return h.b.Mul(x, k)
	}},
	mm("MatMul", s(3, 4), s(4, 5), false, false),
	mm("MatMul/ta", s(4, 3), s(4, 5), true, false),
	mm("MatMul/tb", s(3, 4), s(5, 4), false, true),
	mm("MatMul/ta+tb", s(4, 3), s(5, 4), true, true),
	mm("MatMul/batch·matrix", s(2, 3, 4), s(4, 5), false, false),
	mm("MatMul/batch·matrixᵀ", s(2, 3, 4), s(5, 4), false, true),
	mm("MatMul/batchᵀ·matrix", s(2, 4, 3), s(4, 5), true, false),
	mm("MatMul/matrix·batch", s(3, 4), s(2, 4, 5), false, false),
	mm("MatMul/matrixᵀ·batchᵀ", s(4, 3), s(2, 5, 4), true, true),
	mm("MatMul/broadcast batch", s(2, 1, 3, 4), s(3, 4, 5), false, false),
	mm("MatMul/broadcast batch ta+tb", s(1, 3, 4, 3), s(2, 1, 5, 4), true, true),
	mm("MatMul/batch·batch", s(2, 3, 4), s(2, 5, 4), false, true),
	{"Linear", "Linear", func(h *fdHarness) string {
		return h.b.Op("Linear", nil, h.x("x", -1, 1, 2, 3, 4), h.x("w", -1, 1, 5, 4))
	}},
	{"Linear/vector", "Linear", func(h *fdHarness) string {
		return h.b.Op("Linear", nil, h.x("x", -1, 1, 4), h.x("w", -1, 1, 5, 4))
	}},
	{"LowRankSparseAdd", "LowRankSparseAdd", func(h *fdHarness) string {
		x := h.x("x", -1, 1, 2, 3, 6)
		bm := h.x("B", -1, 1, 5, 2)
		am := h.x("A", -1, 1, 2, 6)
		v := h.x("values", -1, 1, 7)
		idx := h.ints("index", []int64{0, 4, 9, 13, 20, 21, 29}, 7)
		return h.b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(1.75)}, x, bm, am, v, idx)
	}},
	{"ReduceSum", "ReduceSum", func(h *fdHarness) string {
		return h.b.Reduce("ReduceSum", h.x("x", -1, 1, 2, 3, 4), false, 1)
	}},
	{"ReduceSum/keepdims", "ReduceSum", func(h *fdHarness) string {
		return h.b.Reduce("ReduceSum", h.x("x", -1, 1, 2, 3, 4), true, 0, -1)
	}},
	{"ReduceSum/all", "ReduceSum", func(h *fdHarness) string {
		return h.b.Reduce("ReduceSum", h.x("x", -1, 1, 2, 3), false, 0, 1)
	}},
	{"ReduceMean", "ReduceMean", func(h *fdHarness) string {
		return h.b.Reduce("ReduceMean", h.x("x", -1, 1, 2, 3, 4), false, -1)
	}},
	{"ReduceMean/keepdims", "ReduceMean", func(h *fdHarness) string {
		return h.b.Reduce("ReduceMean", h.x("x", -1, 1, 2, 3, 4), true, 1, 2)
	}},
	{"Reshape", "Reshape", func(h *fdHarness) string { return h.b.Reshape(h.x("x", -1, 1, 2, 3, 4), 6, -1) }},
	{"Expand", "Expand", func(h *fdHarness) string {
		return h.b.Op("Expand", ir.Attrs{"shape": ir.Ints(2, 3, 4)}, h.x("x", -1, 1, 3, 1))
	}},
	{"Transpose", "Transpose", func(h *fdHarness) string { return h.b.Transpose(h.x("x", -1, 1, 2, 3, 4), 2, 0, 1) }},
	{"Slice", "Slice", func(h *fdHarness) string { return h.b.Slice(h.x("x", -1, 1, 2, 5, 3), 1, 1, 3) }},
	{"Slice/prefix", "Slice", func(h *fdHarness) string { return h.b.Slice(h.x("x", -1, 1, 4, 3), 0, 0, 2) }},
	{"Concat", "Concat", func(h *fdHarness) string {
		return h.b.Op("Concat", ir.Attrs{"axis": ir.Int(1)}, h.x("x", -1, 1, 2, 3), h.x("y", -1, 1, 2, 1), h.x("z", -1, 1, 2, 2))
	}},
	{"Gather", "Gather", func(h *fdHarness) string {
		return h.b.Op("Gather", nil, h.x("table", -1, 1, 5, 3), h.ints("ids", []int64{4, 0, 4, 2, 2, 2}, 2, 3))
	}},
	{"ScatterAdd", "ScatterAdd", func(h *fdHarness) string {
		return h.b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(5)}, h.x("u", -1, 1, 4, 3), h.ints("ids", []int64{1, 3, 1, 0}, 4))
	}},
	{"Softmax", "Softmax", func(h *fdHarness) string { return h.b.Op("Softmax", nil, h.x("x", -2, 2, 3, 5)) }},
	{"Softmax/axis0", "Softmax", func(h *fdHarness) string {
		return h.b.Op("Softmax", ir.Attrs{"axis": ir.Int(0)}, h.x("x", -2, 2, 3, 5))
	}},
	{"SoftmaxCrossEntropy", "SoftmaxCrossEntropy", func(h *fdHarness) string {
		return h.b.Op("SoftmaxCrossEntropy", nil, h.x("logits", -2, 2, 2, 3, 5), h.ints("labels", []int64{0, 4, 2, 2, 1, 3}, 2, 3))
	}},
	{"RoPE", "RoPE", func(h *fdHarness) string { return h.b.Op("RoPE", nil, h.x("x", -1, 1, 2, 4, 6)) }},
	{"RoPE/seq_axis+inverse", "RoPE", func(h *fdHarness) string {
		a := ir.Attrs{"seq_axis": ir.Int(1), "inverse": ir.Int(1), "base": ir.Float(100)}
		return h.b.Op("RoPE", a, h.x("x", -1, 1, 2, 5, 3, 4))
	}},
	{"CausalMask/neg_inf+Softmax", "CausalMask", func(h *fdHarness) string {
		return h.b.Op("Softmax", nil, h.b.Op("CausalMask", nil, h.x("x", -2, 2, 2, 4, 4)))
	}},
	{"CausalMask/zero", "CausalMask", func(h *fdHarness) string {
		return h.b.Op("CausalMask", ir.Attrs{"fill": ir.String("zero")}, h.x("x", -1, 1, 3, 5))
	}},
}

// fdCheck differentiates loss = Σ out·proj (seeded by a runtime scalar) with
// respect to every input made with h.x, runs it through the interpreter and
// compares each gradient with central differences on up to maxEntries entries per
// input. It returns the worst relative error ‖analytic − numeric‖ / ‖numeric‖.
func fdCheck(t *testing.T, h *fdHarness, out string, maxEntries int) {
	t.Helper()
	b := h.b
	proj := h.data("proj", -1, 1, b.Type(out).Shape...)
	loss := b.Mul(out, proj)
	if r := b.Type(loss).Rank(); r > 0 {
		loss = b.Reduce("ReduceSum", loss, false, allAxes(r)...)
	}
	const seedVal = 0.75
	seed := b.AddInput("seed", ir.T(ir.F64), ir.Scalar, nil)
	h.vals[seed] = interp.FromFloats(ir.T(ir.F64), []float64{seedVal})
	lossOnly := b.G.Clone()
	lossOnly.Outputs = []*ir.Output{{Name: "loss", Value: loss}}
	grads, err := Gradients(b, loss, h.wrt, seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range h.wrt {
		if !b.Type(grads[w]).Equal(b.Type(w)) {
			t.Fatalf("gradient of %s is %v, want %v", w, b.Type(grads[w]), b.Type(w))
		}
		b.Output("d_"+w, grads[w])
	}
	if err := b.G.Verify(); err != nil {
		t.Fatal(err)
	}
	got, err := interp.Run(b.G, h.vals)
	if err != nil {
		t.Fatal(err)
	}
	run := func() float64 {
		o, err := interp.Run(lossOnly, h.vals)
		if err != nil {
			t.Fatal(err)
		}
		return o["loss"].F[0]
	}
	const step = 1e-6
	for _, w := range h.wrt {
		x := h.vals[w]
		d := got["d_"+w].F
		n := len(x.F)
		stride := max(1, n/maxEntries)
		var num2, diff2 float64
		for i := 0; i < n; i += stride {
			orig := x.F[i]
			x.F[i] = orig + step
			lp := run()
			x.F[i] = orig - step
			lm := run()
			x.F[i] = orig
			fd := seedVal * (lp - lm) / (2 * step)
			num2 += fd * fd
			diff2 += (fd - d[i]) * (fd - d[i])
		}
		if num2 == 0 && diff2 == 0 {
			continue
		}
		if rel := math.Sqrt(diff2 / max(num2, 1e-300)); !(rel < 1e-6) {
			t.Errorf("d/d%s: relative error %.3g (analytic %v)", w, rel, d[:min(len(d), 8)])
		}
	}
}

func TestGradientRulesFiniteDifferences(t *testing.T) {
	for i, c := range fdCases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(uint64(100 + i))
			out := c.build(h)
			if err := h.b.Err(); err != nil {
				t.Fatal(err)
			}
			fdCheck(t, h, out, 40)
		})
	}
}

// TestEveryOpHasAGradientCase fails when an op of the IR is neither known to
// carry no gradient nor covered by a rule and a finite-difference case.
func TestEveryOpHasAGradientCase(t *testing.T) {
	for _, op := range ir.OpNames() {
		if _, none := noGradient[op]; none {
			if _, ok := gradRules[op]; ok {
				t.Errorf("%s is listed as carrying no gradient but has a rule", op)
			}
			continue
		}
		if _, ok := gradRules[op]; !ok {
			t.Errorf("op %s has no gradient rule and is not listed in noGradient", op)
			continue
		}
		if op == "SoftmaxCrossEntropyGrad" {
			continue // its rule is an error, checked below
		}
		if !slices.ContainsFunc(fdCases, func(c fdCase) bool { return c.op == op }) {
			t.Errorf("op %s has a gradient rule but no finite-difference case", op)
		}
	}
	for op := range gradRules {
		if ir.Lookup(op) == nil {
			t.Errorf("gradient rule for unknown op %s", op)
		}
	}
}

func TestSecondOrderCrossEntropyIsAnError(t *testing.T) {
	h := newHarness(1)
	logits := h.x("logits", -1, 1, 3, 4)
	labels := h.ints("labels", []int64{0, 1, 3}, 3)
	dl := h.data("dl", -1, 1, 3)
	g := h.b.Op("SoftmaxCrossEntropyGrad", nil, logits, labels, dl)
	loss := h.b.Reduce("ReduceSum", g, false, 0, 1)
	_, err := Gradients(h.b, loss, h.wrt, "")
	if err == nil || !strings.Contains(err.Error(), "second-order") {
		t.Fatalf("got %v, want an error about second-order derivatives", err)
	}
}

// TestGradientsOnlyDifferentiatesThePath checks that nodes off the path from
// wrt to loss get no backward nodes, that an unreachable wrt gets zeros and that
// a Greater/integer path carries nothing.
func TestGradientsOnlyDifferentiatesThePath(t *testing.T) {
	b := ir.NewBuilder("g")
	x := b.AddInput("x", ir.T(ir.F64, 3), ir.Data, nil)
	y := b.AddInput("y", ir.T(ir.F64, 3), ir.Data, nil)
	z := b.AddInput("z", ir.T(ir.F64, 2), ir.Data, nil)
	side := b.Unary("Exp", y) // depends on y only: y is not in wrt
	mask := b.Op("Greater", nil, x, side)
	loss := b.Reduce("ReduceSum", b.Mul(b.Unary("Sigmoid", x), mask), false, 0)
	before := len(b.G.Nodes)
	grads, err := Gradients(b, loss, []string{x, z}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range b.G.Nodes[before:] {
		if n.Op == "Exp" || (n.Op == "Greater" && len(n.Inputs) > 0 && n.Inputs[1] == side) {
			t.Errorf("backward differentiates a node off the path: %s", n)
		}
	}
	if p := b.G.Producers()[grads[z]]; p == nil || p.Op != "Const" || p.Attrs.GetFloat("value", 1) != 0 {
		t.Errorf("unreachable z: gradient %v, want a zero Const", p)
	}
	b.Output("dx", grads[x])
	b.Output("dz", grads[z])
	if err := b.G.Verify(); err != nil {
		t.Fatal(err)
	}
	vals := map[string]*interp.Tensor{
		x: interp.FromFloats(ir.T(ir.F64, 3), []float64{0, 5, -1}),
		y: interp.FromFloats(ir.T(ir.F64, 3), []float64{0, 0, 0}),
		z: interp.FromFloats(ir.T(ir.F64, 2), []float64{1, 2}),
	}
	out, err := interp.Run(b.G, vals)
	if err != nil {
		t.Fatal(err)
	}
	// d/dx Σ σ(x)·[x > e^y] = σ'(x)·[x > 1] (Greater carries nothing).
	s := 1 / (1 + math.Exp(-5.0))
	want := []float64{0, s * (1 - s), 0}
	for i, v := range out["dx"].F {
		if math.Abs(v-want[i]) > 1e-15 {
			t.Fatalf("dx = %v, want %v", out["dx"].F, want)
		}
	}
}

func TestGradientsErrors(t *testing.T) {
	b := ir.NewBuilder("g")
	x := b.AddInput("x", ir.T(ir.F64, 3), ir.Data, nil)
	ids := b.AddInput("ids", ir.T(ir.I64, 3), ir.Data, nil)
	f32 := b.AddInput("s", ir.T(ir.F32), ir.Scalar, nil)
	loss := b.Reduce("ReduceSum", x, false, 0)
	for _, c := range []struct {
		loss, seed string
		wrt        []string
		want       string
	}{
		{"nope", "", []string{x}, `loss "nope" is not a value`},
		{ids, "", []string{x}, "not floating point"},
		{loss, "", []string{ids}, "not floating point"},
		{loss, "", []string{"nope"}, "not a value"},
		{loss, f32, []string{x}, "seed"},
	} {
		_, err := Gradients(b, c.loss, c.wrt, c.seed)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Gradients(%s, %v, %q): got %v, want %q", c.loss, c.wrt, c.seed, err, c.want)
		}
	}
}

// TestLowRankSparseAddBackwardForm checks the memory-saving structure: dW is a
// transient MatMul with transpose_a (never an input or state), dS a Gather from
// it, and the index gets no gradient.
func TestLowRankSparseAddBackwardForm(t *testing.T) {
	h := newHarness(3)
	x := h.x("x", -1, 1, 4, 6)
	bm := h.x("B", -1, 1, 5, 2)
	am := h.x("A", -1, 1, 2, 6)
	v := h.x("values", -1, 1, 3)
	idx := h.ints("index", []int64{1, 7, 8}, 3)
	y := h.b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(2)}, x, bm, am, v, idx)
	loss := h.b.Reduce("ReduceSum", y, false, 0, 1)
	n0 := len(h.b.G.Nodes)
	grads, err := Gradients(h.b, loss, []string{x, bm, am, v}, "")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, n := range h.b.G.Nodes[n0:] {
		count[n.Op]++
	}
	if count["MatMul"] != 5 || count["ScatterAdd"] != 1 || count["Gather"] != 1 {
		t.Errorf("backward ops %v: want 5 MatMul (B·sA, dx, dW, dB, dA), 1 ScatterAdd (W), 1 Gather (dS)", count)
	}
	prod := h.b.G.Producers()
	g := prod[prod[grads[v]].Inputs[0]] // Reshape ← Gather
	if g.Op != "Gather" || g.Inputs[1] != idx {
		t.Fatalf("dS is not Gather(dW, index): %v", g)
	}
	dW := prod[prod[g.Inputs[0]].Inputs[0]] // Gather ← Reshape ← MatMul
	if dW.Op != "MatMul" || dW.Attrs.GetInt("transpose_a", 0) != 1 {
		t.Fatalf("dW is not dy2ᵀ·x2: %v", dW)
	}
	for _, in := range h.b.G.Inputs {
		if in.Type.Equal(ir.T(ir.F64, 5, 6)) {
			t.Fatalf("a dense [out, in] input %q exists", in.Name)
		}
	}
}

// tinyLlamaDType builds testdata/configs/llama_tiny.json, batch 2, seq 8, in dt.
func tinyLlamaDType(t testing.TB, dt ir.DType) *ir.Module {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 8, Seed: 5, DType: dt})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tinyLlama is the F64 tiny LLaMA; with sltrain it also runs sltrain-fuse
// (r 4, δ 0.1).
func tinyLlama(t testing.TB, sltrain bool) *ir.Module {
	t.Helper()
	m := tinyLlamaDType(t, ir.F64)
	o := DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.Seed = "full", 4, 0.1, 11
	if sltrain {
		o.PEFT = "sltrain"
	}
	s := &State{Module: m, Options: o, Verify: true}
	if err := Run(s, []Pass{{Name: "sltrain-fuse", Run: sltrainFuse}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// tinyState initialises g's state, gives every lora_B random non-zero values
// (B = 0 would make dA vanish) and binds random token ids.
func tinyState(t testing.TB, g *ir.Graph, seed uint64) map[string]*interp.Tensor {
	t.Helper()
	st, err := interp.InitState(g)
	if err != nil {
		t.Fatal(err)
	}
	rng := ir.NewRNG(seed)
	names := make([]string, 0, len(st))
	for name := range st {
		names = append(names, name)
	}
	sort.Strings(names) // the same values on every run: map order is random
	for _, name := range names {
		if v := st[name]; strings.HasSuffix(name, ".lora_B") {
			for i := range v.F {
				v.F[i] = 0.2 * (rng.Float64() - 0.5)
			}
		}
	}
	st["input_ids"] = randomIDs(rng, g)
	return st
}

// randomIDs draws token ids for g's "input_ids" input (vocabulary 32).
func randomIDs(rng *ir.RNG, g *ir.Graph) *interp.Tensor {
	in := g.Input("input_ids")
	ids := make([]int64, in.Type.NumElements())
	for i := range ids {
		ids[i] = int64(rng.Uint64n(32))
	}
	return interp.FromInts(in.Type, ids)
}

// TestTinyLlamaGradients checks d(loss)/d(every parameter) of the whole tiny
// LLaMA, full-rank and SLTrain-fused, against fourth-order central differences
// (h = 1e-5: truncation ~h⁴·f⁽⁵⁾ stays small even though RMSNorm of the
// 0.02-scale embeddings makes high derivatives large; rounding ~1e-11) on a sample of each
// parameter's entries: its largest gradients and a few random ones.
func TestTinyLlamaGradients(t *testing.T) {
	for _, sltrain := range []bool{false, true} {
		name := map[bool]string{false: "full", true: "sltrain"}[sltrain]
		t.Run(name, func(t *testing.T) {
			m := tinyLlama(t, sltrain)
			fwd := m.Graph("forward")
			g := fwd.Clone()
			b := ir.BuilderFor(g)
			loss := fwd.Output("loss").Value
			params := trainable(g)
			wrt := make([]string, len(params))
			for i, p := range params {
				wrt[i] = p.Name
			}
			grads, err := Gradients(b, loss, wrt, "")
			if err != nil {
				t.Fatal(err)
			}
			g.Outputs = nil
			for _, w := range wrt {
				b.Output(w, grads[w])
			}
			st := tinyState(t, g, 7)
			got, err := interp.Run(g, st)
			if err != nil {
				t.Fatal(err)
			}
			lossOnly := fwd.Clone()
			lossOnly.Outputs = []*ir.Output{{Name: "loss", Value: loss}}
			deadCodeElim(lossOnly)
			f := func() float64 {
				o, err := interp.Run(lossOnly, st)
				if err != nil {
					t.Fatal(err)
				}
				return o["loss"].F[0]
			}
			rng := ir.NewRNG(3)
			const h = 1e-5
			for _, w := range wrt {
				x, d := st[w].F, got[w].F
				for _, i := range sampleEntries(rng, d, 3, 2) {
					orig := x[i]
					at := func(k float64) float64 { x[i] = orig + k*h; return f() }
					fd := (-at(2) + 8*at(1) - 8*at(-1) + at(-2)) / (12 * h)
					x[i] = orig
					if e := math.Abs(fd - d[i]); e > 1e-6*math.Abs(fd) && e > 1e-10 {
						t.Errorf("d loss/d %s[%d]: analytic %.12g, numeric %.12g", w, i, d[i], fd)
					}
				}
			}
		})
	}
}

// sampleEntries picks the indices of the top largest |d| entries and of
// random other ones.
func sampleEntries(rng *ir.RNG, d []float64, top, random int) []int {
	idx := make([]int, len(d))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch x, y := math.Abs(d[a]), math.Abs(d[b]); {
		case x > y:
			return -1
		case x < y:
			return 1
		}
		return 0
	})
	out := idx[:min(top, len(idx))]
	for k := 0; k < random && len(idx) > top; k++ {
		out = append(out, idx[top+int(rng.Uint64n(uint64(len(idx)-top)))])
	}
	return out
}
