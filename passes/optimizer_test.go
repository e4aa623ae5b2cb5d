package passes

import (
	"math"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// trainingPasses are this package's passes that build the training programs.
func trainingPasses(t testing.TB) []Pass {
	t.Helper()
	ps, err := Select("autodiff,optimizer,programs")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// compileTiny runs sltrain-fuse and the training passes on the tiny LLaMA, with
// verification after every pass.
func compileTiny(t testing.TB, sltrain bool) (*ir.Module, *State) {
	t.Helper()
	m := tinyLlama(t, sltrain)
	o := DefaultOptions()
	o.Rank, o.SpRatio = 4, 0.1
	s := &State{Module: m, Options: o, Verify: true}
	if err := Run(s, trainingPasses(t)); err != nil {
		t.Fatal(err)
	}
	return m, s
}

func scalarT(dt ir.DType, v float64) *interp.Tensor { return interp.FromFloats(ir.T(dt), []float64{v}) }

// applyUpdates writes the outputs that update state back into st.
func applyUpdates(g *ir.Graph, st, out map[string]*interp.Tensor) {
	for _, o := range g.Outputs {
		if o.Updates != "" {
			st[o.Updates] = out[o.Name]
		}
	}
}

// TestTrainingProgramMatchesAdamW runs 3 optimizer steps of 2 accumulated
// micro-batches each through train_step and update, and the same steps with a
// hand-written float64 AdamW (PyTorch 1.13's formulas, clip_grad_norm_ first)
// that uses the per-micro-batch gradients of train_step from zero accumulators.
func TestTrainingProgramMatchesAdamW(t *testing.T) {
	m, s := compileTiny(t, true)
	ts, up := m.Graph("train_step"), m.Graph("update")
	st := tinyState(t, ts, 21)
	opt, err := interp.InitState(up)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range opt {
		if _, ok := st[k]; !ok {
			st[k] = v
		}
	}
	params := trainable(ts)
	ref := map[string][]float64{} // reference params, exp_avg, exp_avg_sq
	for _, p := range params {
		ref[p.Name] = append([]float64(nil), st[p.Name].F...)
		ref[p.Name+".m"] = make([]float64, len(st[p.Name].F))
		ref[p.Name+".v"] = make([]float64, len(st[p.Name].F))
	}
	const (
		G      = 2
		lr     = 0.01
		wd     = 0.1
		maxLen = 0.05
	)
	b1, b2, eps := s.Options.Beta1, s.Options.Beta2, s.Options.Eps
	maxNorms := []float64{maxLen, maxLen, math.Inf(1)} // clipping on, then off
	rng := ir.NewRNG(99)
	for step := 1; step <= 3; step++ {
		acc := map[string][]float64{}
		for micro := 0; micro < G; micro++ {
			ids := randomIDs(rng, ts)
			// The program: accumulate into the state's P.grad.
			st["input_ids"], st["grad_scale"] = ids, scalarT(ir.F64, 1.0/G)
			out, err := interp.Run(ts, st)
			if err != nil {
				t.Fatal(err)
			}
			applyUpdates(ts, st, out)
			// The reference: the gradient of this micro-batch alone, at the reference params.
			rs := map[string]*interp.Tensor{"input_ids": ids, "grad_scale": scalarT(ir.F64, 1.0/G)}
			for _, in := range ts.Inputs {
				switch {
				case in.Role == ir.GradAccum:
					rs[in.Name] = interp.NewTensor(in.Type)
				case in.Role == ir.Param:
					rs[in.Name] = interp.FromFloats(in.Type, ref[in.Name])
				case rs[in.Name] == nil:
					rs[in.Name] = st[in.Name]
				}
			}
			rout, err := interp.Run(ts, rs)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(rout["loss"].F[0] - out["loss"].F[0]); d > 1e-12 {
				t.Fatalf("step %d micro %d: loss %v, reference %v", step, micro, out["loss"].F[0], rout["loss"].F[0])
			}
			if l := out["loss"].F[0]; !(l > 2 && l < 5) {
				t.Fatalf("loss %v is not the unscaled mean cross-entropy (≈ ln 32)", l)
			}
			for _, p := range params {
				g := rout[p.Name+".grad"].F
				if a := acc[p.Name]; a == nil {
					acc[p.Name] = append([]float64(nil), g...)
				} else {
					for i := range a {
						a[i] += g[i]
					}
				}
			}
		}

		// The program's update.
		st["lr"], st["step"], st["weight_decay"], st["max_grad_norm"] =
			scalarT(ir.F64, lr), scalarT(ir.F64, float64(step)), scalarT(ir.F64, wd), scalarT(ir.F64, maxNorms[step-1])
		out, err := interp.Run(up, st)
		if err != nil {
			t.Fatal(err)
		}
		applyUpdates(up, st, out)

		// The reference update.
		var sumsq float64
		for _, p := range params {
			var ps float64
			for _, g := range acc[p.Name] {
				ps += g * g
			}
			sumsq += ps
		}
		norm := math.Sqrt(sumsq)
		if got := out["grad_norm"].F[0]; math.Abs(got-norm) > 1e-12*norm {
			t.Fatalf("step %d: grad_norm %v, want %v", step, got, norm)
		}
		if step < 3 && !(norm > maxLen) {
			t.Fatalf("step %d: grad norm %v does not exceed max_grad_norm %v: clipping is not exercised", step, norm, maxLen)
		}
		coef := math.Min(1, maxNorms[step-1]/(norm+1e-6))
		bc1 := 1 - math.Pow(b1, float64(step))
		bc2 := 1 - math.Pow(b2, float64(step))
		for _, p := range params {
			pv, mv, vv := ref[p.Name], ref[p.Name+".m"], ref[p.Name+".v"]
			for i, g := range acc[p.Name] {
				g *= coef
				pv[i] *= 1 - lr*wd
				mv[i] = mv[i]*b1 + g*(1-b1)
				vv[i] = vv[i]*b2 + (1-b2)*g*g
				denom := math.Sqrt(vv[i])/math.Sqrt(bc2) + eps
				pv[i] -= lr / bc1 * mv[i] / denom
			}
		}
		for _, p := range params {
			for _, c := range []struct{ state, ref string }{{p.Name, p.Name}, {p.Name + ".exp_avg", p.Name + ".m"}, {p.Name + ".exp_avg_sq", p.Name + ".v"}} {
				got, want := st[c.state].F, ref[c.ref]
				for i := range want {
					if d := math.Abs(got[i] - want[i]); d > 1e-12*math.Max(1, math.Abs(want[i])) {
						t.Fatalf("step %d: %s[%d] = %.17g, reference %.17g", step, c.state, i, got[i], want[i])
					}
				}
			}
			for i, v := range st[p.Name+".grad"].F {
				if v != 0 {
					t.Fatalf("step %d: accumulator %s.grad[%d] = %v after update, want 0", step, p.Name, i, v)
				}
			}
		}
	}
}

// TestUpdateGraphInterface checks the update graph's inputs, roles and
// outputs, in f64 (f64 scalars) and f32.
func TestUpdateGraphInterface(t *testing.T) {
	for _, dt := range []ir.DType{ir.F64, ir.F32} {
		t.Run(dt.String(), func(t *testing.T) {
			m := tinyLlamaDType(t, dt)
			s := &State{Module: m, Options: DefaultOptions(), Verify: true}
			s.Options.Rank, s.Options.SpRatio = 4, 0.1
			if err := Run(s, append([]Pass{{Name: "sltrain-fuse", Run: sltrainFuse}}, trainingPasses(t)...)); err != nil {
				t.Fatal(err)
			}
			up := m.Graph("update")
			// The update's scalars are f64, like PyTorch's Python floats.
			for _, name := range []string{"lr", "step", "weight_decay", "max_grad_norm"} {
				in := up.Input(name)
				if in == nil || in.Role != ir.Scalar || !in.Type.Equal(ir.T(ir.F64)) {
					t.Errorf("scalar %s: %+v", name, in)
				}
			}
			params := trainable(m.Graph("train_step"))
			if len(params) == 0 {
				t.Fatal("no params")
			}
			for _, p := range params {
				if in := up.Input(p.Name); in == nil || in.Role != ir.Param || !in.Init.Equal(p.Init) {
					t.Errorf("param %s: %+v", p.Name, in)
				}
				for _, c := range []struct {
					suffix string
					role   ir.Role
				}{{".grad", ir.GradAccum}, {".exp_avg", ir.OptState}, {".exp_avg_sq", ir.OptState}} {
					in := up.Input(p.Name + c.suffix)
					if in == nil || in.Role != c.role || in.Of != p.Name || !in.Type.Equal(p.Type) || in.Init == nil || in.Init.Kind != ir.InitZeros {
						t.Errorf("%s%s: %+v", p.Name, c.suffix, in)
					}
					if o := up.Output(p.Name + c.suffix); o == nil || o.Updates != p.Name+c.suffix {
						t.Errorf("no output updates %s%s", p.Name, c.suffix)
					}
				}
				if o := up.Output(p.Name); o == nil || o.Updates != p.Name {
					t.Errorf("no output updates %s", p.Name)
				}
				if strings.HasSuffix(p.Name, ".sparse_index") {
					t.Errorf("the sparse index %s is trainable", p.Name)
				}
			}
			if o := up.Output("grad_norm"); o == nil || o.Updates != "" {
				t.Errorf("grad_norm output: %+v", o)
			}
		})
	}
}

func TestOptimizerOptionErrors(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Beta1 = 1 }, "beta1"},
		{func(o *Options) { o.Beta2 = -0.1 }, "beta2"},
		{func(o *Options) { o.Eps = math.NaN() }, "eps"},
	} {
		m := tinyLlama(t, false)
		s := &State{Module: m, Options: DefaultOptions(), Verify: true}
		c.mod(&s.Options)
		err := Run(s, trainingPasses(t))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "pass optimizer") {
			t.Errorf("got %v, want an optimizer error about %s", err, c.want)
		}
	}
}

