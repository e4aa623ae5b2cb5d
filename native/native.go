// Package native runs compiled CPU kernels in-process: it loads a kernels
// shared object (dlopen, dlsym, dlclose), hands out 64-byte-aligned zeroed
// C memory, builds the C array of argument pointers a kernel takes, and
// calls a kernel through the artifact's ABI
//
//	void kernel(void **args, int64_t tid, int64_t nthreads, void *scratch)
//
// It is the one copy of that cgo code: the runtime loads and feeds an
// artifact's kernels with it (the runtime adds its own multi-threaded
// trampoline), and codegen uses it to time candidate kernels
// (codegen/execute.go) and in its tests. It depends on nothing of slc, so
// both may import it (the runtime never imports codegen, nor codegen the
// runtime), and it links no LLVM.
//
// Every buffer a kernel sees is C memory, so no Go pointer crosses into C:
// the cgo pointer rules hold trivially, and the Go garbage collector never
// scans or moves tensor data.
package native

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*slc_kernel_fn)(void **, int64_t, int64_t, void *);

static void native_call(void *fn, void **args, int64_t tid, int64_t nthreads, void *scratch) {
	((slc_kernel_fn)fn)(args, tid, nthreads, scratch);
}

// native_alloc returns size bytes (at least 1), zeroed, aligned on align;
// NULL when memory is short.
static void *native_alloc(size_t size, size_t align) {
	void *p = NULL;
	if (size == 0) {
		size = 1;
	}
	if (posix_memalign(&p, align, size) != 0) {
		return NULL;
	}
	memset(p, 0, size);
	return p;
}

static void *native_dlopen(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }

// native_dlsym clears dlerror first, so a NULL with an error set means "missing".
static void *native_dlsym(void *h, const char *name, int *missing) {
	dlerror();
	void *s = dlsym(h, name);
	*missing = s == NULL && dlerror() != NULL;
	return s;
}

static const char *native_dlerror(void) {
	const char *e = dlerror();
	return e == NULL ? "unknown error" : e;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/debug"
	"unsafe"
)

// Lib is an open shared object.
type Lib struct{ h unsafe.Pointer }

// Open loads the shared object at path (RTLD_NOW | RTLD_LOCAL); the error
// is the dynamic loader's message.
func Open(path string) (*Lib, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	h := C.native_dlopen(p)
	if h == nil {
		return nil, errors.New(C.GoString(C.native_dlerror()))
	}
	return &Lib{h}, nil
}

// Sym returns the address of symbol name.
func (l *Lib) Sym(name string) (unsafe.Pointer, error) {
	p := C.CString(name)
	defer C.free(unsafe.Pointer(p))
	var missing C.int
	s := C.native_dlsym(l.h, p, &missing)
	if missing != 0 || s == nil {
		return nil, fmt.Errorf("symbol %q not found", name)
	}
	return s, nil
}

// Close unloads the shared object.
func (l *Lib) Close() error {
	if C.dlclose(l.h) != 0 {
		return errors.New(C.GoString(C.native_dlerror()))
	}
	return nil
}

// Alloc returns n zeroed bytes of C memory (at least one) aligned on align,
// a power of two; free them with Free.
func Alloc(n int64, align int) (unsafe.Pointer, error) {
	if n < 0 {
		return nil, fmt.Errorf("allocating %d bytes: a negative size", n)
	}
	p := C.native_alloc(C.size_t(n), C.size_t(align))
	if p == nil {
		return nil, fmt.Errorf("out of memory allocating %d bytes", n)
	}
	return p, nil
}

// Free releases memory from Alloc.
func Free(p unsafe.Pointer) { C.free(p) }

// ReturnFreed hands the memory the process has freed back to the system:
// the Go heap's (debug.FreeOSMemory) and the C heap's (malloc_trim), where
// a compile in the same process leaves LLVM's and the IR's hundreds of MB
// (7B: 0.38 GB) before a runtime allocates its model. Resident memory then
// counts only what is live.
func ReturnFreed() {
	debug.FreeOSMemory()
	C.malloc_trim(0)
}

// Buffer is zeroed C memory aligned to 64 bytes and rounded up to a whole
// number of 64-byte lines (a vector load at its end stays inside), freed
// with Free.
type Buffer struct {
	p unsafe.Pointer
	n int
}

// NewBuffer returns an n-byte buffer.
func NewBuffer(n int64) (*Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("allocating %d bytes: a negative size", n)
	}
	p, err := Alloc((n+63)/64*64, 64)
	if err != nil {
		return nil, err
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
	if p == nil {
		panic("native: out of memory for a kernel's argument array")
	}
	copy(unsafe.Slice((*unsafe.Pointer)(p), n), ptrs)
	return &Args{p}
}

// Free releases the array.
func (a *Args) Free() {
	if a.p != nil {
		C.free(a.p)
		a.p = nil
	}
}

// Call runs kernel fn over a as thread tid of nthreads, with scratch (nil:
// none) as the thread's scratch area.
func Call(fn unsafe.Pointer, a *Args, tid, nthreads int, scratch *Buffer) {
	var s unsafe.Pointer
	if scratch != nil {
		s = scratch.p
	}
	C.native_call(fn, (*unsafe.Pointer)(a.p), C.int64_t(tid), C.int64_t(nthreads), s)
}
