package llvm

/*
#include <stdlib.h>
#include <llvm-c/Core.h>
*/
import "C"

// Builder appends instructions at an insertion point. It can carry default
// fast-math flags that it stamps on every floating-point instruction it
// creates. A Builder is not safe for concurrent use.
type Builder struct {
	c   C.LLVMBuilderRef
	fmf FastMathFlags
}

// NewBuilder creates a builder in c with no insertion point. Dispose it when
// done.
func (c Context) NewBuilder() *Builder { return &Builder{c: C.LLVMCreateBuilderInContext(c.c)} }

// Dispose frees the builder (not the instructions it built).
func (b *Builder) Dispose() { C.LLVMDisposeBuilder(b.c) }

// SetInsertPointAtEnd makes later instructions go at the end of bb.
func (b *Builder) SetInsertPointAtEnd(bb BasicBlock) { C.LLVMPositionBuilderAtEnd(b.c, bb.c) }

// InsertBlock returns the block the builder is appending to.
func (b *Builder) InsertBlock() BasicBlock { return BasicBlock{C.LLVMGetInsertBlock(b.c)} }

// SetFastMath sets the fast-math flags stamped on every later
// floating-point instruction (arithmetic, fcmp, and calls returning
// floating point). FastMathNone turns this off.
func (b *Builder) SetFastMath(f FastMathFlags) { b.fmf = f }

// FastMath returns the builder's default fast-math flags.
func (b *Builder) FastMath() FastMathFlags { return b.fmf }

// fp applies the builder's fast-math flags to v and returns it.
func (b *Builder) fp(v Value) Value {
	if b.fmf != FastMathNone {
		v.SetFastMathFlags(b.fmf)
	}
	return v
}

// binop builds a two-operand instruction with opcode op.
func (b *Builder) binop(op C.LLVMOpcode, x, y Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildBinOp(b.c, op, x.c, y.c, n)}
}

// wrapFlags sets nsw/nuw on v when it is still an instruction after folding.
func wrapFlags(v Value, nsw, nuw bool) Value {
	if v.IsInstruction() {
		if nsw {
			C.LLVMSetNSW(v.c, 1)
		}
		if nuw {
			C.LLVMSetNUW(v.c, 1)
		}
	}
	return v
}

// Add is integer x + y, wrapping.
func (b *Builder) Add(x, y Value, name string) Value { return b.binop(C.LLVMAdd, x, y, name) }

// NSWAdd is x + y where signed overflow is poison; use it for index math so
// LLVM can widen and vectorize loops.
func (b *Builder) NSWAdd(x, y Value, name string) Value {
	return wrapFlags(b.binop(C.LLVMAdd, x, y, name), true, false)
}

// NUWAdd is x + y where unsigned overflow is poison.
func (b *Builder) NUWAdd(x, y Value, name string) Value {
	return wrapFlags(b.binop(C.LLVMAdd, x, y, name), false, true)
}

// Sub is integer x - y, wrapping.
func (b *Builder) Sub(x, y Value, name string) Value { return b.binop(C.LLVMSub, x, y, name) }

// NSWSub is x - y where signed overflow is poison.
func (b *Builder) NSWSub(x, y Value, name string) Value {
	return wrapFlags(b.binop(C.LLVMSub, x, y, name), true, false)
}

// Mul is integer x * y, wrapping.
func (b *Builder) Mul(x, y Value, name string) Value { return b.binop(C.LLVMMul, x, y, name) }

// NSWMul is x * y where signed overflow is poison.
func (b *Builder) NSWMul(x, y Value, name string) Value {
	return wrapFlags(b.binop(C.LLVMMul, x, y, name), true, false)
}

// NUWMul is x * y where unsigned overflow is poison.
func (b *Builder) NUWMul(x, y Value, name string) Value {
	return wrapFlags(b.binop(C.LLVMMul, x, y, name), false, true)
}

// SDiv is signed integer division.
func (b *Builder) SDiv(x, y Value, name string) Value { return b.binop(C.LLVMSDiv, x, y, name) }

