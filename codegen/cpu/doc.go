// Package cpu generates slc's x86-64 matrix-multiply kernels as LLVM IR.
//
// A GEMM kernel computes, for every batch item b,
//
//	C_b[M,N] = alpha · op(A_b) · op(B_b)            (Accumulate false: beta = 0)
//	C_b[M,N] = alpha · op(A_b) · op(B_b) + C_b      (Accumulate true:  beta = 1)
//
// where op(A) is A stored row-major as [M,K], or as [K,M] when TransA is set,
// and op(B) is B stored row-major as [K,N], or as [N,K] when TransB is set
// (so x·Wᵀ with W [out,in] is TransB). All shapes, strides and alpha are
// compile-time constants, so every loop bound is a constant and edge tiles
// are handled by specialised code rather than by run-time checks per
// element.
//
// The kernels follow the BLIS design: five loops around a micro-kernel. B is
// packed into KC×NR panels and A into MR×KC panels in per-thread scratch
// (transposing copies go through in-register W×W transposes, never
// gathers); the micro-kernel keeps an MR×NR block of C in vector registers
// and performs KC rank-1 updates with llvm.fma on <W x float> vectors,
// W = 16 on AVX-512 and 8 on AVX2 (see Arch and Blocking), prefetching its
// C tile before the k loop. Floating-point instructions carry only the
// "contract" fast-math flag, so nothing is reassociated; every element is
// summed in the same order whatever the thread count, so results are
// bit-identical from run to run and for any nthreads.
//
// Usage: NewGenerator for a llvm.TargetMachine, Generator.Add for each GEMM
// into a module configured for that machine, then Optimize (default<O3>)
// and emit the object. BenchmarkGEMM compares the kernels with OpenBLAS on
// the GEMMs of a LLaMA training step.
//
// # ABI
//
// Every kernel is an external C function
//
//	void name(float *C, const float *A, const float *B, float *scratch,
//	          int64_t tid, int64_t nthreads);
//
// C, A and B point at the first element of batch item 0; item b starts
// StrideC, StrideA and StrideB floats further on (a stride of 0 for A or B
// shares one operand among all items). C must not overlap A or B.
//
// The work is split into nthreads disjoint parts of C (ranges of MR-row or
// NR-column tiles over all batch items, see Kernel.SplitN); the call with
// thread index tid (0 ≤ tid < nthreads) computes exactly part tid and
// touches no other element of C, so the runtime runs the nthreads calls
// concurrently, one per worker, with no barrier inside a kernel, and the
// kernel is done when all of them have returned. A call with tid or
// nthreads out of range does nothing. Any nthreads ≥ 1 is valid; a thread
// whose part is empty returns at once.
//
// scratch is the calling thread's private packing space of at least
// Kernel.ScratchBytes bytes, with any alignment (the kernel aligns it to 64
// bytes itself); its contents on entry do not matter and are clobbered.
// Concurrent calls need distinct scratch buffers.
//
// With Accumulate false, C's previous contents are never read (NaNs there
// do not leak into the result).
package cpu
