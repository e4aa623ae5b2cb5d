package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// param describes one buffer argument of a kernel.
type param struct {
	bytes    int64 // size of the buffer (0: unknown)
	readonly bool
	// alias, when ≥ 0, is the index of an earlier argument that is the same
	// buffer (a value written in place of an input).
	alias int
}

// kfn is a kernel being emitted. The exported wrapper loads the buffer
// pointers from args and calls the body, an always-inlined internal
// function whose pointer parameters are marked noalias: inlining turns that
// promise into alias scopes, which lets LLVM vectorize without run-time
// overlap checks. Arguments written in place of another share its pointer.
type kfn struct {
	e     *Emitter
	b     *llvm.Builder
	f     llvm.Function // the body
	p     []llvm.Value  // buffer pointer per argument
	tid   llvm.Value
	nth   llvm.Value
	scr   llvm.Value // this thread's scratch
	entry llvm.BasicBlock
	// syncs records that the body synchronizes the threads of a block
	// (bar.sync, shfl.sync, or a call of a block-cooperative GEMM): on the
	// GPU such a body is convergent and not nosync.
	syncs bool
	// work is the parallelism the body exposes, from which the cuda
	// device's launch geometry is chosen (geometry.go).
	work work
	// A multi-tensor kernel (multitensor.go) runs each group's body over a
	// part of its launch: stop, when set, bounds gridStride's iterations
	// (from tid, by nth, both set per chunk), and virt replaces the block
	// numbering blockRows sees.
	stop llvm.Value
	virt *blockRegs
}

// stamp puts the target and the attributes every kernel function has on f
// (nosync among them: kernel takes it off again on the GPU from a body that
// turns out to synchronize).
func (e *Emitter) stamp(f llvm.Function) error {
	if e.arch.CPU != "" {
		f.AddStringAttribute(llvm.FunctionIndex, "target-cpu", e.arch.CPU)
	}
	if e.arch.Features != "" {
		f.AddStringAttribute(llvm.FunctionIndex, "target-features", e.arch.Features)
	}
	for _, a := range []string{"nounwind", "nofree", "nosync", "willreturn"} {
		if err := f.AddAttribute(llvm.FunctionIndex, a, 0); err != nil {
			return err
		}
	}
	return nil
}

