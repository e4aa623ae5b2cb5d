package llvm

/*
#include <llvm-c/Core.h>
*/
import "C"

// Type is an LLVM type. The zero Type is invalid.
type Type struct{ c C.LLVMTypeRef }

// TypeKind classifies a Type.
type TypeKind int

// Type kinds, as in LLVMTypeKind.
const (
	VoidTypeKind     TypeKind = C.LLVMVoidTypeKind
	HalfTypeKind     TypeKind = C.LLVMHalfTypeKind
	BFloatTypeKind   TypeKind = C.LLVMBFloatTypeKind
	FloatTypeKind    TypeKind = C.LLVMFloatTypeKind
	DoubleTypeKind   TypeKind = C.LLVMDoubleTypeKind
	LabelTypeKind    TypeKind = C.LLVMLabelTypeKind
	IntegerTypeKind  TypeKind = C.LLVMIntegerTypeKind
	FunctionTypeKind TypeKind = C.LLVMFunctionTypeKind
	StructTypeKind   TypeKind = C.LLVMStructTypeKind
	ArrayTypeKind    TypeKind = C.LLVMArrayTypeKind
	PointerTypeKind  TypeKind = C.LLVMPointerTypeKind
	VectorTypeKind   TypeKind = C.LLVMVectorTypeKind
	MetadataTypeKind TypeKind = C.LLVMMetadataTypeKind
	TokenTypeKind    TypeKind = C.LLVMTokenTypeKind
)

// VoidType is the type of functions that return nothing.
func (c Context) VoidType() Type { return Type{C.LLVMVoidTypeInContext(c.c)} }

// Int1Type is i1, the type of comparisons.
func (c Context) Int1Type() Type { return Type{C.LLVMInt1TypeInContext(c.c)} }

// Int8Type is i8.
func (c Context) Int8Type() Type { return Type{C.LLVMInt8TypeInContext(c.c)} }

// Int16Type is i16.
func (c Context) Int16Type() Type { return Type{C.LLVMInt16TypeInContext(c.c)} }

// Int32Type is i32.
func (c Context) Int32Type() Type { return Type{C.LLVMInt32TypeInContext(c.c)} }

// Int64Type is i64.
func (c Context) Int64Type() Type { return Type{C.LLVMInt64TypeInContext(c.c)} }

// IntType is an integer of the given bit width.
func (c Context) IntType(bits int) Type { return Type{C.LLVMIntTypeInContext(c.c, C.unsigned(bits))} }

// HalfType is IEEE binary16.
func (c Context) HalfType() Type { return Type{C.LLVMHalfTypeInContext(c.c)} }

// BFloatType is bfloat16.
func (c Context) BFloatType() Type { return Type{C.LLVMBFloatTypeInContext(c.c)} }

// FloatType is IEEE binary32.
func (c Context) FloatType() Type { return Type{C.LLVMFloatTypeInContext(c.c)} }

// DoubleType is IEEE binary64.
func (c Context) DoubleType() Type { return Type{C.LLVMDoubleTypeInContext(c.c)} }

// PointerType is the opaque pointer type in the given address space
// (0 generic; on NVPTX 1 global, 3 shared, 4 constant, 5 local).
func (c Context) PointerType(addrSpace int) Type {
	return Type{C.LLVMPointerTypeInContext(c.c, C.unsigned(addrSpace))}
}

// StructType is a literal (unnamed) struct of the given fields.
func (c Context) StructType(fields []Type, packed bool) Type {
	refs := typeRefs(fields)
	return Type{C.LLVMStructTypeInContext(c.c, firstType(refs), C.unsigned(len(refs)), llvmBool(packed))}
}

// VectorType is a fixed-width vector of n elements of elem.
func VectorType(elem Type, n int) Type { return Type{C.LLVMVectorType(elem.c, C.unsigned(n))} }

// ArrayType is an array of n elements of elem.
func ArrayType(elem Type, n int) Type { return Type{C.LLVMArrayType2(elem.c, C.uint64_t(n))} }

// FunctionType is the type of functions returning ret and taking params.
func FunctionType(ret Type, params []Type, variadic bool) Type {
	refs := typeRefs(params)
	return Type{C.LLVMFunctionType(ret.c, firstType(refs), C.unsigned(len(refs)), llvmBool(variadic))}
}

// IsNil reports whether t is the zero Type.
func (t Type) IsNil() bool { return t.c == nil }

// Kind returns t's kind.
func (t Type) Kind() TypeKind { return TypeKind(C.LLVMGetTypeKind(t.c)) }

// Context returns the context t belongs to.
func (t Type) Context() Context { return Context{C.LLVMGetTypeContext(t.c)} }

// String prints t as in textual IR, e.g. "<8 x float>".
func (t Type) String() string { return takeMessage(C.LLVMPrintTypeToString(t.c)) }

// IntWidth returns the bit width of an integer type.
func (t Type) IntWidth() int { return int(C.LLVMGetIntTypeWidth(t.c)) }

// IsFloat reports whether t is a scalar floating-point type.
func (t Type) IsFloat() bool {
	switch t.Kind() {
	case HalfTypeKind, BFloatTypeKind, FloatTypeKind, DoubleTypeKind:
		return true
	}
	return false
}

// ElementType returns the element type of a vector or array type.
func (t Type) ElementType() Type { return Type{C.LLVMGetElementType(t.c)} }

// VectorSize returns the number of elements of a vector type.
func (t Type) VectorSize() int { return int(C.LLVMGetVectorSize(t.c)) }

// ArrayLength returns the number of elements of an array type.
func (t Type) ArrayLength() int { return int(C.LLVMGetArrayLength2(t.c)) }

// PointerAddressSpace returns the address space of a pointer type.
func (t Type) PointerAddressSpace() int { return int(C.LLVMGetPointerAddressSpace(t.c)) }

// StructFields returns the field types of a struct type.
func (t Type) StructFields() []Type {
	n := int(C.LLVMCountStructElementTypes(t.c))
	if n == 0 {
		return nil
	}
	refs := make([]C.LLVMTypeRef, n)
	C.LLVMGetStructElementTypes(t.c, &refs[0])
	out := make([]Type, n)
	for i, r := range refs {
		out[i] = Type{r}
	}
	return out
}

// ReturnType returns the result type of a function type.
func (t Type) ReturnType() Type { return Type{C.LLVMGetReturnType(t.c)} }

// ParamTypes returns the parameter types of a function type.
func (t Type) ParamTypes() []Type {
	n := int(C.LLVMCountParamTypes(t.c))
	if n == 0 {
		return nil
	}
	refs := make([]C.LLVMTypeRef, n)
	C.LLVMGetParamTypes(t.c, &refs[0])
	out := make([]Type, n)
	for i, r := range refs {
		out[i] = Type{r}
	}
	return out
}
