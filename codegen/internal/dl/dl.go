// Package dl loads shared objects for codegen: its tests and benchmarks,
// and the calibration that times candidate kernels on the compiling
// machine (codegen/calibrate.go). Just enough dlopen/dlsym to call a
// compiled kernel through a few fixed C signatures; not the runtime's
// loader (the runtime must not depend on codegen, nor codegen on it).
package dl

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef void (*saxpy_fn)(float *, const float *, float, int64_t);

static void call_saxpy(void *fn, float *y, const float *x, float a, int64_t n) {
	((saxpy_fn)fn)(y, x, a, n);
}

typedef void (*gemm_fn)(float *, const float *, const float *, float *, int64_t, int64_t);

static void call_gemm(void *fn, float *c, const float *a, const float *b, float *scratch,
		int64_t tid, int64_t nthreads) {
	((gemm_fn)fn)(c, a, b, scratch, tid, nthreads);
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Lib is an open shared object.
type Lib struct{ h unsafe.Pointer }

// Open loads the shared object at path with RTLD_NOW | RTLD_LOCAL.
func Open(path string) (*Lib, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	h := C.dlopen(p, C.RTLD_NOW|C.RTLD_LOCAL)
	if h == nil {
		return nil, errors.New("dlopen: " + C.GoString(C.dlerror()))
	}
	return &Lib{h}, nil
}

// Sym returns the address of symbol name.
func (l *Lib) Sym(name string) (unsafe.Pointer, error) {
	p := C.CString(name)
	defer C.free(unsafe.Pointer(p))
	C.dlerror()
	s := C.dlsym(l.h, p)
	if s == nil {
		return nil, errors.New("dlsym " + name + ": " + C.GoString(C.dlerror()))
	}
	return s, nil
}

// Close unloads the shared object.
func (l *Lib) Close() error {
	if C.dlclose(l.h) != 0 {
		return errors.New("dlclose: " + C.GoString(C.dlerror()))
	}
	return nil
}

// CallSaxpy calls fn as void(float *y, const float *x, float a, int64_t n),
// with n = len(y); x must be at least as long.
func CallSaxpy(fn unsafe.Pointer, y, x []float32, a float32) {
	if len(y) == 0 {
		return
	}
	if len(x) < len(y) {
		panic("dl: CallSaxpy: x shorter than y")
	}
	C.call_saxpy(fn, (*C.float)(unsafe.Pointer(&y[0])), (*C.float)(unsafe.Pointer(&x[0])), C.float(a), C.int64_t(len(y)))
}

// CallGEMM calls fn as the codegen/cpu GEMM ABI
//
//	void(float *C, const float *A, const float *B, float *scratch, int64_t tid, int64_t nthreads)
//
// The caller guarantees that the slices are as long as the kernel reads and
// writes; this is test support and checks nothing beyond non-emptiness.
func CallGEMM(fn unsafe.Pointer, c, a, b, scratch []float32, tid, nthreads int) {
	C.call_gemm(fn, floatPtr(c), floatPtr(a), floatPtr(b), floatPtr(scratch), C.int64_t(tid), C.int64_t(nthreads))
}

// floatPtr returns the address of s's first element, or nil when s is empty.
func floatPtr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}