// UDiv is unsigned integer division.
func (b *Builder) UDiv(x, y Value, name string) Value { return b.binop(C.LLVMUDiv, x, y, name) }

// SRem is signed integer remainder.
func (b *Builder) SRem(x, y Value, name string) Value { return b.binop(C.LLVMSRem, x, y, name) }

// URem is unsigned integer remainder.
func (b *Builder) URem(x, y Value, name string) Value { return b.binop(C.LLVMURem, x, y, name) }

// Shl is x << y.
func (b *Builder) Shl(x, y Value, name string) Value { return b.binop(C.LLVMShl, x, y, name) }

// LShr is logical x >> y.
func (b *Builder) LShr(x, y Value, name string) Value { return b.binop(C.LLVMLShr, x, y, name) }

// AShr is arithmetic x >> y.
func (b *Builder) AShr(x, y Value, name string) Value { return b.binop(C.LLVMAShr, x, y, name) }

// And is bitwise x & y.
func (b *Builder) And(x, y Value, name string) Value { return b.binop(C.LLVMAnd, x, y, name) }

// Or is bitwise x | y.
func (b *Builder) Or(x, y Value, name string) Value { return b.binop(C.LLVMOr, x, y, name) }

// Xor is bitwise x ^ y.
func (b *Builder) Xor(x, y Value, name string) Value { return b.binop(C.LLVMXor, x, y, name) }

// FAdd is floating-point x + y.
func (b *Builder) FAdd(x, y Value, name string) Value {
	return b.fp(b.binop(C.LLVMFAdd, x, y, name))
}

// FSub is floating-point x - y.
func (b *Builder) FSub(x, y Value, name string) Value {
	return b.fp(b.binop(C.LLVMFSub, x, y, name))
}

// FMul is floating-point x * y.
func (b *Builder) FMul(x, y Value, name string) Value {
	return b.fp(b.binop(C.LLVMFMul, x, y, name))
}

// FDiv is floating-point x / y.
func (b *Builder) FDiv(x, y Value, name string) Value {
	return b.fp(b.binop(C.LLVMFDiv, x, y, name))
}

// FRem is the floating-point remainder of x / y (C fmod).
func (b *Builder) FRem(x, y Value, name string) Value {
	return b.fp(b.binop(C.LLVMFRem, x, y, name))
}

// FNeg is floating-point -x.
func (b *Builder) FNeg(x Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return b.fp(Value{C.LLVMBuildFNeg(b.c, x.c, n)})
}

// IntPredicate is an integer comparison, as in LLVMIntPredicate.
type IntPredicate int

// Integer comparison predicates.
const (
	IntEQ  IntPredicate = C.LLVMIntEQ
	IntNE  IntPredicate = C.LLVMIntNE
	IntUGT IntPredicate = C.LLVMIntUGT
	IntUGE IntPredicate = C.LLVMIntUGE
	IntULT IntPredicate = C.LLVMIntULT
	IntULE IntPredicate = C.LLVMIntULE
	IntSGT IntPredicate = C.LLVMIntSGT
	IntSGE IntPredicate = C.LLVMIntSGE
	IntSLT IntPredicate = C.LLVMIntSLT
	IntSLE IntPredicate = C.LLVMIntSLE
)

// FloatPredicate is a floating-point comparison, as in LLVMRealPredicate.
// O* predicates are false if either operand is NaN; U* ones are true.
type FloatPredicate int

// Floating-point comparison predicates.
const (
	FloatFalse FloatPredicate = C.LLVMRealPredicateFalse
	FloatOEQ   FloatPredicate = C.LLVMRealOEQ
	FloatOGT   FloatPredicate = C.LLVMRealOGT
	FloatOGE   FloatPredicate = C.LLVMRealOGE
	FloatOLT   FloatPredicate = C.LLVMRealOLT
	FloatOLE   FloatPredicate = C.LLVMRealOLE
	FloatONE   FloatPredicate = C.LLVMRealONE
	FloatORD   FloatPredicate = C.LLVMRealORD
	FloatUNO   FloatPredicate = C.LLVMRealUNO
	FloatUEQ   FloatPredicate = C.LLVMRealUEQ
	FloatUGT   FloatPredicate = C.LLVMRealUGT
	FloatUGE   FloatPredicate = C.LLVMRealUGE
	FloatULT   FloatPredicate = C.LLVMRealULT
	FloatULE   FloatPredicate = C.LLVMRealULE
	FloatUNE   FloatPredicate = C.LLVMRealUNE
	FloatTrue  FloatPredicate = C.LLVMRealPredicateTrue
)

