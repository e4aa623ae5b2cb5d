package kernel

import "gitee.com/gidean/conv-linn/codegen/llvm"

// C64 is the i64 constant v.
func (k *Fn) C64(v int64) llvm.Value { return llvm.ConstInt(k.I64, v) }

// Cf is the floating-point constant v of type t.
func (k *Fn) Cf(t llvm.Type, v float64) llvm.Value { return llvm.ConstFloat(t, v) }

// At is the address of element idx (i64) of p, elements of type t.
func (k *Fn) At(t llvm.Type, p, idx llvm.Value) llvm.Value {
	return k.B.InBoundsGEP(t, p, []llvm.Value{idx}, "")
}

// Load reads a t from p, aligned to t's natural size. A bf16 t (storage;
// scalar or vector) reads the bits and returns them widened to f32.
func (k *Fn) Load(t llvm.Type, p llvm.Value) llvm.Value {
	if k.IsBF16(t) {
		bits := k.B.Load(k.WithElem(t, k.I16), p, "")
		bits.SetAlignment(2)
		return k.WidenBF16(bits)
	}
	v := k.B.Load(t, p, "")
	v.SetAlignment(k.SizeOf(t))
	return v
}

// Store writes v (of type t) to p. For a bf16 t, v is f32 and is rounded to
// bf16, ties to even.
func (k *Fn) Store(v llvm.Value, t llvm.Type, p llvm.Value) {
	if k.IsBF16(t) {
		k.B.Store(k.BF16Bits(v), p).SetAlignment(2)
		return
	}
	k.B.Store(v, p).SetAlignment(k.SizeOf(t))
}

// IsBF16 reports whether t is the bf16 storage type or a vector of it.
func (e *Types) IsBF16(t llvm.Type) bool {
	if t.Kind() == llvm.VectorTypeKind {
		t = t.ElementType()
	}
	return t.Kind() == llvm.BFloatTypeKind
}

// ComputeOf is the type values of storage type t compute in: f32 (vectors
// of f32) for bf16, t itself otherwise.
func (e *Types) ComputeOf(t llvm.Type) llvm.Type {
	if e.IsBF16(t) {
		return e.WithElem(t, e.F32)
	}
	return t
}

// WithElem is t (a scalar or a vector) with elem as its element type.
func (e *Types) WithElem(t, elem llvm.Type) llvm.Type {
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.VectorType(elem, t.VectorSize())
	}
	return elem
}

// WidenBF16 turns bf16 bits (i16 or a vector of i16) into f32, exactly.
func (k *Fn) WidenBF16(bits llvm.Value) llvm.Value {
	b, e := k.B, k.Types
	t := bits.Type()
	wide := b.ZExt(bits, e.WithElem(t, e.I32), "")
	return b.BitCast(b.Shl(wide, k.IntSplat(wide.Type(), 16), ""), e.WithElem(t, e.F32), "")
}

// BF16Bits rounds f32 values to bf16 bits (ties to even, as ir.BF16FromFloat32:
// a NaN stays a quiet NaN, overflow goes to ±Inf) in integer arithmetic, so
// that every target vectorizes it without a libcall.
func (k *Fn) BF16Bits(v llvm.Value) llvm.Value {
	b, e := k.B, k.Types
	it := e.WithElem(v.Type(), e.I32)
	x := b.BitCast(v, it, "")
	hi := b.LShr(x, k.IntSplat(it, 16), "")
	odd := b.And(hi, k.IntSplat(it, 1), "")
	r := b.LShr(b.Add(b.Add(x, k.IntSplat(it, 0x7fff), ""), odd, ""), k.IntSplat(it, 16), "")
	nan := b.FCmp(llvm.FloatUNO, v, v, "")
	r = b.Select(nan, b.Or(hi, k.IntSplat(it, 0x40), ""), r, "")
	return b.Trunc(r, e.WithElem(v.Type(), e.I16), "")
}

// IntSplat is the integer constant c of type t (a scalar or a vector).
func (k *Fn) IntSplat(t llvm.Type, c int64) llvm.Value {
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.ConstSplat(t.VectorSize(), llvm.ConstInt(t.ElementType(), c))
	}
	return llvm.ConstInt(t, c)
}

// LoadAt and StoreAt access element idx of buffer p.
func (k *Fn) LoadAt(t llvm.Type, p, idx llvm.Value) llvm.Value { return k.Load(t, k.At(t, p, idx)) }
func (k *Fn) StoreAt(v llvm.Value, t llvm.Type, p, idx llvm.Value) {
	k.Store(v, t, k.At(t, p, idx))
}

func (k *Fn) Add(x, y llvm.Value) llvm.Value { return k.B.NSWAdd(x, y, "") }
func (k *Fn) Sub(x, y llvm.Value) llvm.Value { return k.B.NSWSub(x, y, "") }
func (k *Fn) Mul(x, y llvm.Value) llvm.Value { return k.B.NSWMul(x, y, "") }

