package codegen

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
)

// pipeline builds a LLaMA config's module and runs the whole pass pipeline.
func pipeline(t testing.TB, config string, batch, seq, rank int) *passes.State {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/" + config)
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: seq, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := &passes.State{Module: m, Options: passes.DefaultOptions()}
	s.Options.Rank = rank
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	return s
}

// scalarValue is a rank-0 tensor of type t holding v.
func scalarValue(t ir.Type, v float64) *interp.Tensor {
	return interp.FromFloats(t, []float64{v})
}

// TestTinyLlama compiles the tiny LLaMA's programs (train_step, update,
// eval, infer) from the pass pipeline's own groups and plans, runs each
// with 1 and 2 threads, and compares every output with the reference
// interpreter: with the cost model's SLTrain lowering (factored, at these
// sizes) and with merged forced.
func TestTinyLlama(t *testing.T) {
	s := pipeline(t, "llama_tiny.json", 2, 8, 4)
	for _, mode := range []string{"auto", "merged"} {
		t.Run(mode, func(t *testing.T) { tinyLlama(t, s, mode) })
	}
}

func tinyLlama(t *testing.T, s *passes.State, mode string) {
	var explainBuf bytes.Buffer
	art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, Explain: &explainBuf, SLTrainLowering: mode})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"graph train_step:", "graph update:", "model.layers.1.self_attn.q_proj: LowRankSparseAdd " + map[string]string{"auto": "factored", "merged": "merged"}[mode], "kernels:"} {
		if !strings.Contains(explainBuf.String(), want) {
			t.Errorf("--explain output lacks %q:\n%s", want, explainBuf.String())
		}
	}
	if len(art.Module) == 0 || len(art.Code) == 0 || art.Target.Kind != "cpu" {
		t.Fatalf("incomplete artifact: module %d bytes, code %d bytes, target %+v", len(art.Module), len(art.Code), art.Target)
	}
	m := load(t, art)
	mod := s.Module
	train := mod.Graph("train_step")
	state := map[string]*interp.Tensor{}
	for _, g := range mod.Graphs {
		st, err := interp.InitState(g)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range st {
			if state[k] == nil {
				state[k] = v
			}
		}
	}
	// Non-zero B and accumulators, so that every path of the layer carries data.
	r := rand.New(rand.NewPCG(3, 4))
	for _, in := range train.Inputs {
		if in.Role == ir.Param && strings.HasSuffix(in.Name, "lora_B") || in.Role == ir.GradAccum || in.Role == ir.OptState {
			kind := "any"
			if in.Role == ir.OptState {
				kind = "pos" // exp_avg_sq must be ≥ 0; exp_avg may be too
			}
			state[in.Name] = random(r, in.Type, gen{kind: kind})
			for i := range state[in.Name].F {
				state[in.Name].F[i] *= 0.01
			}
		}
	}
	bind := func(g *ir.Graph) map[string]*interp.Tensor {
		vals := map[string]*interp.Tensor{}
		for _, in := range g.Inputs {
			switch {
			case state[in.Name] != nil:
				vals[in.Name] = state[in.Name].Clone()
			case in.Role == ir.Data:
				vals[in.Name] = random(r, in.Type, gen{kind: "idx", n: 32})
			case in.Name == "step":
				vals[in.Name] = scalarValue(in.Type, 3)
			case in.Name == "lr":
				vals[in.Name] = scalarValue(in.Type, 1e-3)
			case in.Role == ir.Scalar:
				vals[in.Name] = scalarValue(in.Type, 0.5)
			default:
				t.Fatalf("graph %s: no value for input %q (%v)", g.Name, in.Name, in.Role)
			}
		}
		return vals
	}
	for _, name := range []string{"train_step", "update", "eval", "infer"} {
		g := mod.Graph(name)
		if g == nil {
			t.Fatalf("no graph %q", name)
		}
		vals := bind(g)
		want, err := interp.Run(g, vals)
		if err != nil {
			t.Fatal(err)
		}
		for _, nth := range []int{1, 2} {
			in := map[string]*interp.Tensor{}
			for k, v := range vals {
				in[k] = v.Clone()
			}
			got := m.run(t, name, in, nth)
			for _, o := range g.Outputs {
				if err := compareTensors(got[o.Name], want[o.Name], 1e-5, true); err != nil {
					t.Errorf("%s, %d threads: output %q: %v", name, nth, o.Name, err)
				}
			}
		}
	}
	checkArtifact(t, art)
}

// checkArtifact checks the structural promises of an artifact: slots in
// range and aligned, every step's kernel has its arguments, outputs exist.
func checkArtifact(t testing.TB, art *artifact.Artifact) {
	t.Helper()
	if err := art.Validate(); err != nil {
		t.Error(err)
	}
	data, err := art.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := artifact.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Programs) != len(art.Programs) || !bytes.Equal(back.Code, art.Code) {
		t.Errorf("artifact does not round-trip through its file form")
	}
	for _, p := range art.Programs {
		for _, s := range p.Slots {
			if s.Kind == artifact.SlotArena && (s.Offset%64 != 0 || s.Offset+s.Type.Bytes() > p.ArenaBytes) {
				t.Errorf("%s: slot %q at %d (+%d) outside the %d-byte arena", p.Name, s.Name, s.Offset, s.Type.Bytes(), p.ArenaBytes)
			}
		}
		for _, st := range p.Steps {
			if st.Kernel == "" || len(st.Args) == 0 {
				t.Errorf("%s: step %+v", p.Name, st)
			}
			for _, a := range st.Args {
				if a < 0 || int(a) >= len(p.Slots) {
					t.Errorf("%s: step %s: slot %d out of range", p.Name, st.Kernel, a)
				}
			}
		}
		for _, o := range p.Outputs {
			if o.Slot < 0 || int(o.Slot) >= len(p.Slots) {
				t.Errorf("%s: output %q: slot %d out of range", p.Name, o.Name, o.Slot)
			}
		}
	}
}
