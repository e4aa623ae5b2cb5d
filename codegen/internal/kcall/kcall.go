// Package kcall calls slc kernels from Go, for codegen's tests and its
// calibration (timing candidate kernels, codegen/execute.go): 64-byte
// aligned C buffers, the C array of buffer pointers a kernel takes, and a
// trampoline for the kernel ABI
//
//	void kernel(void **args, int64_t tid, int64_t nthreads, void *scratch)
//
// It is not the runtime (which must not depend on codegen).
package kcall

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*kernel_fn)(void **, int64_t, int64_t, void *);

static void call_kernel(void *fn, void **args, int64_t tid, int64_t nthreads, void *scratch) {
	((kernel_fn)fn)(args, tid, nthreads, scratch);
}

static void *alloc64(size_t n) {
	void *p = NULL;
	if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
	return p;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Buffer is C memory aligned to 64 bytes, freed with Free.
type Buffer struct {
	p unsafe.Pointer
	n int
}

// Alloc returns an n-byte buffer (contents undefined).
func Alloc(n int64) (*Buffer, error) {
	if n < 0 {
		return nil, errors.New("kcall: negative size")
	}
	p := C.alloc64(C.size_t((n + 63) / 64 * 64))
	if p == nil {
		return nil, errors.New("kcall: out of memory")
	}
	return &Buffer{p: p, n: int(n)}, nil
}

// Ptr is the buffer's address.
func (b *Buffer) Ptr() unsafe.Pointer { return b.p }

// Bytes views the buffer's memory (valid until Free).
func (b *Buffer) Bytes() []byte {
	if b.n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(b.p), b.n)
}

// Free releases the buffer.
func (b *Buffer) Free() {
	if b.p != nil {
		C.free(b.p)
		b.p = nil
	}
}

// Args is a C array of buffer addresses, the first argument of a kernel.
type Args struct{ p unsafe.Pointer }

// NewArgs copies ptrs (addresses of C memory) into a C array.
func NewArgs(ptrs []unsafe.Pointer) *Args {
	n := max(len(ptrs), 1)
	p := C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(uintptr(0))))
	arr := unsafe.Slice((*unsafe.Pointer)(p), n)
	copy(arr, ptrs)
	return &Args{p}
}

// Free releases the array.
func (a *Args) Free() {
	if a.p != nil {
		C.free(a.p)
		a.p = nil
	}
}

// Call runs kernel fn as thread tid of nthreads.
func Call(fn unsafe.Pointer, a *Args, tid, nthreads int, scratch *Buffer) {
	var s unsafe.Pointer
	if scratch != nil {
		s = scratch.p
	}
	C.call_kernel(fn, (*unsafe.Pointer)(a.p), C.int64_t(tid), C.int64_t(nthreads), s)
}
