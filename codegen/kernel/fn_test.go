package kernel

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// newFn opens a function void f(ptr p, i64 n) in a fresh module and an Fn
// over it (P[0] = p, Nth = n, Tid = 0), the builder in its body block.
func newFn(t *testing.T) (*Fn, llvm.Module, func()) {
	t.Helper()
	ctx := llvm.NewContext()
	t.Cleanup(ctx.Dispose)
	m := ctx.NewModule("kernel_test")
	ty := NewTypes(m)
	f := m.AddFunction("f", llvm.FunctionType(ty.Void, []llvm.Type{ty.Ptr, ty.I64}, false))
	k := &Fn{Types: ty, B: ctx.NewBuilder(), AB: ctx.NewBuilder(), F: f}
	t.Cleanup(k.B.Dispose)
	t.Cleanup(k.AB.Dispose)
	k.P = []llvm.Value{f.Param(0)}
	k.Tid, k.Nth = k.C64(0), f.Param(1)
	k.Entry = f.AppendBasicBlock("entry")
	body := f.AppendBasicBlock("body")
	k.AB.SetInsertPointAtEnd(k.Entry)
	k.B.SetInsertPointAtEnd(body)
	return k, m, func() {
		k.B.RetVoid()
		k.AB.Br(body)
	}
}

// The helpers build well-formed IR: loops, a condition, a stack variable,
// a thread's share and bf16 loads and stores, and the module verifies.
func TestFnHelpersVerify(t *testing.T) {
	k, m, finish := newFn(t)
	acc := k.Variable(k.F32, k.Cf(k.F32, 0))
	s, e := k.Share(1000, 16)
	k.Loop(s, e, func(i llvm.Value) {
		x := k.LoadAt(k.BF16, k.P[0], i) // widened to f32
		k.Store(k.B.FAdd(k.Load(k.F32, acc), x, ""), k.F32, acc)
		k.StoreAt(x, k.BF16, k.P[0], i) // rounded back to bf16
	})
	k.LoopStep(k.C64(0), k.C64(10), k.C64(3), func(i llvm.Value) {
		k.When(k.B.ICmp(llvm.IntSLT, k.Remc(i, 2), k.Divc(i, 1), ""), func() {
			k.StoreAt(k.Load(k.F32, acc), k.F32, k.P[0], k.Addc(k.Mulc(i, 2), 1))
		})
	})
	k.LoopN(4, func(i llvm.Value) {
		k.StoreAt(k.Widen(k.B.FAdd(k.Load(k.F32, acc), k.Splat(k.F32, 1), "")), k.F64, k.P[0], k.Max(k.Min(i, k.C64(2)), k.C64(1)))
	})
	finish()
	if err := m.Verify(); err != nil {
		t.Fatalf("the module does not verify: %v\n%s", err, m.String())
	}
	ir := m.String()
	for _, want := range []string{"load i16", "store i16", "alloca float", "udiv i64", "fpext float"} {
		if !strings.Contains(ir, want) {
			t.Errorf("no %q in\n%s", want, ir)
		}
	}
	if k.Work.Threads != (1000+15)/16 {
		t.Errorf("Share recorded %d threads of work, want %d", k.Work.Threads, (1000+15)/16)
	}
}

// The constant folds of Addc, Mulc, Divc and Remc emit nothing.
func TestFnConstantFolds(t *testing.T) {
	k, _, finish := newFn(t)
	defer finish()
	x := k.Nth
	if k.Addc(x, 0) != x || k.Mulc(x, 1) != x || k.Divc(x, 1) != x {
		t.Error("adding 0, multiplying or dividing by 1 is not x itself")
	}
	if !k.Mulc(x, 0).IsConstant() || !k.Remc(x, 1).IsConstant() {
		t.Error("x·0 or x mod 1 is not a constant")
	}
}

// Type helpers: bf16 storage computes in f32, vectors keep their lanes.
func TestTypes(t *testing.T) {
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	ty := NewTypes(ctx.NewModule("types"))
	v := llvm.VectorType(ty.BF16, 8)
	if !ty.IsBF16(v) || ty.IsBF16(ty.F32) {
		t.Error("IsBF16")
	}
	if c := ty.ComputeOf(v); c.Kind() != llvm.VectorTypeKind || c.VectorSize() != 8 || c.ElementType().Kind() != llvm.FloatTypeKind {
		t.Errorf("ComputeOf(<8 x bfloat>) is not <8 x float>")
	}
	if ElemKind(v) != llvm.BFloatTypeKind || ElemKind(ty.F64) != llvm.DoubleTypeKind {
		t.Error("ElemKind")
	}
	for _, c := range []struct {
		t    llvm.Type
		size int
	}{{ty.F32, 4}, {ty.F64, 8}, {ty.BF16, 2}, {ty.I8, 1}, {ty.I64, 8}, {ty.Ptr, 8}} {
		if got := ty.SizeOf(c.t); got != c.size {
			t.Errorf("SizeOf: %d, want %d", got, c.size)
		}
	}
}

// Merge keeps the larger needs and adds the flops.
func TestWorkMerge(t *testing.T) {
	w := Work{Threads: 10, Blocks: 2, Flops: 5, Bytes: 7}
	w.Merge(Work{Threads: 4, Blocks: 9, Scratch: true, Flops: 100, Bytes: 1000, MMA: true})
	want := Work{Threads: 10, Blocks: 9, Scratch: true, Flops: 105, Bytes: 7, MMA: true}
	if w != want {
		t.Errorf("merged %+v, want %+v", w, want)
	}
	// MaxBlocks: the tighter cap of the two that set one.
	w.Merge(Work{MaxBlocks: 300})
	w.Merge(Work{MaxBlocks: 264})
	w.Merge(Work{})
	if w.MaxBlocks != 264 {
		t.Errorf("merged caps 300, 264 and none: %d, want 264", w.MaxBlocks)
	}
}
