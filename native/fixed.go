package native

/*
#include <stdint.h>

typedef void (*saxpy_fn)(float *, const float *, float, int64_t);

static void native_call_saxpy(void *fn, float *y, const float *x, float a, int64_t n) {
	((saxpy_fn)fn)(y, x, a, n);
}

typedef void (*gemm_fn)(float *, const float *, const float *, float *, int64_t, int64_t);

static void native_call_gemm(void *fn, float *c, const float *a, const float *b, float *scratch,
		int64_t tid, int64_t nthreads) {
	((gemm_fn)fn)(c, a, b, scratch, tid, nthreads);
}
*/
import "C"

import "unsafe"

// The two fixed C signatures of kernels built outside an artifact, for
// codegen's tests: codegen/llvm's saxpy and codegen/cpu's standalone GEMMs.
// The caller guarantees that the slices are as long as the kernel reads
// and writes; nothing beyond that is checked.

// CallSaxpy calls fn as void(float *y, const float *x, float a, int64_t n),
// with n = len(y); x must be at least as long.
func CallSaxpy(fn unsafe.Pointer, y, x []float32, a float32) {
	if len(y) == 0 {
		return
	}
	if len(x) < len(y) {
		panic("native: CallSaxpy: x shorter than y")
	}
	C.native_call_saxpy(fn, (*C.float)(unsafe.Pointer(&y[0])), (*C.float)(unsafe.Pointer(&x[0])), C.float(a), C.int64_t(len(y)))
}

// CallGEMM calls fn as codegen/cpu's GEMM ABI
//
//	void(float *C, const float *A, const float *B, float *scratch, int64_t tid, int64_t nthreads)
func CallGEMM(fn unsafe.Pointer, c, a, b, scratch []float32, tid, nthreads int) {
	C.native_call_gemm(fn, floatPtr(c), floatPtr(a), floatPtr(b), floatPtr(scratch), C.int64_t(tid), C.int64_t(nthreads))
}

// floatPtr returns the address of s's first element, or nil when s is empty.
func floatPtr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}
