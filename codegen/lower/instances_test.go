package lower

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestInstances: InstanceKey admits the thread-pure data-movement kernels
// on the cuda device only; Instances builds an entry that numbers the
// instances' blocks virtually (n times the kernel's grid, no barrier), is
// found again for the same count, and refuses a block-cooperative body
// (the row kernel reads the hardware numbering and synchronizes). e2e
// runs instanced kernels in the PTX emulator within the train step.
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
	if k := InstanceKey(softmax, Options{Device: "cuda"}); k != "" {
		t.Errorf("a row softmax has instance key %q", k)
	}
	l, err := e.Lower(tr)
	if err != nil {
		t.Fatal(err)
	}
	kern := l.Calls[0].Kernel
	name, err := e.Instances(kern, len(l.Calls[0].Args), 3)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.Instances(kern, len(l.Calls[0].Args), 3)
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
	if _, err := e.Instances(ls.Calls[0].Kernel, len(ls.Calls[0].Args), 2); err == nil || !strings.Contains(err.Error(), "not thread-pure") {
		t.Errorf("instances of a row kernel: %v", err)
	}
	ptx := emitPTX(t, tm, m)
	body := entryPTX(ptx, name)
	if body == "" {
		t.Fatalf("no entry %s in the PTX", name)
	}
	if strings.Contains(body, "bar.sync") {
		t.Errorf("%s synchronizes", name)
	}
}
