package e2e

import (
	"testing"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/target"
	"gitee.com/gidean/conv-linn/version"
)

// TestOptimizersCompiled trains the tiny SLTrain LLaMA two updates of two
// micro-batches with each of the seed's optimizers in f32, pure bf16 and
// bf16-mixed through the CPU kernels and through the interpreter, each
// program from the kernels' state (lowPrecisionSteps), and compiles the
// same module for cuda: the GPU lowering shares the element-wise and
// reduction groups the optimizers are made of.
func TestOptimizersCompiled(t *testing.T) {
	for _, c := range []struct {
		opt   string
		beta1 float64
	}{{"adam", 0.9}, {"sgd", 0.9}, {"adafactor", 0.9}, {"adafactor", 0}, {"adam8bit", 0.9}} {
		for _, prec := range []string{"f32", "bf16", "bf16-mixed"} {
			t.Run(c.opt+"-"+prec, func(t *testing.T) {
				if c.opt == "adafactor" && c.beta1 == 0 && prec != "f32" {
					t.Skip("β1 = 0 is checked in f32")
				}
				if (c.opt == "adam" || c.opt == "sgd") && prec == "bf16-mixed" {
					t.Skip("bf16-mixed's update graph is the f32 one for adam and sgd (f32 parameters and states)")
				}
				dt := ir.F32
				if prec == "bf16" {
					dt = ir.BF16
				}
				m, s := optimizerTiny(t, c.opt, c.beta1, dt, prec == "bf16-mixed")
				cs, err := (&passes.State{Module: m.Clone(), Groups: s.Groups, Plans: s.Plans}).ForDevice("cuda") // the loss head unfused
				if err != nil {
					t.Fatal(err)
				}
				if _, err := codegen.Compile(cs.Module, codegen.Options{Groups: cs.Groups, Plans: cs.Plans, SLTrainLowering: "merged", Target: target.NewCUDA("", "")}); err != nil {
					t.Fatalf("cuda: %v", err)
				}
				art, err := codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: "merged"})
				if err != nil {
					t.Fatal(err)
				}
				rt, err := runtime.Load(art, runtime.Options{Threads: 2, Version: version.Version})
				if err != nil {
					t.Fatal(err)
				}
				defer rt.Close()
				codes := 0
				for _, in := range m.Graph("update").InputsWithRole(ir.OptState) {
					if in.Type.DType == ir.U8 {
						codes++
					}
				}
				if (codes > 0) != (c.opt == "adam8bit") {
					t.Fatalf("%d 8-bit states with %s", codes, c.opt)
				}
				lowPrecisionSteps(t, m, rt)
			})
		}
	}
}

// optimizerTiny compiles the tiny SLTrain LLaMA with an optimizer.
func optimizerTiny(t *testing.T, opt string, beta1 float64, dt ir.DType, mixed bool) (*ir.Module, *passes.State) {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 8, Seed: 3, DType: dt})
	if err != nil {
		t.Fatal(err)
	}
	o := passes.DefaultOptions()
	o.Rank, o.SpRatio, o.Seed, o.BF16Mixed = 4, 0.1, 3, mixed
	o.Optimizer, o.Beta1 = opt, beta1
	o.Adam8bitMinSize = 100 // the tiny model's matrices (128 to 512 elements) take 8-bit states
	s := &passes.State{Module: m, Options: o, Verify: true}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	return m, s
}
