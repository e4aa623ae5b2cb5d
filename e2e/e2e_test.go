package e2e

import (
	"fmt"
	"math"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/version"
)

// compileTiny runs the whole pipeline on the tiny LLaMA and compiles it.
func compileTiny(t *testing.T, peft, lowering string) (*ir.Module, *runtime.Runtime) {
	t.Helper()
	return compileTinyDType(t, peft, lowering, ir.F32)
}

// compileTinyDType is compileTiny for a model of dtype dt.
func compileTinyDType(t *testing.T, peft, lowering string, dt ir.DType) (*ir.Module, *runtime.Runtime) {
	t.Helper()
	return compileTinyOptions(t, peft, lowering, dt, false)
}

// compileTinyOptions is compileTinyDType, bf16-mixed when mixed is set.
func compileTinyOptions(t *testing.T, peft, lowering string, dt ir.DType, mixed bool) (*ir.Module, *runtime.Runtime) {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler to link kernels")
	}
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 8, Seed: 3, DType: dt})
	if err != nil {
		t.Fatal(err)
	}
	o := passes.DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.Seed, o.BF16Mixed = peft, 4, 0.1, 3, mixed
	s := &passes.State{Module: m, Options: o, Verify: true}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	art, err := codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: lowering})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.Load(art, runtime.Options{Threads: 2, Version: version.Version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return m, rt
}

// reference is the interpreter's view of the same training state.
type reference struct {
	m     *ir.Module
	state map[string]*interp.Tensor
}

func newReference(t *testing.T, m *ir.Module) *reference {
	r := &reference{m: m, state: map[string]*interp.Tensor{}}
	for _, g := range m.Graphs {
		st, err := interp.InitState(g)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range st {
			if _, ok := r.state[k]; !ok {
				r.state[k] = v
			}
		}
	}
	return r
}

// run executes a graph in the interpreter and applies its state updates.
func (r *reference) run(t *testing.T, name string, bind map[string]*interp.Tensor) map[string]*interp.Tensor {
	t.Helper()
	g := r.m.Graph(name)
	in := map[string]*interp.Tensor{}
	for k, v := range r.state {
		in[k] = v
	}
	for k, v := range bind {
		in[k] = v
	}
	out, err := interp.Run(g, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range g.Outputs {
		if o.Updates != "" {
			r.state[o.Updates] = out[o.Name]
		}
	}
	return out
}

// first returns the first element of a float32 runtime output.
func first(t *testing.T, x runtime.Tensor) float64 {
	t.Helper()
	f, err := x.Float32s()
	if err != nil || len(f) == 0 {
		t.Fatalf("output %v: %v", x.Type, err)
	}
	return float64(f[0])
}

func scalar(v float64) *interp.Tensor { return interp.FromFloats(ir.T(ir.F32), []float64{v}) }

// relErr is the norm-wise relative error ‖a−b‖/max(‖b‖, tiny).
func relErr(got []float32, want []float64) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - want[i]
		d += e * e
		n += want[i] * want[i]
	}
	return math.Sqrt(d) / math.Max(math.Sqrt(n), 1e-30)
}

func compareState(t *testing.T, when string, rt *runtime.Runtime, ref *reference, tol float64) {
	t.Helper()
	names := make([]string, 0, len(ref.state))
	for k := range ref.state {
		names = append(names, k)
	}
	sort.Strings(names)
	worst, worstName := 0.0, ""
	for _, name := range names {
		want := ref.state[name]
		if want.Type.DType == ir.U8 {
			compareCodes(t, when, name, rt, want)
			continue
		}
		if !want.Type.DType.IsFloat() {
			continue
		}
		got, err := rt.State(name)
		if err != nil {
			t.Fatalf("%s: runtime state %s: %v", when, name, err)
		}
		f, err := got.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		e := relErr(f, want.F)
		if e > worst {
			worst, worstName = e, name
		}
		if e > tol {
			t.Errorf("%s: %s differs from the interpreter: relative error %.3g", when, name, e)
		}
	}
	t.Logf("%s: worst relative error %.3g (%s)", when, worst, worstName)
}

