package cpu

import (
	"strconv"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// emitter carries what every piece of generated code needs: the shared
// kernel-building layer (codegen/kernel: the module and its types, the
// builder B, the function being filled F, and the index arithmetic), the
// target and its vector type.
type emitter struct {
	*kernel.Fn
	arch Arch
	w    int // floats per vector

	vec llvm.Type
	fma llvm.Function // llvm.fma or llvm.fmuladd on vec
}

// newEmitter prepares types and intrinsics for m; callers set fn before
// emitting instructions and dispose the builder with close.
func newEmitter(m llvm.Module, arch Arch) (*emitter, error) {
	t := kernel.NewTypes(m)
	e := &emitter{Fn: &kernel.Fn{Types: t, B: t.Ctx.NewBuilder()}, arch: arch, w: arch.VectorWidth}
	e.vec = llvm.VectorType(e.F32, e.w)
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
	e.B.SetFastMath(llvm.FastMathAllowContract)
	return e, nil
}

func (e *emitter) close() { e.B.Dispose() }

// newFunction adds a function of type void(params) named name, stamps the
// target attributes on it and positions the builder in its entry block.
func (e *emitter) newFunction(name string, params []llvm.Type, internal bool) (llvm.Function, error) {
	fn := e.Mod.AddFunction(name, llvm.FunctionType(e.Void, params, false))
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
	e.F = fn
	e.B.SetInsertPointAtEnd(fn.AppendBasicBlock("entry"))
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

// at is the address of float element idx of p.
func (e *emitter) at(p, idx llvm.Value) llvm.Value {
	return e.B.InBoundsGEP(e.F32, p, []llvm.Value{idx}, "")
}

// atc is the address of float element idx (a constant) of p.
func (e *emitter) atc(p llvm.Value, idx int64) llvm.Value {
	if idx == 0 {
		return p
	}
	return e.at(p, e.C64(idx))
}

// elemType is the LLVM type memory of element type el holds: float, or
// i16 for bf16 bit patterns.
func (e *emitter) elemType(el Elem) llvm.Type {
	if el == BF16 {
		return e.I16
	}
	return e.F32
}

// elemAt is the address of element idx of p, an array of el.
func (e *emitter) elemAt(el Elem, p, idx llvm.Value) llvm.Value {
	return e.B.InBoundsGEP(e.elemType(el), p, []llvm.Value{idx}, "")
}

// elemAtc is elemAt with a constant index.
func (e *emitter) elemAtc(el Elem, p llvm.Value, idx int64) llvm.Value {
	if idx == 0 {
		return p
	}
	return e.elemAt(el, p, e.C64(idx))
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
		v = e.WidenBF16(v)
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
	v, err := e.maskedLoadOf(llvm.VectorType(e.I16, e.w), p, lanes, 2)
	if err != nil {
		return v, err
	}
	return e.WidenBF16(v), nil
}

// roundBF16 rounds the float vector v (n lanes) to bf16 bit patterns,
// <n x i16>: round to nearest, ties to even, as PyTorch's
// round_to_nearest_even; overflow gives ±inf and a NaN stays a NaN (its
// top bits with the quiet bit set). Denormals are rounded, not flushed.
// It is plain integer arithmetic, so every target gives the same bits.
func (e *emitter) roundBF16(v llvm.Value, n int) llvm.Value {
	b := e.B
	it := llvm.VectorType(e.I32, n)
	c := func(x int64) llvm.Value { return llvm.ConstSplat(n, llvm.ConstInt(e.I32, x)) }
	u := b.BitCast(v, it, "")
	hi := b.LShr(u, c(16), "")
	// u + 0x7fff + lsb(hi) cannot wrap: only NaN bit patterns are that
	// large, and those take the other arm of the select.
	r := b.LShr(b.Add(u, b.Add(c(0x7fff), b.And(hi, c(1), ""), ""), ""), c(16), "")
	nan := b.FCmp(llvm.FloatUNO, v, v, "")
	r = b.Select(nan, b.Or(hi, c(0x40), ""), r, "")
	return b.Trunc(r, llvm.VectorType(e.I16, n), "")
}

// load reads a value of type t from p with the given alignment.
func (e *emitter) load(t llvm.Type, p llvm.Value, align int) llvm.Value {
	v := e.B.Load(t, p, "")
	v.SetAlignment(align)
	return v
}

// store writes v to p with the given alignment.
func (e *emitter) store(v, p llvm.Value, align int) { e.B.Store(v, p).SetAlignment(align) }

// forLoop emits `for i := lo; i < hi; i += step { body(i) }` with signed
// i64 bounds; the loop runs zero times when lo ≥ hi. It leaves the builder
// after the loop.
func (e *emitter) forLoop(name string, lo, hi llvm.Value, step int64, body func(i llvm.Value)) {
	pre := e.B.InsertBlock()
	loop := e.F.AppendBasicBlock(name)
	exit := e.F.AppendBasicBlock(name + ".end")
	e.B.CondBr(e.B.ICmp(llvm.IntSLT, lo, hi, ""), loop, exit)
	e.B.SetInsertPointAtEnd(loop)
	i := e.B.Phi(e.I64, name)
	body(i)
	latch := e.B.InsertBlock()
	next := e.Add(i, e.C64(step))
	e.B.CondBr(e.B.ICmp(llvm.IntSLT, next, hi, ""), loop, exit)
	i.AddIncoming([]llvm.Value{lo, next}, []llvm.BasicBlock{pre, latch})
	e.B.SetInsertPointAtEnd(exit)
}

// ifElse emits `if cond { then() } else { els() }`; els may be nil. It
// leaves the builder after both.
func (e *emitter) ifElse(name string, cond llvm.Value, then, els func()) {
	tb := e.F.AppendBasicBlock(name + ".then")
	join := e.F.AppendBasicBlock(name + ".end")
	eb := join
	if els != nil {
		eb = e.F.AppendBasicBlock(name + ".else")
	}
	e.B.CondBr(cond, tb, eb)
	e.B.SetInsertPointAtEnd(tb)
	then()
	e.B.Br(join)
	if els != nil {
		e.B.SetInsertPointAtEnd(eb)
		els()
		e.B.Br(join)
	}
	e.B.SetInsertPointAtEnd(join)
}

// laneMask is the constant <W x i1> mask whose first n lanes are set.
func (e *emitter) laneMask(n int) llvm.Value {
	lanes := make([]llvm.Value, e.w)
	for i := range lanes {
		v := int64(0)
		if i < n {
			v = 1
		}
		lanes[i] = llvm.ConstInt(e.I1, v)
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
	f, err := e.Mod.Intrinsic("llvm.masked.load", t, e.Ptr)
	if err != nil {
		return llvm.Value{}, err
	}
	return e.B.Call(f, []llvm.Value{p, llvm.ConstInt(e.I32, int64(align)), e.laneMask(n), llvm.ConstNull(t)}, ""), nil
}

// maskedStore writes the first n lanes of the W-lane vector v to p and
// nothing past them; align is the alignment of one element.
func (e *emitter) maskedStore(v, p llvm.Value, n, align int) error {
	f, err := e.Mod.Intrinsic("llvm.masked.store", v.Type(), e.Ptr)
	if err != nil {
		return err
	}
	e.B.Call(f, []llvm.Value{v, p, llvm.ConstInt(e.I32, int64(align)), e.laneMask(n)}, "")
	return nil
}

// ceilDiv is ⌈a/b⌉ for positive b.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// roundUp is a rounded up to a multiple of b.
func roundUp(a, b int) int { return ceilDiv(a, b) * b }