// smallModule is a hand-built forward in dt: y = (x·wᵀ)·n, loss = mean(y²).
func smallModule(t testing.TB, dt ir.DType) *ir.Module {
	t.Helper()
	b := ir.NewBuilder("forward")
	x := b.AddInput("x", ir.T(dt, 2, 4), ir.Data, nil)
	w := b.AddInput("w", ir.T(dt, 3, 4), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.5, Seed: 1})
	n := b.AddInput("n", ir.T(dt, 3), ir.Param, &ir.Init{Kind: ir.InitOnes})
	y := b.Mul(b.Op("Linear", nil, x, w), n)
	b.Output("loss", b.Reduce("ReduceMean", b.Mul(y, y), false, 0, 1))
	b.Output("logits", y)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return &ir.Module{Graphs: []*ir.Graph{b.G}}
}

// TestLowPrecisionTraining compiles a bf16 model: the optimizer state keeps the
// parameter's dtype, scalars and arithmetic are f32 (with Casts), and one
// step through the interpreter lands within bf16 precision of the f64 step.
func TestLowPrecisionTraining(t *testing.T) {
	step := func(dt ir.DType) (map[string]*interp.Tensor, *ir.Module) {
		m := smallModule(t, dt)
		s := &State{Module: m, Options: DefaultOptions(), Verify: true}
		if err := Run(s, trainingPasses(t)); err != nil {
			t.Fatal(err)
		}
		ts, up := m.Graph("train_step"), m.Graph("update")
		st, err := interp.InitState(ts)
		if err != nil {
			t.Fatal(err)
		}
		opt, err := interp.InitState(up)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range opt {
			if st[k] == nil {
				st[k] = v
			}
		}
		ct := computeDType(dt)
		st["x"] = interp.FromFloats(ir.T(dt, 2, 4), []float64{1, -0.5, 0.25, 2, -1, 0.75, 0.5, -0.25})
		st["grad_scale"] = scalarT(ct, 1)
		out, err := interp.Run(ts, st)
		if err != nil {
			t.Fatal(err)
		}
		applyUpdates(ts, st, out)
		st["lr"], st["step"], st["weight_decay"], st["max_grad_norm"] = scalarT(ir.F64, 0.1), scalarT(ir.F64, 1), scalarT(ir.F64, 0.1), scalarT(ir.F64, 1)
		out, err = interp.Run(up, st)
		if err != nil {
			t.Fatal(err)
		}
		applyUpdates(up, st, out)
		return st, m
	}
	want, _ := step(ir.F64)
	got, m := step(ir.BF16)
	up := m.Graph("update")
	if in := up.Input("w.exp_avg"); !in.Type.Equal(ir.T(ir.BF16, 3, 4)) {
		t.Errorf("w.exp_avg is %v, want bf16[3,4]", in.Type)
	}
	if in := up.Input("lr"); !in.Type.Equal(ir.T(ir.F64)) {
		t.Errorf("lr is %v, want f64[]", in.Type)
	}
	if in := m.Graph("train_step").Input("grad_scale"); !in.Type.Equal(ir.T(ir.F32)) {
		t.Errorf("grad_scale is %v, want f32[]", in.Type)
	}
	for _, name := range []string{"w", "n", "w.exp_avg", "w.exp_avg_sq"} {
		for i, v := range got[name].F {
			w := want[name].F[i]
			if math.Abs(v-w) > 0.02*math.Abs(w)+1e-6 {
				t.Errorf("%s[%d]: bf16 %v, f64 %v", name, i, v, w)
			}
		}
	}
}
