package lower

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestInstances: InstanceKey admits kernel groups (data movement, row
// kernels, products) on the cuda device only; Instances builds
// an entry that numbers the instances' blocks virtually (n times the
// kernel's grid; a thread-pure body gets no barrier), is found again for
// the same count, runs a block-cooperative body too (the row kernel takes
// its block numbering from its tid, gpu's blockRegs), and refuses a body
// that reads the hardware's block number. e2e runs instanced kernels (data
// movement, GEMMs, sparse kernels) in the PTX emulator within the train
// step.
func TestInstances(t *testing.T) {
	tm, m := gpuTarget(t, "sm_90")
	e, err := NewEmitter(m, tm, Options{Device: "cuda"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Dispose()
	tr := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Transpose(b.AddInput("x", ir.T(ir.BF16, 5, 7, 3), ir.Data, nil), 2, 0, 1)
	})
	softmax := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Op("Softmax", ir.Attrs{"axis": ir.Int(-1)}, b.AddInput("x", ir.T(ir.F32, 7, 33), ir.Data, nil))
	})
	if InstanceKey(tr, Options{Device: "cuda"}) == "" {
		t.Error("a transpose has no instance key on cuda")
	}
	if k := InstanceKey(tr, Options{}); k != "" {
		t.Errorf("a transpose on the CPU has instance key %q", k)
	}
	if InstanceKey(softmax, Options{Device: "cuda"}) == "" {
		t.Error("a row softmax has no instance key on cuda")
	}
	mm := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Op("MatMul", nil, b.AddInput("a", ir.T(ir.F32, 5, 7), ir.Data, nil), b.AddInput("b", ir.T(ir.F32, 7, 3), ir.Data, nil))
	})
	if InstanceKey(mm, Options{Device: "cuda"}) == "" {
		t.Error("a product has no instance key on cuda")
	}
	l, err := e.Lower(tr)
	if err != nil {
		t.Fatal(err)
	}
	kern := l.Calls[0].Kernel
	name, err := e.Instances([]Part{{Kernel: kern, Args: len(l.Calls[0].Args), N: 3}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.Instances([]Part{{Kernel: kern, Args: len(l.Calls[0].Args), N: 3}})
	if err != nil || again != name {
		t.Errorf("the same instances again: %q, %v; want %q", again, err, name)
	}
	base, _ := e.Launch(kern)
	got, ok := e.Launch(name)
	if !ok || got.Grid != 3*base.Grid || got.Block != base.Block {
		t.Errorf("launch of 3 instances %+v (%v), of one %+v", got, ok, base)
	}
	ls, err := e.Lower(softmax)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.Instances([]Part{{Kernel: ls.Calls[0].Kernel, Args: len(ls.Calls[0].Args), N: 2}})
	if err != nil {
		t.Errorf("instances of a row kernel: %v", err)
	}
	// Two kernels in one launch: the parts' blocks one after another.
	mixed, err := e.Instances([]Part{{Kernel: kern, Args: len(l.Calls[0].Args), N: 2}, {Kernel: ls.Calls[0].Kernel, Args: len(ls.Calls[0].Args), N: 1}})
	if err != nil {
		t.Fatal(err)
	}
	rl, _ := e.Launch(ls.Calls[0].Kernel)
	bl := max(base.Block, rl.Block)
	in := func(l Launch) int { return (l.Grid*l.Block + bl - 1) / bl } // a kernel's blocks of bl threads
	if got, ok := e.Launch(mixed); !ok || got.Grid != 2*in(base)+in(rl) || got.Block != bl {
		t.Errorf("launch of 2 transposes and a softmax %+v (%v); theirs %+v and %+v", got, ok, base, rl)
	}
	// A body reading the hardware's block number cannot run virtually.
	err = e.kernel("slc_test_ctaid", []param{{alias: -1}}, func(k *kfn) error {
		f, err := e.Intrinsic("llvm.nvvm.read.ptx.sreg.ctaid.x")
		if err != nil {
			return err
		}
		k.StoreAt(k.B.ZExt(k.B.Call(f, nil, ""), e.I64, ""), e.I64, k.P[0], k.C64(0))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Instances([]Part{{Kernel: "slc_test_ctaid", Args: 1, N: 2}}); err == nil || !strings.Contains(err.Error(), "ctaid") {
		t.Errorf("instances of a body reading ctaid.x: %v", err)
	}
	ptx := emitPTX(t, tm, m)
	body := entryPTX(ptx, name)
	if body == "" {
		t.Fatalf("no entry %s in the PTX", name)
	}
	if strings.Contains(body, "bar.sync") {
		t.Errorf("%s synchronizes", name)
	}
	if rb := entryPTX(ptx, rows); rows != "" && !strings.Contains(rb, "bar.sync") {
		t.Errorf("%s (a row kernel's instances) does not synchronize: its reduction is not in it", rows)
	}
}