// ICmp compares integers or pointers, giving i1 (or a vector of i1).
func (b *Builder) ICmp(p IntPredicate, x, y Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildICmp(b.c, C.LLVMIntPredicate(p), x.c, y.c, n)}
}

// FCmp compares floating-point values, giving i1 (or a vector of i1).
func (b *Builder) FCmp(p FloatPredicate, x, y Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return b.fp(Value{C.LLVMBuildFCmp(b.c, C.LLVMRealPredicate(p), x.c, y.c, n)})
}

// Select is cond ? x : y (element-wise for a vector cond).
func (b *Builder) Select(cond, x, y Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildSelect(b.c, cond.c, x.c, y.c, n)}
}

// Phi starts a phi node of type t; fill it with Value.AddIncoming.
func (b *Builder) Phi(t Type, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildPhi(b.c, t.c, n)}
}

// Br jumps to dest.
func (b *Builder) Br(dest BasicBlock) Value { return Value{C.LLVMBuildBr(b.c, dest.c)} }

// CondBr jumps to then if cond is true, else to els.
func (b *Builder) CondBr(cond Value, then, els BasicBlock) Value {
	return Value{C.LLVMBuildCondBr(b.c, cond.c, then.c, els.c)}
}

// Ret returns v.
func (b *Builder) Ret(v Value) Value { return Value{C.LLVMBuildRet(b.c, v.c)} }

// RetVoid returns from a void function.
func (b *Builder) RetVoid() Value { return Value{C.LLVMBuildRetVoid(b.c)} }

// Unreachable marks a point control never reaches.
func (b *Builder) Unreachable() Value { return Value{C.LLVMBuildUnreachable(b.c)} }

// Alloca reserves a stack slot of type t and returns its address. Put
// allocas in the entry block so mem2reg can promote them.
func (b *Builder) Alloca(t Type, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildAlloca(b.c, t.c, n)}
}

// Load reads a value of type t from ptr. Set its alignment with
// Value.SetAlignment.
func (b *Builder) Load(t Type, ptr Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildLoad2(b.c, t.c, ptr.c, n)}
}

// Store writes v to ptr and returns the store instruction.
func (b *Builder) Store(v, ptr Value) Value { return Value{C.LLVMBuildStore(b.c, v.c, ptr.c)} }

// GEP computes the address ptr + indices over element type t, without
// promising the result stays inside the object.
func (b *Builder) GEP(t Type, ptr Value, indices []Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	refs := valueRefs(indices)
	return Value{C.LLVMBuildGEP2(b.c, t.c, ptr.c, firstValue(refs), C.unsigned(len(refs)), n)}
}

// InBoundsGEP is GEP with the promise that the address stays inside the
// object ptr points into, which lets LLVM reason about aliasing and
// vectorize.
func (b *Builder) InBoundsGEP(t Type, ptr Value, indices []Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	refs := valueRefs(indices)
	return Value{C.LLVMBuildInBoundsGEP2(b.c, t.c, ptr.c, firstValue(refs), C.unsigned(len(refs)), n)}
}

// cast builds a conversion with opcode op.
func (b *Builder) cast(op C.LLVMOpcode, v Value, t Type, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildCast(b.c, op, v.c, t.c, n)}
}

// SIToFP converts a signed integer to floating point.
func (b *Builder) SIToFP(v Value, t Type, name string) Value {
	return b.cast(C.LLVMSIToFP, v, t, name)
}

