package lower

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestGPUSparseKernels: on the cuda device the SLTrain sparse kernels
// (the merged scatter W += S, the factored product y += x·Sᵀ, ScatterAdd)
// are codegen/gpu's sparse.go: they synchronize (the block's check of the
// index; bar.sync in the PTX, the body convergent), take no scratch, and
// launch blocks of 256 threads, at most 264 of them; the product stages x
// in shared memory. On the CPU the same groups keep their per-thread
// bodies (nosync). e2e's TestCUDASparseKernels runs them in the emulator.
func TestGPUSparseKernels(t *testing.T) {
	lrsa := func(tokens int) *Group {
		return addGroup(t, Single, func(b *ir.Builder) string {
			return b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(0.5)}, b.AddInput("x", ir.T(ir.F32, tokens, 37), ir.Data, nil),
				b.AddInput("B", ir.T(ir.F32, 29, 8), ir.Param, nil), b.AddInput("A", ir.T(ir.F32, 8, 37), ir.Param, nil),
				b.AddInput("v", ir.T(ir.F32, 300), ir.Param, nil), b.AddInput("idx", ir.T(ir.I64, 300), ir.Buffer, nil))
		})
	}
	scatter := func() *Group {
		return addGroup(t, Single, func(b *ir.Builder) string {
			return b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(29 * 37)}, b.AddInput("u", ir.T(ir.F32, 300, 1), ir.Data, nil),
				b.AddInput("idx", ir.T(ir.I64, 300), ir.Buffer, nil))
		})
	}
	cases := []struct {
		name, mode, suffix string
		g                  func() *Group
	}{
		{"merged scatter", "merged", "_s", func() *Group { return lrsa(64) }},
		{"factored product", "factored", "_s", func() *Group { return lrsa(11) }},
		{"ScatterAdd", "", "", scatter},
	}
	for _, gpu := range []string{"sm_80", "sm_90"} {
		tm, m := gpuTarget(t, gpu)
		var names []string
		for _, c := range cases {
			e, err := NewEmitter(m, tm, Options{Device: "cuda", SLTrainLowering: c.mode})
			if err != nil {
				t.Fatal(err)
			}
			l, err := e.Lower(c.g())
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			name := ""
			for _, call := range l.Calls {
				if strings.HasSuffix(call.Kernel, c.suffix) {
					name = call.Kernel
				}
			}
			if name == "" {
				t.Fatalf("%s: no %s kernel among %+v", c.name, c.suffix, l.Calls)
			}
			if l.ScratchBytes != 0 && c.name != "merged scatter" {
				t.Errorf("%s: %d bytes of scratch per thread", c.name, l.ScratchBytes)
			}
			ln, ok := e.Launch(name)
			if !ok || ln.Block != 256 || ln.Grid < 1 || ln.Grid > 264 || ln.Scratch {
				t.Errorf("%s: launch %+v (want blocks of 256, at most 264, no scratch)", c.name, ln)
			}
			names = append(names, name)
			e.Dispose()
		}
		attrs := bodyAttrs(m.String())
		ptx := emitPTX(t, tm, m)
		for i, n := range names {
			if a := attrs[n]; strings.Contains(a, "nosync") || !strings.Contains(a, "convergent") {
				t.Errorf("%s %s: body attributes { %s }", gpu, cases[i].name, a)
			}
			body := entryPTX(ptx, n)
			if !strings.Contains(body, "bar.sync") {
				t.Errorf("%s %s: no bar.sync", gpu, cases[i].name)
			}
			if cases[i].mode == "factored" && !strings.Contains(body, "slc_sparse_x_") {
				t.Errorf("%s %s: no x tile in shared memory", gpu, cases[i].name)
			}
		}
	}
	cpu := newTestEmitter(t, Options{SLTrainLowering: "factored"})
	l, err := cpu.Lower(lrsa(11))
	if err != nil {
		t.Fatal(err)
	}
	if l.ScratchBytes == 0 {
		t.Error("the CPU's sparse product takes no scratch: not the CPU's body")
	}
	for _, call := range l.Calls {
		if a := bodyAttrs(cpu.Mod.String())[call.Kernel]; strings.Contains(a, "convergent") {
			t.Errorf("CPU %s: body attributes { %s }", call.Kernel, a)
		}
	}
}