// kernel defines the exported kernel name with one buffer argument per
// entry of params, and fills its body with emit.
func (e *Emitter) kernel(name string, params []param, emit func(k *kfn) error) error {
	if e.capture != nil {
		e.capture.params, e.capture.emit = params, emit
		return nil
	}
	if _, dup := e.mod.NamedFunction(name); dup {
		return fmt.Errorf("internal error: kernel %s defined twice", name)
	}
	// Distinct buffers become the body's parameters.
	slot := make([]int, len(params)) // argument → body parameter
	var first []int                  // body parameter → its first argument
	for i, p := range params {
		if p.alias >= 0 && p.alias < i {
			slot[i] = slot[p.alias]
			continue
		}
		slot[i] = len(first)
		first = append(first, i)
	}
	types := make([]llvm.Type, 0, len(first)+3)
	for range first {
		types = append(types, e.ptr)
	}
	types = append(types, e.i64, e.i64, e.ptr)
	body := e.mod.AddFunction(name+".body", llvm.FunctionType(e.void, types, false))
	body.SetLinkage(llvm.InternalLinkage)
	if err := e.stamp(body); err != nil {
		return err
	}
	if err := body.AddAttribute(llvm.FunctionIndex, "alwaysinline", 0); err != nil {
		return err
	}
	for j := range first {
		ro, size := true, int64(0)
		for a, p := range params {
			if slot[a] == j {
				ro = ro && p.readonly
				size = max(size, p.bytes)
			}
		}
		attrs := []string{"noalias", "nocapture", "noundef"}
		if ro {
			attrs = append(attrs, "readonly")
		}
		for _, a := range attrs {
			if err := body.AddAttribute(llvm.ParamIndex(j), a, 0); err != nil {
				return err
			}
		}
		if err := body.AddAttribute(llvm.ParamIndex(j), "align", 64); err != nil {
			return err
		}
		if size > 0 {
			if err := body.AddAttribute(llvm.ParamIndex(j), "dereferenceable", uint64(size)); err != nil {
				return err
			}
		}
	}
	k := &kfn{e: e, b: e.b, f: body}
	k.p = make([]llvm.Value, len(params))
	for a := range params {
		k.p[a] = body.Param(slot[a])
	}
	k.tid, k.nth, k.scr = body.Param(len(first)), body.Param(len(first)+1), body.Param(len(first)+2)
	k.entry = body.AppendBasicBlock("entry")
	start := body.AppendBasicBlock("start")
	run := body.AppendBasicBlock("run")
	done := body.AppendBasicBlock("done")
	e.ab.SetInsertPointAtEnd(k.entry)
	e.b.SetInsertPointAtEnd(start)
	zero := k.c64(0)
	ok := e.b.And(e.b.ICmp(llvm.IntSGE, k.tid, zero, ""), e.b.ICmp(llvm.IntSLT, k.tid, k.nth, ""), "")
	e.b.CondBr(ok, run, done)
	e.b.SetInsertPointAtEnd(done)
	e.b.RetVoid()
	e.b.SetInsertPointAtEnd(run)
	e.b.SetFastMath(llvm.FastMathAllowContract)
	if err := emit(k); err != nil {
		return err
	}
	e.b.SetFastMath(llvm.FastMathNone)
	e.b.Br(done)
	e.ab.Br(start)

	if e.gpu() {
		if k.syncs {
			// Barriers or shuffles inside: the body synchronizes, and no
			// transformation may make its calls control-dependent on more.
			if err := body.RemoveAttribute(llvm.FunctionIndex, "nosync"); err != nil {
				return err
			}
			if err := body.AddAttribute(llvm.FunctionIndex, "convergent", 0); err != nil {
				return err
			}
		}
		for j := range first {
			for a, p := range params {
				if slot[a] == j {
					k.work.bytes += p.bytes
					break
				}
			}
		}
		e.launches[name] = k.work.launch()
		return e.ptxEntry(name, body, first)
	}
	// The exported wrapper.
	w := e.mod.AddFunction(name, llvm.FunctionType(e.void, []llvm.Type{e.ptr, e.i64, e.i64, e.ptr}, false))
	if err := e.stamp(w); err != nil {
		return err
	}
	e.b.SetInsertPointAtEnd(w.AppendBasicBlock("entry"))
	args := make([]llvm.Value, 0, len(types))
	for _, i := range first {
		slotPtr := e.b.InBoundsGEP(e.ptr, w.Param(0), []llvm.Value{llvm.ConstInt(e.i64, int64(i))}, "")
		v := e.b.Load(e.ptr, slotPtr, fmt.Sprintf("arg%d", i))
		v.SetAlignment(8)
		args = append(args, v)
	}
	args = append(args, w.Param(1), w.Param(2), w.Param(3))
	e.b.Call(body, args, "")
	e.b.RetVoid()
	return nil
}

// c64 is the i64 constant v.
func (k *kfn) c64(v int64) llvm.Value { return llvm.ConstInt(k.e.i64, v) }

// cf is the floating-point constant v of type t.
func (k *kfn) cf(t llvm.Type, v float64) llvm.Value { return llvm.ConstFloat(t, v) }

// at is the address of element idx (i64) of p, elements of type t.
func (k *kfn) at(t llvm.Type, p, idx llvm.Value) llvm.Value {
	return k.b.InBoundsGEP(t, p, []llvm.Value{idx}, "")
}

// load reads a t from p, aligned to t's natural size. A bf16 t (storage;
// scalar or vector) reads the bits and returns them widened to f32.
func (k *kfn) load(t llvm.Type, p llvm.Value) llvm.Value {
	if k.e.isBF16(t) {
		bits := k.b.Load(k.e.withElem(t, k.e.i16), p, "")
		bits.SetAlignment(2)
		return k.widenBF16(bits)
	}
	v := k.b.Load(t, p, "")
	v.SetAlignment(k.e.sizeOf(t))
	return v
}

// store writes v (of type t) to p. For a bf16 t, v is f32 and is rounded to
// bf16, ties to even.
func (k *kfn) store(v llvm.Value, t llvm.Type, p llvm.Value) {
	if k.e.isBF16(t) {
		k.b.Store(k.bf16Bits(v), p).SetAlignment(2)
		return
	}
	k.b.Store(v, p).SetAlignment(k.e.sizeOf(t))
}

// isBF16 reports whether t is the bf16 storage type or a vector of it.
func (e *Emitter) isBF16(t llvm.Type) bool {
	if t.Kind() == llvm.VectorTypeKind {
		t = t.ElementType()
	}
	return t.Kind() == llvm.BFloatTypeKind
}

// computeOf is the type values of storage type t compute in: f32 (vectors
// of f32) for bf16, t itself otherwise.
func (e *Emitter) computeOf(t llvm.Type) llvm.Type {
	if e.isBF16(t) {
		return e.withElem(t, e.f32)
	}
	return t
}