// UIToFP converts an unsigned integer to floating point.
func (b *Builder) UIToFP(v Value, t Type, name string) Value {
	return b.cast(C.LLVMUIToFP, v, t, name)
}

// FPToSI converts floating point to a signed integer, rounding toward zero.
func (b *Builder) FPToSI(v Value, t Type, name string) Value {
	return b.cast(C.LLVMFPToSI, v, t, name)
}

// FPToUI converts floating point to an unsigned integer, rounding toward zero.
func (b *Builder) FPToUI(v Value, t Type, name string) Value {
	return b.cast(C.LLVMFPToUI, v, t, name)
}

// FPExt widens floating point (e.g. half or bfloat to float).
func (b *Builder) FPExt(v Value, t Type, name string) Value {
	return b.cast(C.LLVMFPExt, v, t, name)
}

// FPTrunc narrows floating point, rounding to nearest even.
func (b *Builder) FPTrunc(v Value, t Type, name string) Value {
	return b.cast(C.LLVMFPTrunc, v, t, name)
}

// BitCast reinterprets v's bits as type t of the same size.
func (b *Builder) BitCast(v Value, t Type, name string) Value {
	return b.cast(C.LLVMBitCast, v, t, name)
}

// ZExt widens an integer with zeros.
func (b *Builder) ZExt(v Value, t Type, name string) Value { return b.cast(C.LLVMZExt, v, t, name) }

// SExt widens an integer with its sign bit.
func (b *Builder) SExt(v Value, t Type, name string) Value { return b.cast(C.LLVMSExt, v, t, name) }

// Trunc narrows an integer, dropping high bits.
func (b *Builder) Trunc(v Value, t Type, name string) Value {
	return b.cast(C.LLVMTrunc, v, t, name)
}

// PtrToInt converts a pointer to an integer.
func (b *Builder) PtrToInt(v Value, t Type, name string) Value {
	return b.cast(C.LLVMPtrToInt, v, t, name)
}

// IntToPtr converts an integer to a pointer.
func (b *Builder) IntToPtr(v Value, t Type, name string) Value {
	return b.cast(C.LLVMIntToPtr, v, t, name)
}

// AddrSpaceCast converts a pointer between address spaces (e.g. NVPTX
// global to generic).
func (b *Builder) AddrSpaceCast(v Value, t Type, name string) Value {
	return b.cast(C.LLVMAddrSpaceCast, v, t, name)
}

// Call calls f with args. A call returning floating point gets the
// builder's fast-math flags.
func (b *Builder) Call(f Function, args []Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	refs := valueRefs(args)
	v := Value{C.LLVMBuildCall2(b.c, f.FunctionType().c, f.c, firstValue(refs), C.unsigned(len(refs)), n)}
	if cc := f.CallConv(); cc != CCallConv {
		C.LLVMSetInstructionCallConv(v.c, C.unsigned(cc))
	}
	return b.fp(v)
}

// ExtractElement reads element idx of vector vec.
func (b *Builder) ExtractElement(vec, idx Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildExtractElement(b.c, vec.c, idx.c, n)}
}

// InsertElement returns vec with element idx replaced by elt.
func (b *Builder) InsertElement(vec, elt, idx Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildInsertElement(b.c, vec.c, elt.c, idx.c, n)}
}

// ShuffleVector picks elements of the concatenation x:y by the constant
// i32 vector mask.
func (b *Builder) ShuffleVector(x, y, mask Value, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildShuffleVector(b.c, x.c, y.c, mask.c, n)}
}

// VectorSplat broadcasts the scalar v into an n-element vector
// (insertelement into poison, then a zero-mask shufflevector).
func (b *Builder) VectorSplat(n int, v Value, name string) Value {
	ctx := v.Type().Context()
	i32 := ctx.Int32Type()
	vt := VectorType(v.Type(), n)
	one := b.InsertElement(Poison(vt), v, ConstInt(i32, 0), "")
	return b.ShuffleVector(one, Poison(vt), ConstNull(VectorType(i32, n)), name)
}
