package e2e

import (
	"fmt"
	"math"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/runtime"
)

// TestBF16TrainStepsMatchInterpreter is TestTrainStepsMatchInterpreter for
// the seed's pure-bf16 model: two updates of two micro-batches through the
// compiled kernels and through the interpreter, which round to bf16 at the
// same points. Each program starts both from the kernels' state, so that
// each is judged alone: the kernels' GEMMs accumulate in f32 where the
// interpreter uses f64, so a bf16 result now and then rounds the other way
// (one ulp, 2⁻⁸), and AdamW's first steps (m/√v ≈ ±1) would turn such a
// flip in a gradient near zero into a whole lr step. The update agrees bit
// for bit from the same state (but for the moments' f32 sums); gradients
// within four ulps norm-wise (about one is measured).
func TestBF16TrainStepsMatchInterpreter(t *testing.T) {
	for _, c := range []struct{ peft, lowering string }{{"full", "auto"}, {"sltrain", "merged"}, {"sltrain", "factored"}} {
		t.Run(c.peft+"-"+c.lowering, func(t *testing.T) {
			m, rt := compileTinyDType(t, c.peft, c.lowering, ir.BF16)
			for _, in := range m.Graph("update").InputsWithRole(ir.OptState) {
				if in.Type.DType != ir.BF16 {
					t.Fatalf("%s is %v, want bf16", in.Name, in.Type.DType)
				}
			}
			lowPrecisionSteps(t, m, rt)
		})
	}
}

// TestMixedTrainStepsMatchInterpreter is the same for bf16-mixed (f32
// state, bf16 products and saved activations): the kernels' products sum in
// f32 where the interpreter uses f64, so an operand now and then rounds to
// the other bf16 neighbour; the tolerances are bf16's. The factored
// lowering rounds fewer things than the op's definition (see
// codegen/lower's lowRankSparseAddMixed), within them too.
func TestMixedTrainStepsMatchInterpreter(t *testing.T) {
	for _, c := range []struct{ peft, lowering string }{{"full", "auto"}, {"sltrain", "merged"}, {"sltrain", "factored"}} {
		t.Run(c.peft+"-"+c.lowering, func(t *testing.T) {
			m, rt := compileTinyOptions(t, c.peft, c.lowering, ir.F32, true)
			if m.Meta["precision"] != "bf16-mixed" {
				t.Fatalf("module precision %q", m.Meta["precision"])
			}
			lowPrecisionSteps(t, m, rt)
		})
	}
}

// lowPrecisionSteps runs two updates of two micro-batches of m through rt's
// kernels and through the interpreter, each program from the kernels' state.
func lowPrecisionSteps(t *testing.T, m *ir.Module, rt *runtime.Runtime) {
	const gradTol, updateTol = 0x1p-6, 1e-4
	ref := newReference(t, m)
	compareState(t, "initial state", rt, ref, 0)
	rng := ir.NewRNG(9)
	ids := m.Graph("train_step").Input("input_ids").Type
	for step := 1; step <= 2; step++ {
		for micro := 0; micro < 2; micro++ {
			sync(t, rt, ref)
			tokens := make([]int64, ids.NumElements())
			for i := range tokens {
				tokens[i] = int64(rng.Uint64n(32))
			}
			out, err := rt.Run("train_step", runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}, Scalars: map[string]float64{"grad_scale": 0.5}})
			if err != nil {
				t.Fatal(err)
			}
			want := ref.run(t, "train_step", map[string]*interp.Tensor{"input_ids": interp.FromInts(ids, tokens), "grad_scale": scalar(0.5)})
			if got, w := first(t, out["loss"]), want["loss"].F[0]; math.Abs(got-w) > 2*0x1p-8*w {
				t.Errorf("step %d.%d: loss %v, interpreter %v", step, micro, got, w)
			}
			compareState(t, fmt.Sprintf("after train_step %d.%d", step, micro), rt, ref, gradTol)
		}
		sync(t, rt, ref)
		scalars := map[string]float64{"lr": 0.01, "step": float64(step), "weight_decay": 0.1, "max_grad_norm": 0.5}
		if _, err := rt.Run("update", runtime.Inputs{Scalars: scalars}); err != nil {
			t.Fatal(err)
		}
		bind := map[string]*interp.Tensor{}
		for k, v := range scalars {
			bind[k] = interp.FromFloats(m.Graph("update").Input(k).Type, []float64{v})
		}
		ref.run(t, "update", bind)
		compareState(t, fmt.Sprintf("after update %d", step), rt, ref, updateTol)
	}
}

// sync sets the interpreter's float state to the kernels'.
func sync(t *testing.T, rt *runtime.Runtime, ref *reference) {
	t.Helper()
	for name, v := range ref.state {
		if v.Type.DType == ir.U8 { // adam8bit's codes
			x, err := rt.State(name)
			if err != nil {
				t.Fatal(err)
			}
			if v.I, err = x.Int64s(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !v.Type.DType.IsFloat() {
			continue
		}
		x, err := rt.State(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := x.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range f {
			v.F[i] = float64(f[i])
		}
	}
}