// withElem is t (a scalar or a vector) with elem as its element type.
func (e *Emitter) withElem(t, elem llvm.Type) llvm.Type {
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.VectorType(elem, t.VectorSize())
	}
	return elem
}

// widenBF16 turns bf16 bits (i16 or a vector of i16) into f32, exactly.
func (k *kfn) widenBF16(bits llvm.Value) llvm.Value {
	b, e := k.b, k.e
	t := bits.Type()
	wide := b.ZExt(bits, e.withElem(t, e.i32), "")
	return b.BitCast(b.Shl(wide, k.intSplat(wide.Type(), 16), ""), e.withElem(t, e.f32), "")
}

// bf16Bits rounds f32 values to bf16 bits (ties to even, as ir.BF16FromFloat32:
// a NaN stays a quiet NaN, overflow goes to ±Inf) in integer arithmetic, so
// that every target vectorizes it without a libcall.
func (k *kfn) bf16Bits(v llvm.Value) llvm.Value {
	b, e := k.b, k.e
	it := e.withElem(v.Type(), e.i32)
	x := b.BitCast(v, it, "")
	hi := b.LShr(x, k.intSplat(it, 16), "")
	odd := b.And(hi, k.intSplat(it, 1), "")
	r := b.LShr(b.Add(b.Add(x, k.intSplat(it, 0x7fff), ""), odd, ""), k.intSplat(it, 16), "")
	nan := b.FCmp(llvm.FloatUNO, v, v, "")
	r = b.Select(nan, b.Or(hi, k.intSplat(it, 0x40), ""), r, "")
	return b.Trunc(r, e.withElem(v.Type(), e.i16), "")
}

// intSplat is the integer constant c of type t (a scalar or a vector).
func (k *kfn) intSplat(t llvm.Type, c int64) llvm.Value {
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.ConstSplat(t.VectorSize(), llvm.ConstInt(t.ElementType(), c))
	}
	return llvm.ConstInt(t, c)
}

// loadAt and storeAt access element idx of buffer p.
func (k *kfn) loadAt(t llvm.Type, p, idx llvm.Value) llvm.Value { return k.load(t, k.at(t, p, idx)) }
func (k *kfn) storeAt(v llvm.Value, t llvm.Type, p, idx llvm.Value) {
	k.store(v, t, k.at(t, p, idx))
}

func (k *kfn) add(x, y llvm.Value) llvm.Value { return k.b.NSWAdd(x, y, "") }
func (k *kfn) sub(x, y llvm.Value) llvm.Value { return k.b.NSWSub(x, y, "") }
func (k *kfn) mul(x, y llvm.Value) llvm.Value { return k.b.NSWMul(x, y, "") }

// addc, mulc: with a constant operand (folded away when trivial).
func (k *kfn) addc(x llvm.Value, c int64) llvm.Value {
	if c == 0 {
		return x
	}
	return k.add(x, k.c64(c))
}
func (k *kfn) mulc(x llvm.Value, c int64) llvm.Value {
	switch c {
	case 0:
		return k.c64(0)
	case 1:
		return x
	}
	return k.mul(x, k.c64(c))
}

// divc and remc divide a non-negative i64 by a positive constant.
func (k *kfn) divc(x llvm.Value, c int64) llvm.Value {
	if c == 1 {
		return x
	}
	return k.b.UDiv(x, k.c64(c), "")
}
func (k *kfn) remc(x llvm.Value, c int64) llvm.Value {
	if c == 1 {
		return k.c64(0)
	}
	return k.b.URem(x, k.c64(c), "")
}

func (k *kfn) min(x, y llvm.Value) llvm.Value {
	return k.b.Select(k.b.ICmp(llvm.IntSLT, x, y, ""), x, y, "")
}
func (k *kfn) max(x, y llvm.Value) llvm.Value {
	return k.b.Select(k.b.ICmp(llvm.IntSGT, x, y, ""), x, y, "")
}

// loop emits `for i := lo; i < hi; i++ { body(i) }` over i64.
func (k *kfn) loop(lo, hi llvm.Value, body func(i llvm.Value)) {
	b := k.b
	pre := b.InsertBlock()
	head := k.f.AppendBasicBlock("loop")
	in := k.f.AppendBasicBlock("body")
	exit := k.f.AppendBasicBlock("exit")
	b.Br(head)
	b.SetInsertPointAtEnd(head)
	i := b.Phi(k.e.i64, "i")
	b.CondBr(b.ICmp(llvm.IntSLT, i, hi, ""), in, exit)
	b.SetInsertPointAtEnd(in)
	body(i)
	next := k.add(i, k.c64(1))
	latch := b.InsertBlock()
	b.Br(head)
	i.AddIncoming([]llvm.Value{lo, next}, []llvm.BasicBlock{pre, latch})
	b.SetInsertPointAtEnd(exit)
}

