package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/kernel"
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
	*kernel.Fn
	e *Emitter
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
	if _, dup := e.Mod.NamedFunction(name); dup {
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
		types = append(types, e.Ptr)
	}
	types = append(types, e.I64, e.I64, e.Ptr)
	body := e.Mod.AddFunction(name+".body", llvm.FunctionType(e.Void, types, false))
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
	k := &kfn{Fn: &kernel.Fn{Types: e.Types, B: e.b, AB: e.ab, F: body}, e: e}
	k.P = make([]llvm.Value, len(params))
	for a := range params {
		k.P[a] = body.Param(slot[a])
	}
	k.Tid, k.Nth, k.Scr = body.Param(len(first)), body.Param(len(first)+1), body.Param(len(first)+2)
	k.Entry = body.AppendBasicBlock("entry")
	start := body.AppendBasicBlock("start")
	run := body.AppendBasicBlock("run")
	done := body.AppendBasicBlock("done")
	e.ab.SetInsertPointAtEnd(k.Entry)
	e.b.SetInsertPointAtEnd(start)
	zero := k.C64(0)
	ok := e.b.And(e.b.ICmp(llvm.IntSGE, k.Tid, zero, ""), e.b.ICmp(llvm.IntSLT, k.Tid, k.Nth, ""), "")
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

	e.firsts[name] = first
	return e.be.export(k, name, params, slot, first)
}

// scalarType is the LLVM type values of dtype d are computed in: bf16
// values compute in f32.
func (e *Emitter) scalarType(d ir.DType) (llvm.Type, error) {
	switch d {
	case ir.F32, ir.BF16:
		return e.F32, nil
	case ir.F64:
		return e.F64, nil
	case ir.I64:
		return e.I64, nil
	case ir.I32:
		return e.I32, nil
	case ir.U8:
		return e.I8, nil
	}
	return llvm.Type{}, fmt.Errorf("dtype %v is not supported by the CPU kernels (f32, f64, bf16, i32, i64 and u8 are)", d)
}

// storageType is the LLVM element type of a buffer of dtype d: LLVM's
// bfloat for bf16 (load and store convert, see load), else scalarType.
func (e *Emitter) storageType(d ir.DType) (llvm.Type, error) {
	if d == ir.BF16 {
		return e.BF16, nil
	}
	return e.scalarType(d)
}

// bitsType is an integer type of d's size, for copies that move bits.
func (e *Emitter) bitsType(d ir.DType) (llvm.Type, error) {
	switch d.Size() {
	case 1:
		return e.I8, nil
	case 2:
		return e.Ctx.Int16Type(), nil
	case 4:
		return e.I32, nil
	case 8:
		return e.I64, nil
	}
	return llvm.Type{}, fmt.Errorf("dtype %v has no storage size", d)
}

// callIntrinsic calls an overloaded intrinsic on args, all of type t.
func (k *kfn) callIntrinsic(name string, t llvm.Type, args ...llvm.Value) (llvm.Value, error) {
	if v, ok := k.e.be.math(k, name, t, args); ok {
		return v, nil
	}
	f, err := k.e.Intrinsic(name, t)
	if err != nil {
		return llvm.Value{}, err
	}
	return k.B.Call(f, args, ""), nil
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

// export defines the exported wrapper of the CPU ABI (lower.go): it loads
// the buffer pointers from args and calls the body.
func (cpuBackend) export(k *kfn, name string, params []param, slot, first []int) error {
	e, body := k.e, k.F
	w := e.Mod.AddFunction(name, llvm.FunctionType(e.Void, []llvm.Type{e.Ptr, e.I64, e.I64, e.Ptr}, false))
	if err := e.stamp(w); err != nil {
		return err
	}
	e.b.SetInsertPointAtEnd(w.AppendBasicBlock("entry"))
	args := make([]llvm.Value, 0, len(first)+3)
	for _, i := range first {
		slotPtr := e.b.InBoundsGEP(e.Ptr, w.Param(0), []llvm.Value{llvm.ConstInt(e.I64, int64(i))}, "")
		v := e.b.Load(e.Ptr, slotPtr, fmt.Sprintf("arg%d", i))
		v.SetAlignment(8)
		args = append(args, v)
	}
	args = append(args, w.Param(1), w.Param(2), w.Param(3))
	e.b.Call(body, args, "")
	e.b.RetVoid()
	return nil
}
