package llvm

/*
#include <stdlib.h>
#include <llvm-c/Core.h>
*/
import "C"

// Value is an LLVM value: a constant, an instruction, an argument or a
// global. The zero Value is invalid.
type Value struct{ c C.LLVMValueRef }

// IsNil reports whether v is the zero Value.
func (v Value) IsNil() bool { return v.c == nil }

// Type returns v's type.
func (v Value) Type() Type { return Type{C.LLVMTypeOf(v.c)} }

// Name returns v's name, or "" for an anonymous value.
func (v Value) Name() string {
	var n C.size_t
	p := C.LLVMGetValueName2(v.c, &n)
	return C.GoStringN(p, C.int(n))
}

// SetName names v; LLVM appends a suffix if the name is taken.
func (v Value) SetName(name string) {
	p := cstr(name)
	defer freeStr(p)
	C.LLVMSetValueName2(v.c, p, C.size_t(len(name)))
}

// String prints v as in textual IR.
func (v Value) String() string { return takeMessage(C.LLVMPrintValueToString(v.c)) }

// IsConstant reports whether v is a constant.
func (v Value) IsConstant() bool { return C.LLVMIsConstant(v.c) != 0 }

// IsInstruction reports whether v is an instruction.
func (v Value) IsInstruction() bool { return C.LLVMIsAInstruction(v.c) != nil }

// SetAlignment sets the alignment in bytes of a load, store, alloca or
// global. Kernels use it to promise vector-friendly alignment.
func (v Value) SetAlignment(bytes int) { C.LLVMSetAlignment(v.c, C.unsigned(bytes)) }

// Alignment returns the alignment set on a load, store, alloca or global.
func (v Value) Alignment() int { return int(C.LLVMGetAlignment(v.c)) }

// FastMathFlags are the floating-point relaxations allowed on one
// instruction, as in LLVMFastMathFlags.
type FastMathFlags uint32

// Fast-math flags; FastMathAll is LLVM's "fast".
const (
	FastMathAllowReassoc    FastMathFlags = C.LLVMFastMathAllowReassoc
	FastMathNoNaNs          FastMathFlags = C.LLVMFastMathNoNaNs
	FastMathNoInfs          FastMathFlags = C.LLVMFastMathNoInfs
	FastMathNoSignedZeros   FastMathFlags = C.LLVMFastMathNoSignedZeros
	FastMathAllowReciprocal FastMathFlags = C.LLVMFastMathAllowReciprocal
	FastMathAllowContract   FastMathFlags = C.LLVMFastMathAllowContract
	FastMathApproxFunc      FastMathFlags = C.LLVMFastMathApproxFunc
	FastMathNone            FastMathFlags = C.LLVMFastMathNone
	FastMathAll             FastMathFlags = C.LLVMFastMathAll
)

// SetFastMathFlags sets the fast-math flags of a floating-point
// instruction and reports whether v could take them; constants folded by
// the builder cannot, and are left alone.
func (v Value) SetFastMathFlags(f FastMathFlags) bool {
	if C.LLVMIsAInstruction(v.c) == nil || C.LLVMCanValueUseFastMathFlags(v.c) == 0 {
		return false
	}
	C.LLVMSetFastMathFlags(v.c, C.LLVMFastMathFlags(f))
	return true
}

// FastMathFlags returns the fast-math flags of a floating-point instruction.
func (v Value) FastMathFlags() FastMathFlags {
	if C.LLVMIsAInstruction(v.c) == nil || C.LLVMCanValueUseFastMathFlags(v.c) == 0 {
		return FastMathNone
	}
	return FastMathFlags(C.LLVMGetFastMathFlags(v.c))
}

// AddIncoming adds (value, predecessor) pairs to a phi node; it panics if
// the slices differ in length.
func (v Value) AddIncoming(vals []Value, blocks []BasicBlock) {
	if len(vals) != len(blocks) {
		panic("llvm: AddIncoming: len(vals) != len(blocks)")
	}
	if len(vals) == 0 {
		return
	}
	vr := valueRefs(vals)
	br := make([]C.LLVMBasicBlockRef, len(blocks))
	for i, b := range blocks {
		br[i] = b.c
	}
	C.LLVMAddIncoming(v.c, &vr[0], &br[0], C.unsigned(len(vr)))
}

// ConstInt is an integer (or integer vector splat, for vector t) constant
// holding v, sign-extended or truncated to t's width.
func ConstInt(t Type, v int64) Value {
	return Value{C.LLVMConstInt(t.c, C.ulonglong(uint64(v)), 1)}
}

// ConstFloat is a floating-point constant of type t holding v, rounded to t.
func ConstFloat(t Type, v float64) Value { return Value{C.LLVMConstReal(t.c, C.double(v))} }

// ConstVector is a vector constant of the given constant elements.
func ConstVector(elems []Value) Value {
	refs := valueRefs(elems)
	return Value{C.LLVMConstVector(firstValue(refs), C.unsigned(len(refs)))}
}

// ConstSplat is a vector constant of n copies of the constant v.
func ConstSplat(n int, v Value) Value {
	refs := make([]C.LLVMValueRef, n)
	for i := range refs {
		refs[i] = v.c
	}
	return Value{C.LLVMConstVector(firstValue(refs), C.unsigned(n))}
}

// ConstNull is the all-zero constant of t (zeroinitializer for aggregates).
func ConstNull(t Type) Value { return Value{C.LLVMConstNull(t.c)} }

// Poison is the poison value of t, the "don't care" value.
func Poison(t Type) Value { return Value{C.LLVMGetPoison(t.c)} }

// BasicBlock is a straight-line sequence of instructions ending in a
// terminator.
type BasicBlock struct{ c C.LLVMBasicBlockRef }

// IsNil reports whether b is the zero BasicBlock.
func (b BasicBlock) IsNil() bool { return b.c == nil }

// Name returns the block's label.
func (b BasicBlock) Name() string { return C.GoString(C.LLVMGetBasicBlockName(b.c)) }

// Parent returns the function containing b.
func (b BasicBlock) Parent() Function { return Function{Value{C.LLVMGetBasicBlockParent(b.c)}} }

// Terminator returns b's terminator, or the zero Value if it has none yet.
func (b BasicBlock) Terminator() Value { return Value{C.LLVMGetBasicBlockTerminator(b.c)} }
