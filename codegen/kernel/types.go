package kernel

import "gitee.com/gidean/conv-linn/codegen/llvm"

// Types are the LLVM types of one module's kernels. BF16 marks bf16
// storage: buffers of LLVM bfloat hold the bits, values compute in f32
// (see Fn.Load).
type Types struct {
	Ctx llvm.Context
	Mod llvm.Module

	Void, I1, I8, I16, I32, I64, F32, F64, Ptr, BF16 llvm.Type
}

// NewTypes returns the types of module m's context.
func NewTypes(m llvm.Module) *Types {
	ctx := m.Context()
	return &Types{
		Ctx: ctx, Mod: m,
		Void: ctx.VoidType(), I1: ctx.Int1Type(), I8: ctx.Int8Type(), I16: ctx.Int16Type(),
		I32: ctx.Int32Type(), I64: ctx.Int64Type(),
		F32: ctx.FloatType(), F64: ctx.DoubleType(), Ptr: ctx.PointerType(0),
		BF16: ctx.BFloatType(),
	}
}

// Intrinsic returns the declaration of an LLVM intrinsic in the module.
func (e *Types) Intrinsic(name string, types ...llvm.Type) (llvm.Function, error) {
	return e.Mod.Intrinsic(name, types...)
}

// ElemKind is the type kind of t's elements (t itself for a scalar).
func ElemKind(t llvm.Type) llvm.TypeKind {
	if t.Kind() == llvm.VectorTypeKind {
		return t.ElementType().Kind()
	}
	return t.Kind()
}
