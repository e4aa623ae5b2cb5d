package llvm

/*
#include <stdlib.h>
#include <llvm-c/Core.h>
#include <llvm-c/Analysis.h>
*/
import "C"

import (
	"errors"
	"strings"
)

// Context owns LLVM's types and constants. Everything built from one Context
// must stay in it, and a Context is not safe for concurrent use; give each
// goroutine its own.
type Context struct{ c C.LLVMContextRef }

// NewContext creates an empty context. Dispose it when done.
func NewContext() Context { return Context{C.LLVMContextCreate()} }

// Dispose frees the context and everything still owned by it.
func (c Context) Dispose() { C.LLVMContextDispose(c.c) }

// Module is a compilation unit: functions, globals, a target triple and a
// data layout.
type Module struct{ c C.LLVMModuleRef }

// NewModule creates an empty module named name in c. Dispose it when done.
func (c Context) NewModule(name string) Module {
	n := cstr(name)
	defer freeStr(n)
	return Module{C.LLVMModuleCreateWithNameInContext(n, c.c)}
}

// Dispose frees the module and its functions.
func (m Module) Dispose() { C.LLVMDisposeModule(m.c) }

// Context returns the context the module lives in.
func (m Module) Context() Context { return Context{C.LLVMGetModuleContext(m.c)} }

// SetTarget sets the module's target triple, e.g. "x86_64-pc-linux-gnu".
func (m Module) SetTarget(triple string) {
	t := cstr(triple)
	defer freeStr(t)
	C.LLVMSetTarget(m.c, t)
}

// Target returns the module's target triple.
func (m Module) Target() string { return C.GoString(C.LLVMGetTarget(m.c)) }

// SetDataLayout sets the module's data layout string.
func (m Module) SetDataLayout(layout string) {
	l := cstr(layout)
	defer freeStr(l)
	C.LLVMSetDataLayout(m.c, l)
}

// DataLayout returns the module's data layout string.
func (m Module) DataLayout() string { return C.GoString(C.LLVMGetDataLayoutStr(m.c)) }

// ConfigureFor sets the module's triple and data layout to tm's, which the
// optimizer needs to make target-aware choices such as vector widths.
func (m Module) ConfigureFor(tm TargetMachine) {
	m.SetTarget(tm.Triple())
	m.SetDataLayout(tm.DataLayout())
}

// String prints the module as textual LLVM IR.
func (m Module) String() string { return takeMessage(C.LLVMPrintModuleToString(m.c)) }

// Verify checks the module's well-formedness and returns LLVM's report as
// an error when it is broken.
func (m Module) Verify() error {
	var msg *C.char
	broken := C.LLVMVerifyModule(m.c, C.LLVMReturnStatusAction, &msg)
	s := takeMessage(msg)
	if broken != 0 {
		return errors.New("llvm: invalid module: " + strings.TrimSpace(s))
	}
	return nil
}

// AddFunction declares a function named name of function type ft. Give it
// basic blocks to make it a definition.
func (m Module) AddFunction(name string, ft Type) Function {
	n := cstr(name)
	defer freeStr(n)
	return Function{Value{C.LLVMAddFunction(m.c, n, ft.c)}}
}

// AddConstantF64Array defines an internal constant global holding values
// as an array of f64 in address space as (NVPTX: 1 global, 4 constant),
// aligned to align bytes, and returns it (a pointer in that address space).
func (m Module) AddConstantF64Array(name string, values []float64, as, align int) Value {
	ctx := C.LLVMGetModuleContext(m.c)
	f64 := C.LLVMDoubleTypeInContext(ctx)
	n := max(len(values), 1)
	elems := make([]C.LLVMValueRef, n)
	for i := range elems {
		v := 0.0
		if i < len(values) {
			v = values[i]
		}
		elems[i] = C.LLVMConstReal(f64, C.double(v))
	}
	at := C.LLVMArrayType2(f64, C.uint64_t(n))
	cn := cstr(name)
	defer freeStr(cn)
	g := C.LLVMAddGlobalInAddressSpace(m.c, at, cn, C.unsigned(as))
	C.LLVMSetInitializer(g, C.LLVMConstArray2(f64, &elems[0], C.uint64_t(n)))
	C.LLVMSetGlobalConstant(g, 1)
	C.LLVMSetLinkage(g, C.LLVMInternalLinkage)
	C.LLVMSetAlignment(g, C.unsigned(align))
	return Value{g}
}

// NamedFunction returns the function called name, if the module has one.
func (m Module) NamedFunction(name string) (Function, bool) {
	n := cstr(name)
	defer freeStr(n)
	f := C.LLVMGetNamedFunction(m.c, n)
	return Function{Value{f}}, f != nil
}

// Metadata is a metadata node or string, used for annotations such as
// !nvvm.annotations.
type Metadata struct{ c C.LLVMMetadataRef }

// MDString creates a metadata string.
func (c Context) MDString(s string) Metadata {
	p := cstr(s)
	defer freeStr(p)
	return Metadata{C.LLVMMDStringInContext2(c.c, p, C.size_t(len(s)))}
}

// MDNode creates a metadata tuple of ops.
func (c Context) MDNode(ops ...Metadata) Metadata {
	refs := make([]C.LLVMMetadataRef, len(ops))
	for i, o := range ops {
		refs[i] = o.c
	}
	var p *C.LLVMMetadataRef
	if len(refs) > 0 {
		p = &refs[0]
	}
	return Metadata{C.LLVMMDNodeInContext2(c.c, p, C.size_t(len(refs)))}
}

// AddNamedMetadataOperand appends node to the module-level named metadata
// name, creating it if needed (e.g. "nvvm.annotations").
func (m Module) AddNamedMetadataOperand(name string, node Metadata) {
	n := cstr(name)
	defer freeStr(n)
	v := C.LLVMMetadataAsValue(C.LLVMGetModuleContext(m.c), node.c)
	C.LLVMAddNamedMetadataOperand(m.c, n, v)
}
