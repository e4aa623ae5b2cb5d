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
// # bf16
//
// GEMM.ElemA, ElemB and ElemC choose float32 (F32, the zero value) or bf16
// (BF16) per operand, as PyTorch computes them: products accumulate in
// float32, and a bf16 C receives the final value — alpha·op(A)·op(B), plus
// the old C widened to float32 when Accumulate — rounded once to bf16,
// round to nearest, ties to even (PyTorch's round_to_nearest_even, by
// integer arithmetic, so every target gives the same bits), ±inf on
// overflow, NaN stays NaN, denormals kept. bf16 A and B with a float32 C
// is the mixed-precision mode; a bf16 operand multiplied with a float32
// one is widened exactly, never the float32 one narrowed.
//
// With AVX512-BF16 (Arch.BF16) and bf16 A and B, the packing interleaves
// panels into bf16 pairs along k (zero-padded when the depth is odd) and
// the micro-kernel broadcasts a 32-bit A pair against B panels with
// vdpbf16ps (llvm.x86.avx512bf16.dpbf16ps.512), two products per lane into
// float32 accumulators (Kernel.DotBF16; tuned on Zen 5 with BlockingBF16).
// vdpbf16ps flushes denormal inputs and results to zero and rounds after
// each of its two additions (as Intel documents it; measured so on Zen 5).
// Otherwise (AVX-512 without it, AVX2, SSE, or one float32 operand) the
// packing widens bf16 to float32 and the float32 micro-kernel runs. When C is bf16 and K spans several blocks, the
// partial sums stay in a float32 workspace in scratch until the last
// block, so the rounding happens once. Results are bit-identical for any
// nthreads on each path, not between the two paths (their summation
// orders differ).
//
// Usage: NewGenerator for a llvm.TargetMachine, Generator.Add for each GEMM
// into a module configured for that machine, then Optimize (default<O3>)
// and emit the object. BenchmarkGEMM compares the kernels with OpenBLAS on
// the GEMMs of a LLaMA training step; BenchmarkGEMMBF16 compares the bf16
// kernels with the float32 ones and with the machine's bf16 peak.
//
// # ABI
//
// Every kernel is an external C function
//
//	void name(C *C, const A *A, const B *B, float *scratch,
//	          int64_t tid, int64_t nthreads);
//
// where each of A, B and C is float (F32) or uint16_t holding bf16 bits
// (BF16), per the GEMM's element types. C, A and B point at the first
// element of batch item 0; item b starts StrideC, StrideA and StrideB
// elements further on (a stride of 0 for A or B shares one operand among
// all items). C must not overlap A or B. bf16 arrays need only 2-byte
// alignment.
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
