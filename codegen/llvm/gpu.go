// What the GPU kernels need beyond the rest of the binding: writable
// address-space globals (shared memory) and aggregate results (the
// tensor-core intrinsics' structs).

package llvm

/*
#include <stdlib.h>
#include <llvm-c/Core.h>
*/
import "C"

// AddGlobalArray defines an internal, writable global [n x elem] in address
// space as (NVPTX: 3 is the block's shared memory), aligned to align bytes,
// with an undefined initial value (what CUDA's __shared__ arrays are: NVPTX
// accepts no other initializer in shared memory), and returns it (a pointer
// in that address space).
func (m Module) AddGlobalArray(name string, elem Type, n, as, align int) Value {
	at := C.LLVMArrayType2(elem.c, C.uint64_t(max(n, 1)))
	cn := cstr(name)
	defer freeStr(cn)
	g := C.LLVMAddGlobalInAddressSpace(m.c, at, cn, C.unsigned(as))
	C.LLVMSetInitializer(g, C.LLVMGetUndef(at))
	C.LLVMSetLinkage(g, C.LLVMInternalLinkage)
	C.LLVMSetAlignment(g, C.unsigned(align))
	return Value{g}
}

// NamedGlobal returns the global variable called name, if the module has
// one.
func (m Module) NamedGlobal(name string) (Value, bool) {
	n := cstr(name)
	defer freeStr(n)
	g := C.LLVMGetNamedGlobal(m.c, n)
	return Value{g}, g != nil
}

// ExtractValue reads field i of an aggregate (a struct, such as an
// intrinsic's multiple results).
func (b *Builder) ExtractValue(agg Value, i int, name string) Value {
	n := cstr(name)
	defer freeStr(n)
	return Value{C.LLVMBuildExtractValue(b.c, agg.c, C.unsigned(i), n)}
}