// compareCodes checks an 8-bit optimizer state (adam8bit's code indices):
// the kernels and the interpreter quantize values that may differ in their
// last f32 bit (contracted multiply-adds), so an index may be one off where
// a value sits on a midpoint; no more than 1% of them, and never by more.
func compareCodes(t *testing.T, when, name string, rt *runtime.Runtime, want *interp.Tensor) {
	t.Helper()
	got, err := rt.State(name)
	if err != nil {
		t.Fatalf("%s: runtime state %s: %v", when, name, err)
	}
	v, err := got.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for i, w := range want.I {
		switch d := v[i] - w; {
		case d == 0:
		case d == 1 || d == -1:
			off++
		default:
			t.Errorf("%s: %s[%d] = %d, interpreter %d", when, name, i, v[i], w)
			return
		}
	}
	if off*100 > len(want.I) {
		t.Errorf("%s: %s: %d of %d codes one off", when, name, off, len(want.I))
	}
}

// TestTrainStepsMatchInterpreter runs two update steps of two micro-batches
// each, with clipping and weight decay, through the compiled kernels and the
// interpreter, and compares the loss, every accumulated gradient and every
// updated parameter and optimizer state.
func TestTrainStepsMatchInterpreter(t *testing.T) {
	for _, c := range []struct{ peft, lowering string }{{"full", "auto"}, {"sltrain", "merged"}, {"sltrain", "factored"}} {
		t.Run(c.peft+"-"+c.lowering, func(t *testing.T) {
			m, rt := compileTiny(t, c.peft, c.lowering)
			ref := newReference(t, m)
			// B = 0 at init would hide errors in dA: give every lora_B values.
			rng := ir.NewRNG(9)
			for _, name := range rt.StateNames() {
				if !strings.HasSuffix(name, ".lora_B") {
					continue
				}
				v := ref.state[name]
				f := make([]float32, len(v.F))
				for i := range f {
					f[i] = float32(0.2 * (rng.Float64() - 0.5))
					v.F[i] = float64(f[i])
				}
				if err := rt.SetStateFloat32(name, f); err != nil {
					t.Fatal(err)
				}
			}
			compareState(t, "initial state", rt, ref, 0)
			ids := m.Graph("train_step").Input("input_ids").Type
			for step := 1; step <= 2; step++ {
				for micro := 0; micro < 2; micro++ {
					tokens := make([]int64, ids.NumElements())
					for i := range tokens {
						tokens[i] = int64(rng.Uint64n(32))
					}
					out, err := rt.Run("train_step", runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}, Scalars: map[string]float64{"grad_scale": 0.5}})
					if err != nil {
						t.Fatal(err)
					}
					want := ref.run(t, "train_step", map[string]*interp.Tensor{"input_ids": interp.FromInts(ids, tokens), "grad_scale": scalar(0.5)})
					got := first(t, out["loss"])
					if e := math.Abs(got-want["loss"].F[0]) / want["loss"].F[0]; e > 1e-5 {
						t.Errorf("step %d.%d: loss %v, interpreter %v", step, micro, got, want["loss"].F[0])
					}
					compareState(t, fmt.Sprintf("after train_step %d.%d", step, micro), rt, ref, 1e-4)
				}
				scalars := map[string]float64{"lr": 0.01, "step": float64(step), "weight_decay": 0.1, "max_grad_norm": 0.5}
				out, err := rt.Run("update", runtime.Inputs{Scalars: scalars})
				if err != nil {
					t.Fatal(err)
				}
				bind := map[string]*interp.Tensor{}
				for k, v := range scalars {
					bind[k] = interp.FromFloats(m.Graph("update").Input(k).Type, []float64{v})
				}
				want := ref.run(t, "update", bind)
				gn, wn := first(t, out["grad_norm"]), want["grad_norm"].F[0]
				if math.Abs(gn-wn)/wn > 1e-5 {
					t.Errorf("step %d: grad_norm %v, interpreter %v", step, gn, wn)
				}
				compareState(t, fmt.Sprintf("after update %d", step), rt, ref, 1e-4)
			}
			// eval and infer run too and agree.
			tokens := make([]int64, ids.NumElements())
			for i := range tokens {
				tokens[i] = int64(i % 32)
			}
			out, err := rt.Run("eval", runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}})
			if err != nil {
				t.Fatal(err)
			}
			want := ref.run(t, "eval", map[string]*interp.Tensor{"input_ids": interp.FromInts(ids, tokens)})
			if got := first(t, out["loss"]); math.Abs(got-want["loss"].F[0])/want["loss"].F[0] > 1e-5 {
				t.Errorf("eval loss %v, interpreter %v", got, want["loss"].F[0])
			}
		})
	}
}
