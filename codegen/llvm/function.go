package llvm

/*
#include <stdlib.h>
#include <llvm-c/Core.h>
*/
import "C"

import "fmt"

// Function is a function declaration or definition in a Module.
type Function struct{ Value }

// FunctionType returns the function's signature.
func (f Function) FunctionType() Type { return Type{C.LLVMGlobalGetValueType(f.c)} }

// ParamCount returns the number of parameters.
func (f Function) ParamCount() int { return int(C.LLVMCountParams(f.c)) }

// Param returns parameter i (from 0).
func (f Function) Param(i int) Value { return Value{C.LLVMGetParam(f.c, C.unsigned(i))} }

// Params returns all parameters in order.
func (f Function) Params() []Value {
	n := f.ParamCount()
	if n == 0 {
		return nil
	}
	refs := make([]C.LLVMValueRef, n)
	C.LLVMGetParams(f.c, &refs[0])
	out := make([]Value, n)
	for i, r := range refs {
		out[i] = Value{r}
	}
	return out
}

// AppendBasicBlock adds a new empty block named name at the end of f.
func (f Function) AppendBasicBlock(name string) BasicBlock {
	n := cstr(name)
	defer freeStr(n)
	ctx := C.LLVMGetTypeContext(C.LLVMTypeOf(f.c))
	return BasicBlock{C.LLVMAppendBasicBlockInContext(ctx, f.c, n)}
}

// EntryBlock returns f's first block.
func (f Function) EntryBlock() BasicBlock { return BasicBlock{C.LLVMGetEntryBasicBlock(f.c)} }

// Linkage says how a global is visible to other modules and the linker.
type Linkage int

// Linkages used for kernels and their helpers.
const (
	ExternalLinkage    Linkage = C.LLVMExternalLinkage
	InternalLinkage    Linkage = C.LLVMInternalLinkage
	PrivateLinkage     Linkage = C.LLVMPrivateLinkage
	WeakODRLinkage     Linkage = C.LLVMWeakODRLinkage
	LinkOnceODRLinkage Linkage = C.LLVMLinkOnceODRLinkage
)

// SetLinkage sets f's linkage.
func (f Function) SetLinkage(l Linkage) { C.LLVMSetLinkage(f.c, C.LLVMLinkage(l)) }

// Linkage returns f's linkage.
func (f Function) Linkage() Linkage { return Linkage(C.LLVMGetLinkage(f.c)) }

// CallConv is a calling convention number, as in LLVMCallConv.
type CallConv int

// Calling conventions; PTXKernelCallConv makes an NVPTX function a kernel
// entry point (.entry).
const (
	CCallConv         CallConv = C.LLVMCCallConv
	FastCallConv      CallConv = C.LLVMFastCallConv
	PTXKernelCallConv CallConv = C.LLVMPTXKernelCallConv
	PTXDeviceCallConv CallConv = C.LLVMPTXDeviceCallConv
)

// SetCallConv sets f's calling convention. Calls to f must use the same one.
func (f Function) SetCallConv(cc CallConv) { C.LLVMSetFunctionCallConv(f.c, C.unsigned(cc)) }

// CallConv returns f's calling convention.
func (f Function) CallConv() CallConv { return CallConv(C.LLVMGetFunctionCallConv(f.c)) }

// AttrIndex says what an attribute applies to: the function, its return
// value, or one parameter.
type AttrIndex int

// Attribute positions; use ParamIndex for parameters.
const (
	FunctionIndex AttrIndex = C.LLVMAttributeFunctionIndex
	ReturnIndex   AttrIndex = C.LLVMAttributeReturnIndex
)

// ParamIndex is the attribute position of parameter i (from 0).
func ParamIndex(i int) AttrIndex { return AttrIndex(i + 1) }

