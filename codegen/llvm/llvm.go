// Package llvm is slc's thin cgo binding over LLVM 19's C API.
//
// It covers only what the kernel generator needs: building modules of typed
// SSA functions, running the new pass manager, and emitting x86-64 objects and
// NVPTX assembly through target machines. Every wrapper type is a small value
// around one C handle; objects that own memory (Context, Module, Builder,
// TargetMachine) have a Dispose method, and failures come back as errors
// carrying LLVM's own message. The runtime must never import this package.
package llvm

/*
#cgo CFLAGS: -I/usr/lib/llvm-19/include -D_GNU_SOURCE -D__STDC_CONSTANT_MACROS -D__STDC_FORMAT_MACROS -D__STDC_LIMIT_MACROS
#cgo LDFLAGS: -L/usr/lib/llvm-19/lib -lLLVM-19
#include <stdlib.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
*/
import "C"

import (
	"errors"
	"unsafe"
)

// emptyName is a shared C "" used for unnamed values, so that the common case
// of an anonymous instruction allocates nothing.
var emptyName = C.CString("")

// cstr returns a C copy of s; release it with freeStr.
func cstr(s string) *C.char {
	if s == "" {
		return emptyName
	}
	return C.CString(s)
}

// freeStr releases a string made by cstr.
func freeStr(p *C.char) {
	if p != emptyName {
		C.free(unsafe.Pointer(p))
	}
}

// takeMessage copies an LLVM-allocated message into Go and disposes it.
func takeMessage(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.LLVMDisposeMessage(p)
	return s
}

// takeError converts an LLVMErrorRef into a Go error, consuming it.
func takeError(e C.LLVMErrorRef) error {
	if e == nil {
		return nil
	}
	p := C.LLVMGetErrorMessage(e)
	s := C.GoString(p)
	C.LLVMDisposeErrorMessage(p)
	return errors.New(s)
}

// llvmBool converts a Go bool to LLVMBool.
func llvmBool(b bool) C.LLVMBool {
	if b {
		return 1
	}
	return 0
}

// valueRefs copies the handles of vs into a slice C can read. It holds only
// C pointers, so passing its first element to C is allowed by the cgo rules.
func valueRefs(vs []Value) []C.LLVMValueRef {
	out := make([]C.LLVMValueRef, len(vs))
	for i, v := range vs {
		out[i] = v.c
	}
	return out
}

// typeRefs copies the handles of ts into a slice C can read.
func typeRefs(ts []Type) []C.LLVMTypeRef {
	out := make([]C.LLVMTypeRef, len(ts))
	for i, t := range ts {
		out[i] = t.c
	}
	return out
}

// firstValue returns a pointer to the first element, or nil for an empty slice.
func firstValue(s []C.LLVMValueRef) *C.LLVMValueRef {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// firstType returns a pointer to the first element, or nil for an empty slice.
func firstType(s []C.LLVMTypeRef) *C.LLVMTypeRef {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}
