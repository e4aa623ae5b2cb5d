package interp_test

import (
	"math"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// llamaInputs builds the named config's forward graph and binds its initial
// state plus deterministic token ids.
func llamaInputs(tb testing.TB, config string, batch, seq int) (*ir.Graph, map[string]*interp.Tensor, int) {
	tb.Helper()
	cfg, err := frontend.ReadLlamaConfig("../../testdata/configs/" + config + ".json")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: seq, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	g := m.Graph("forward")
	in, err := interp.InitState(g)
	if err != nil {
		tb.Fatal(err)
	}
	ids := make([]int64, batch*seq)
	for i := range ids {
		ids[i] = int64((i*7 + 3) % cfg.VocabSize)
	}
	in["input_ids"] = interp.FromInts(ir.T(ir.I64, batch, seq), ids)
	return g, in, cfg.VocabSize
}

// At initialisation (weights ~ N(0, 0.02)) the logits are nearly uniform, so the
// loss is close to ln V; and the interpreter is deterministic.
func TestTinyLlamaInitialLoss(t *testing.T) {
	g, in, V := llamaInputs(t, "llama_tiny", 2, 8)
	out, err := interp.Run(g, in)
	if err != nil {
		t.Fatal(err)
	}
	loss := out["loss"]
	if loss == nil || loss.Type.Rank() != 0 {
		t.Fatalf("loss output: %v", loss)
	}
	if want := math.Log(float64(V)); math.Abs(loss.F[0]-want) > 0.1 {
		t.Fatalf("initial loss %v, want within 0.1 of ln %d = %v", loss.F[0], V, want)
	}
	for _, v := range out["logits"].F {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatal("non-finite logit")
		}
	}
	again, err := interp.Run(g, in)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range out {
		b := again[name]
		for i := range a.F {
			if math.Float64bits(a.F[i]) != math.Float64bits(b.F[i]) {
				t.Fatalf("output %s[%d] differs between runs: %v vs %v", name, i, a.F[i], b.F[i])
			}
		}
	}
}

func BenchmarkTinyLlamaForward(b *testing.B) {
	g, in, _ := llamaInputs(b, "llama_tiny", 2, 8)
	for b.Loop() {
		if _, err := interp.Run(g, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLlama9mForward(b *testing.B) {
	g, in, _ := llamaInputs(b, "llama_9m", 1, 16)
	for b.Loop() {
		if _, err := interp.Run(g, in); err != nil {
			b.Fatal(err)
		}
	}
}