// loopN is loop over [0, n) for a constant n.
func (k *kfn) loopN(n int64, body func(i llvm.Value)) { k.loop(k.c64(0), k.c64(n), body) }

// when emits `if cond { then() }`.
func (k *kfn) when(cond llvm.Value, then func()) {
	b := k.b
	yes := k.f.AppendBasicBlock("then")
	join := k.f.AppendBasicBlock("endif")
	b.CondBr(cond, yes, join)
	b.SetInsertPointAtEnd(yes)
	then()
	b.Br(join)
	b.SetInsertPointAtEnd(join)
}

// variable is a stack slot in the entry block, promoted to SSA by mem2reg;
// it carries values across loop iterations without hand-written phis.
func (k *kfn) variable(t llvm.Type, init llvm.Value) llvm.Value {
	p := k.e.ab.Alloca(t, "")
	k.store(init, t, p)
	return p
}

// share returns thread tid's part [s, e) of n units, split into nthreads
// contiguous parts whose sizes are multiples of align (the last may be
// shorter; trailing threads may get nothing).
func (k *kfn) share(n, align int64) (s, e llvm.Value) {
	N := k.c64(n)
	per := k.b.UDiv(k.add(N, k.sub(k.nth, k.c64(1))), k.nth, "per")
	if align > 1 {
		per = k.mulc(k.divc(k.addc(per, align-1), align), align)
	}
	s = k.min(k.mul(k.tid, per), N)
	e = k.min(k.add(s, per), N)
	k.work.threads = max(k.work.threads, (n+max(align, 1)-1)/max(align, 1))
	return s, e
}

// sizeOf is the store size of a scalar type.
func (e *Emitter) sizeOf(t llvm.Type) int {
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

// scalarType is the LLVM type values of dtype d are computed in: bf16
// values compute in f32.
func (e *Emitter) scalarType(d ir.DType) (llvm.Type, error) {
	switch d {
	case ir.F32, ir.BF16:
		return e.f32, nil
	case ir.F64:
		return e.f64, nil
	case ir.I64:
		return e.i64, nil
	case ir.I32:
		return e.i32, nil
	case ir.U8:
		return e.i8, nil
	}
	return llvm.Type{}, fmt.Errorf("dtype %v is not supported by the CPU kernels (f32, f64, bf16, i32, i64 and u8 are)", d)
}

// storageType is the LLVM element type of a buffer of dtype d: LLVM's
// bfloat for bf16 (load and store convert, see load), else scalarType.
func (e *Emitter) storageType(d ir.DType) (llvm.Type, error) {
	if d == ir.BF16 {
		return e.bf16, nil
	}
	return e.scalarType(d)
}

// bitsType is an integer type of d's size, for copies that move bits.
func (e *Emitter) bitsType(d ir.DType) (llvm.Type, error) {
	switch d.Size() {
	case 1:
		return e.i8, nil
	case 2:
		return e.ctx.Int16Type(), nil
	case 4:
		return e.i32, nil
	case 8:
		return e.i64, nil
	}
	return llvm.Type{}, fmt.Errorf("dtype %v has no storage size", d)
}

// intrinsic returns the declaration of an LLVM intrinsic.
func (e *Emitter) intrinsic(name string, types ...llvm.Type) (llvm.Function, error) {
	return e.mod.Intrinsic(name, types...)
}

// callIntrinsic calls an overloaded intrinsic on args, all of type t.
func (k *kfn) callIntrinsic(name string, t llvm.Type, args ...llvm.Value) (llvm.Value, error) {
	if k.e.gpu() {
		if v, ok := k.gpuMath(name, t, args); ok {
			return v, nil
		}
	}
	f, err := k.e.intrinsic(name, t)
	if err != nil {
		return llvm.Value{}, err
	}
	return k.b.Call(f, args, ""), nil
}

// groupParams returns read-only buffer parameters for the inputs of g
// followed by writable ones for its outputs, honouring g.InPlace.
func groupParams(g *Group) []param {
	ps := make([]param, 0, len(g.Inputs)+len(g.Outputs))
	for _, in := range g.Inputs {
		ps = append(ps, param{bytes: in.Type.Bytes(), readonly: true, alias: -1})
	}
	for i, o := range g.Outputs {
		p := param{bytes: o.Type.Bytes(), alias: -1}
		if j, ok := g.InPlace[i]; ok {
			p.alias = j
		}
		ps = append(ps, p)
	}
	return ps
}