// Addc, Mulc: with a constant operand (folded away when trivial).
func (k *Fn) Addc(x llvm.Value, c int64) llvm.Value {
	if c == 0 {
		return x
	}
	return k.Add(x, k.C64(c))
}
func (k *Fn) Mulc(x llvm.Value, c int64) llvm.Value {
	switch c {
	case 0:
		return k.C64(0)
	case 1:
		return x
	}
	return k.Mul(x, k.C64(c))
}

// Divc and Remc divide a non-negative i64 by a positive constant.
func (k *Fn) Divc(x llvm.Value, c int64) llvm.Value {
	if c == 1 {
		return x
	}
	return k.B.UDiv(x, k.C64(c), "")
}
func (k *Fn) Remc(x llvm.Value, c int64) llvm.Value {
	if c == 1 {
		return k.C64(0)
	}
	return k.B.URem(x, k.C64(c), "")
}

func (k *Fn) Min(x, y llvm.Value) llvm.Value {
	return k.B.Select(k.B.ICmp(llvm.IntSLT, x, y, ""), x, y, "")
}
func (k *Fn) Max(x, y llvm.Value) llvm.Value {
	return k.B.Select(k.B.ICmp(llvm.IntSGT, x, y, ""), x, y, "")
}

// Loop emits `for i := lo; i < hi; i++ { body(i) }` over i64.
func (k *Fn) Loop(lo, hi llvm.Value, body func(i llvm.Value)) { k.LoopStep(lo, hi, k.C64(1), body) }

// LoopN is loop over [0, n) for a constant n.
func (k *Fn) LoopN(n int64, body func(i llvm.Value)) { k.Loop(k.C64(0), k.C64(n), body) }

// When emits `if cond { then() }`.
func (k *Fn) When(cond llvm.Value, then func()) {
	b := k.B
	yes := k.F.AppendBasicBlock("then")
	join := k.F.AppendBasicBlock("endif")
	b.CondBr(cond, yes, join)
	b.SetInsertPointAtEnd(yes)
	then()
	b.Br(join)
	b.SetInsertPointAtEnd(join)
}

// Variable is a stack slot in the entry block, promoted to SSA by mem2reg;
// it carries values across loop iterations without hand-written phis.
func (k *Fn) Variable(t llvm.Type, init llvm.Value) llvm.Value {
	p := k.AB.Alloca(t, "")
	k.Store(init, t, p)
	return p
}

// Share returns thread tid's part [s, e) of n units, split into nthreads
// contiguous parts whose sizes are multiples of align (the last may be
// shorter; trailing threads may get nothing).
func (k *Fn) Share(n, align int64) (s, e llvm.Value) {
	N := k.C64(n)
	per := k.B.UDiv(k.Add(N, k.Sub(k.Nth, k.C64(1))), k.Nth, "per")
	if align > 1 {
		per = k.Mulc(k.Divc(k.Addc(per, align-1), align), align)
	}
	s = k.Min(k.Mul(k.Tid, per), N)
	e = k.Min(k.Add(s, per), N)
	k.Work.Threads = max(k.Work.Threads, (n+max(align, 1)-1)/max(align, 1))
	return s, e
}

// SizeOf is the store size of a scalar type.
func (e *Types) SizeOf(t llvm.Type) int {
	switch t.Kind() {
	case llvm.FloatTypeKind:
		return 4
	case llvm.DoubleTypeKind:
		return 8
	case llvm.HalfTypeKind, llvm.BFloatTypeKind:
		return 2
	case llvm.IntegerTypeKind:
		return (t.IntWidth() + 7) / 8
	case llvm.PointerTypeKind:
		return 8
	}
	return 1
}

// Splat is the floating-point constant v of type t, or a vector of it.
func (k *Fn) Splat(t llvm.Type, v float64) llvm.Value {
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.ConstSplat(t.VectorSize(), llvm.ConstFloat(t.ElementType(), v))
	}
	return llvm.ConstFloat(t, v)
}

// Widen is v (f32 or f64) as f64, exactly.
func (k *Fn) Widen(v llvm.Value) llvm.Value {
	if v.Type().Kind() == llvm.DoubleTypeKind {
		return v
	}
	return k.B.FPExt(v, k.F64, "")
}

// LoopStep emits `for i := lo; i < hi; i += step { body(i) }` over i64
// (step > 0).
func (k *Fn) LoopStep(lo, hi, step llvm.Value, body func(i llvm.Value)) {
	b := k.B
	pre := b.InsertBlock()
	head := k.F.AppendBasicBlock("loop")
	in := k.F.AppendBasicBlock("body")
	exit := k.F.AppendBasicBlock("exit")
	b.Br(head)
	b.SetInsertPointAtEnd(head)
	i := b.Phi(k.I64, "i")
	b.CondBr(b.ICmp(llvm.IntSLT, i, hi, ""), in, exit)
	b.SetInsertPointAtEnd(in)
	body(i)
	next := k.Add(i, step)
	latch := b.InsertBlock()
	b.Br(head)
	i.AddIncoming([]llvm.Value{lo, next}, []llvm.BasicBlock{pre, latch})
	b.SetInsertPointAtEnd(exit)
}