// AddAttribute adds the enum attribute name (e.g. "noalias", "nocapture",
// "readonly", "nounwind") at position at. val is the attribute's integer
// argument, used by ones such as "align" and "dereferenceable"; pass 0
// otherwise. An unknown name is an error.
func (f Function) AddAttribute(at AttrIndex, name string, val uint64) error {
	n := cstr(name)
	defer freeStr(n)
	kind := C.LLVMGetEnumAttributeKindForName(n, C.size_t(len(name)))
	if kind == 0 {
		return fmt.Errorf("llvm: unknown attribute %q", name)
	}
	ctx := C.LLVMGetTypeContext(C.LLVMTypeOf(f.c))
	attr := C.LLVMCreateEnumAttribute(ctx, kind, C.uint64_t(val))
	C.LLVMAddAttributeAtIndex(f.c, C.LLVMAttributeIndex(at), attr)
	return nil
}

// RemoveAttribute removes the enum attribute name at position at, if it
// is there (a kernel body that turns out to synchronize loses "nosync").
// An unknown name is an error.
func (f Function) RemoveAttribute(at AttrIndex, name string) error {
	n := cstr(name)
	defer freeStr(n)
	kind := C.LLVMGetEnumAttributeKindForName(n, C.size_t(len(name)))
	if kind == 0 {
		return fmt.Errorf("llvm: unknown attribute %q", name)
	}
	C.LLVMRemoveEnumAttributeAtIndex(f.c, C.LLVMAttributeIndex(at), kind)
	return nil
}

// HasAttribute reports whether the enum attribute name is at position at.
func (f Function) HasAttribute(at AttrIndex, name string) bool {
	n := cstr(name)
	defer freeStr(n)
	kind := C.LLVMGetEnumAttributeKindForName(n, C.size_t(len(name)))
	if kind == 0 {
		return false
	}
	return C.LLVMGetEnumAttributeAtIndex(f.c, C.LLVMAttributeIndex(at), kind) != nil
}

// AddStringAttribute adds a key="value" attribute at position at, such as
// "target-cpu" or "target-features" on the function.
func (f Function) AddStringAttribute(at AttrIndex, key, value string) {
	k, v := cstr(key), cstr(value)
	defer freeStr(k)
	defer freeStr(v)
	ctx := C.LLVMGetTypeContext(C.LLVMTypeOf(f.c))
	attr := C.LLVMCreateStringAttribute(ctx, k, C.unsigned(len(key)), v, C.unsigned(len(value)))
	C.LLVMAddAttributeAtIndex(f.c, C.LLVMAttributeIndex(at), attr)
}

// Intrinsic returns the declaration of the intrinsic name in m, adding it if
// needed. Overloaded intrinsics (llvm.fma, llvm.sqrt, llvm.maxnum,
// llvm.vector.reduce.fadd, ...) take the overload types in order, e.g.
// Intrinsic("llvm.fma", VectorType(f32, 8)); others take none
// (Intrinsic("llvm.nvvm.read.ptx.sreg.tid.x")).
func (m Module) Intrinsic(name string, overloads ...Type) (Function, error) {
	n := cstr(name)
	defer freeStr(n)
	id := C.LLVMLookupIntrinsicID(n, C.size_t(len(name)))
	if id == 0 {
		return Function{}, fmt.Errorf("llvm: unknown intrinsic %q", name)
	}
	overloaded := C.LLVMIntrinsicIsOverloaded(id) != 0
	if overloaded && len(overloads) == 0 {
		return Function{}, fmt.Errorf("llvm: intrinsic %q is overloaded and needs its types", name)
	}
	if !overloaded && len(overloads) > 0 {
		return Function{}, fmt.Errorf("llvm: intrinsic %q is not overloaded", name)
	}
	if base := intrinsicBaseName(id); base != name {
		// A mangled name like "llvm.fma.f32" resolves to llvm.fma; the
		// overload types, not the suffix, decide the declaration.
		return Function{}, fmt.Errorf("llvm: intrinsic %q: use the base name %q plus overload types", name, base)
	}
	refs := typeRefs(overloads)
	return Function{Value{C.LLVMGetIntrinsicDeclaration(m.c, id, firstType(refs), C.size_t(len(refs)))}}, nil
}

// intrinsicBaseName returns the unmangled name of intrinsic id.
func intrinsicBaseName(id C.unsigned) string {
	var n C.size_t
	p := C.LLVMIntrinsicGetName(id, &n)
	return C.GoStringN(p, C.int(n))
}
