package cpu

import (
	"strconv"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// emitter carries what every piece of generated code needs: the builder, the
// module, the function being filled and the common types.
type emitter struct {
	m    llvm.Module
	ctx  llvm.Context
	b    *llvm.Builder
	fn   llvm.Function
	arch Arch
	w    int // floats per vector

	void, i1, i16, i32, i64, f32, ptr, vec llvm.Type
	fma                                    llvm.Function // llvm.fma or llvm.fmuladd on vec
}

// newEmitter prepares types and intrinsics for m; callers set fn before
// emitting instructions and dispose the builder with close.
func newEmitter(m llvm.Module, arch Arch) (*emitter, error) {
	ctx := m.Context()
	e := &emitter{m: m, ctx: ctx, b: ctx.NewBuilder(), arch: arch, w: arch.VectorWidth}
	e.void, e.i1, e.i32, e.i64 = ctx.VoidType(), ctx.Int1Type(), ctx.Int32Type(), ctx.Int64Type()
	e.i16 = ctx.Int16Type()
	e.f32, e.ptr = ctx.FloatType(), ctx.PointerType(0)
	e.vec = llvm.VectorType(e.f32, e.w)
	// llvm.fma is one vfmadd on FMA hardware; elsewhere it would become a
	// libm call per lane, so use llvm.fmuladd there (mul + add, fused only
	// where that is fast).
	name := "llvm.fma"
	if !arch.FMA {
		name = "llvm.fmuladd"
	}
	fma, err := m.Intrinsic(name, e.vec)
	if err != nil {
		e.close()
		return nil, err
	}
	e.fma = fma
	// Only contraction is allowed: a·b + c may become one fma, nothing is
	// reassociated, so results are reproducible.
	e.b.SetFastMath(llvm.FastMathAllowContract)
	return e, nil
}

func (e *emitter) close() { e.b.Dispose() }

// newFunction adds a function of type void(params) named name, stamps the
// target attributes on it and positions the builder in its entry block.
func (e *emitter) newFunction(name string, params []llvm.Type, internal bool) (llvm.Function, error) {
	fn := e.m.AddFunction(name, llvm.FunctionType(e.void, params, false))
	if internal {
		fn.SetLinkage(llvm.InternalLinkage)
	}
	fn.AddStringAttribute(llvm.FunctionIndex, "target-cpu", e.arch.CPU)
	fn.AddStringAttribute(llvm.FunctionIndex, "target-features", e.arch.Features)
	// Keep explicit W-float vectors in single registers: without this the
	// back end may split 512-bit vectors on CPUs that prefer 256-bit ones.
	bits := strconv.Itoa(32 * e.w)
	fn.AddStringAttribute(llvm.FunctionIndex, "min-legal-vector-width", bits)
	fn.AddStringAttribute(llvm.FunctionIndex, "prefer-vector-width", bits)
	for _, a := range []string{"nounwind", "nofree", "nosync", "willreturn"} {
		if err := fn.AddAttribute(llvm.FunctionIndex, a, 0); err != nil {
			return fn, err
		}
	}
	e.fn = fn
	e.b.SetInsertPointAtEnd(fn.AppendBasicBlock("entry"))
	return fn, nil
}

// markPointer adds the attributes of a pointer parameter that does not
// alias any other: noalias nocapture, plus readonly when ro.
func (e *emitter) markPointer(fn llvm.Function, i int, ro bool) error {
	attrs := []string{"noalias", "nocapture"}
	if ro {
		attrs = append(attrs, "readonly")
	}
	for _, a := range attrs {
		if err := fn.AddAttribute(llvm.ParamIndex(i), a, 0); err != nil {
			return err
		}
	}
	return nil
}

// c64 is the i64 constant v.
func (e *emitter) c64(v int64) llvm.Value { return llvm.ConstInt(e.i64, v) }

// at is the address of float element idx of p.
func (e *emitter) at(p, idx llvm.Value) llvm.Value {
	return e.b.InBoundsGEP(e.f32, p, []llvm.Value{idx}, "")
}

// atc is the address of float element idx (a constant) of p.
func (e *emitter) atc(p llvm.Value, idx int64) llvm.Value {
	if idx == 0 {
		return p
	}
	return e.at(p, e.c64(idx))
}

// elemType is the LLVM type memory of element type el holds: float, or
// i16 for bf16 bit patterns.
func (e *emitter) elemType(el Elem) llvm.Type {
	if el == BF16 {
		return e.i16
	}
	return e.f32
}

// elemAt is the address of element idx of p, an array of el.
func (e *emitter) elemAt(el Elem, p, idx llvm.Value) llvm.Value {
	return e.b.InBoundsGEP(e.elemType(el), p, []llvm.Value{idx}, "")
}

// elemAtc is elemAt with a constant index.
func (e *emitter) elemAtc(el Elem, p llvm.Value, idx int64) llvm.Value {
	if idx == 0 {
		return p
	}
	return e.elemAt(el, p, e.c64(idx))
}

// loadF32 reads n consecutive elements of type el at p (exactly those) as
// <n x float>, or as one float when n is 0.
func (e *emitter) loadF32(el Elem, p llvm.Value, n int) llvm.Value {
	t := e.elemType(el)
	if n > 0 {
		t = llvm.VectorType(t, n)
	}
	v := e.load(t, p, el.Size())
	if el == BF16 {
		v = e.widenBF16(v, n)
	}
	return v
}

// loadF32Masked reads the first lanes elements of type el at p as a
// W-lane float vector whose other lanes are zero, touching no memory past
// them.
func (e *emitter) loadF32Masked(el Elem, p llvm.Value, lanes int) (llvm.Value, error) {
	if el == F32 {
		return e.maskedLoad(p, lanes)
	}
	v, err := e.maskedLoadOf(llvm.VectorType(e.i16, e.w), p, lanes, 2)
	if err != nil {
		return v, err
	}
	return e.widenBF16(v, e.w), nil
}

// widenBF16 converts bf16 bit patterns (i16, or <n x i16> when n > 0) to
// float exactly: the 16 bits become the top half of the float's.
func (e *emitter) widenBF16(v llvm.Value, n int) llvm.Value {
	i32t, ft := e.i32, e.f32
	sh := llvm.ConstInt(e.i32, 16)
	if n > 0 {
		i32t, ft = llvm.VectorType(e.i32, n), llvm.VectorType(e.f32, n)
		sh = llvm.ConstSplat(n, sh)
	}
	return e.b.BitCast(e.b.Shl(e.b.ZExt(v, i32t, ""), sh, ""), ft, "")
}

// roundBF16 rounds the float vector v (n lanes) to bf16 bit patterns,
// <n x i16>: round to nearest, ties to even, as PyTorch's
// round_to_nearest_even; overflow gives ±inf and a NaN stays a NaN (its
// top bits with the quiet bit set). Denormals are rounded, not flushed.
// It is plain integer arithmetic, so every target gives the same bits.
func (e *emitter) roundBF16(v llvm.Value, n int) llvm.Value {
	b := e.b
	it := llvm.VectorType(e.i32, n)
	c := func(x int64) llvm.Value { return llvm.ConstSplat(n, llvm.ConstInt(e.i32, x)) }
	u := b.BitCast(v, it, "")
	hi := b.LShr(u, c(16), "")
	// u + 0x7fff + lsb(hi) cannot wrap: only NaN bit patterns are that
	// large, and those take the other arm of the select.
	r := b.LShr(b.Add(u, b.Add(c(0x7fff), b.And(hi, c(1), ""), ""), ""), c(16), "")
	nan := b.FCmp(llvm.FloatUNO, v, v, "")
	r = b.Select(nan, b.Or(hi, c(0x40), ""), r, "")
	return b.Trunc(r, llvm.VectorType(e.i16, n), "")
}

// load reads a value of type t from p with the given alignment.
func (e *emitter) load(t llvm.Type, p llvm.Value, align int) llvm.Value {
	v := e.b.Load(t, p, "")
	v.SetAlignment(align)
	return v
}

// store writes v to p with the given alignment.
func (e *emitter) store(v, p llvm.Value, align int) { e.b.Store(v, p).SetAlignment(align) }

func (e *emitter) add(x, y llvm.Value) llvm.Value { return e.b.NSWAdd(x, y, "") }
func (e *emitter) sub(x, y llvm.Value) llvm.Value { return e.b.NSWSub(x, y, "") }
func (e *emitter) mul(x, y llvm.Value) llvm.Value { return e.b.NSWMul(x, y, "") }

// min and max are signed i64 minimum and maximum.
func (e *emitter) min(x, y llvm.Value) llvm.Value {
	return e.b.Select(e.b.ICmp(llvm.IntSLT, x, y, ""), x, y, "")
}

func (e *emitter) max(x, y llvm.Value) llvm.Value {
	return e.b.Select(e.b.ICmp(llvm.IntSGT, x, y, ""), x, y, "")
}

// forLoop emits `for i := lo; i < hi; i += step { body(i) }` with signed
// i64 bounds; the loop runs zero times when lo ≥ hi. It leaves the builder
// after the loop.
func (e *emitter) forLoop(name string, lo, hi llvm.Value, step int64, body func(i llvm.Value)) {
	pre := e.b.InsertBlock()
	loop := e.fn.AppendBasicBlock(name)
	exit := e.fn.AppendBasicBlock(name + ".end")
	e.b.CondBr(e.b.ICmp(llvm.IntSLT, lo, hi, ""), loop, exit)
	e.b.SetInsertPointAtEnd(loop)
	i := e.b.Phi(e.i64, name)
	body(i)
	latch := e.b.InsertBlock()
	next := e.add(i, e.c64(step))
	e.b.CondBr(e.b.ICmp(llvm.IntSLT, next, hi, ""), loop, exit)
	i.AddIncoming([]llvm.Value{lo, next}, []llvm.BasicBlock{pre, latch})
	e.b.SetInsertPointAtEnd(exit)
}

// ifElse emits `if cond { then() } else { els() }`; els may be nil. It
// leaves the builder after both.
func (e *emitter) ifElse(name string, cond llvm.Value, then, els func()) {
	tb := e.fn.AppendBasicBlock(name + ".then")
	join := e.fn.AppendBasicBlock(name + ".end")
	eb := join
	if els != nil {
		eb = e.fn.AppendBasicBlock(name + ".else")
	}
	e.b.CondBr(cond, tb, eb)
	e.b.SetInsertPointAtEnd(tb)
	then()
	e.b.Br(join)
	if els != nil {
		e.b.SetInsertPointAtEnd(eb)
		els()
		e.b.Br(join)
	}
	e.b.SetInsertPointAtEnd(join)
}

// laneMask is the constant <W x i1> mask whose first n lanes are set.
func (e *emitter) laneMask(n int) llvm.Value {
	lanes := make([]llvm.Value, e.w)
	for i := range lanes {
		v := int64(0)
		if i < n {
			v = 1
		}
		lanes[i] = llvm.ConstInt(e.i1, v)
	}
	return llvm.ConstVector(lanes)
}

// maskedLoad reads the first n lanes of a float vector at p (the others
// are 0) without touching memory past them.
func (e *emitter) maskedLoad(p llvm.Value, n int) (llvm.Value, error) {
	return e.maskedLoadOf(e.vec, p, n, 4)
}

// maskedLoadOf is maskedLoad for a W-lane vector type t with element
// alignment align.
func (e *emitter) maskedLoadOf(t llvm.Type, p llvm.Value, n, align int) (llvm.Value, error) {
	f, err := e.m.Intrinsic("llvm.masked.load", t, e.ptr)
	if err != nil {
		return llvm.Value{}, err
	}
	return e.b.Call(f, []llvm.Value{p, llvm.ConstInt(e.i32, int64(align)), e.laneMask(n), llvm.ConstNull(t)}, ""), nil
}

// maskedStore writes the first n lanes of the W-lane vector v to p and
// nothing past them; align is the alignment of one element.
func (e *emitter) maskedStore(v, p llvm.Value, n, align int) error {
	f, err := e.m.Intrinsic("llvm.masked.store", v.Type(), e.ptr)
	if err != nil {
		return err
	}
	e.b.Call(f, []llvm.Value{v, p, llvm.ConstInt(e.i32, int64(align)), e.laneMask(n)}, "")
	return nil
}

// ceilDiv is ⌈a/b⌉ for positive b.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// roundUp is a rounded up to a multiple of b.
func roundUp(a, b int) int { return ceilDiv(a, b) * b }
