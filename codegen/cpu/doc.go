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
// With AVX512-BF16 (Arch.BF16) and bf16 A and B, unless the target has
// AMX (below), the packing interleaves panels into bf16 pairs along k
// (zero-padded when the depth is odd) and the micro-kernel broadcasts a
// 32-bit A pair against B panels with vdpbf16ps
// (llvm.x86.avx512bf16.dpbf16ps.512), two products per lane into float32
// accumulators (Kernel.DotBF16; tuned on Zen 5 with BlockingBF16).
// vdpbf16ps flushes denormal inputs and results to zero and rounds after
// each of its two additions (as Intel documents it; measured so on Zen 5).
// Otherwise (AVX-512 without either, AVX2, SSE, or one float32 operand)
// the packing widens bf16 to float32 and the float32 micro-kernel runs.
// When C is bf16 and K spans several blocks, the partial sums stay in a
// float32 workspace in scratch until the last block, so the rounding
// happens once. Results are bit-identical for any nthreads on each path,
// not between paths (their summation orders differ).
//
// # AMX
//
// With AMX-TILE and AMX-BF16 (Arch.AMX, from the target's features, never
// the host's: Sapphire and Emerald Rapids) every GEMM of bf16 A and B,
// with a bf16 or float32 C, runs on tiles instead (Kernel.AMX;
// DefaultBlockingAMX): the micro-kernel keeps a 32×32 block of C in 2×2
// tiles of 16×16 floats (tmm0–3) and, per 32 k, loads two A tiles of 16
// rows × 32 k (tmm4–5) and two B tiles of 16 bf16 pair rows × 16 columns
// (tmm6–7) with tileloadd and issues four tdpbf16ps. B is packed in the
// vdpbf16ps pair layout (pairs along k, 4·NR bytes per pair row: exactly a
// B tile's rows), A into row-major MR-row panels (pack_amx.go); both are
// zero-padded to a depth of 32 and A to whole panels, so every tile is
// full and one configuration (palette 1, all tiles 16 rows × 64 bytes)
// serves all edge shapes: the rows and columns past M and N are computed
// on zeros and never stored. The C tiles go through a staging area in
// scratch (tilestored) into the same vector epilogue as the other
// kernels: alpha, Accumulate, the float32 workspace across K blocks and the
// single RNE rounding of a bf16 C. Each kernel call loads the tile
// configuration (ldtilecfg) on entry and releases it (tilerelease) on
// exit, so a worker thread that runs other code afterwards is clean; the
// process must hold Linux's permission for the tile state (package
// runtime asks for it, hostcpu.RequestAMX). Summation order is fixed per
// element, so results are bit-identical for any nthreads.
//
// tdpbf16ps, as the Intel SDM defines it: for each row m and column n of
// C and each pair k, C[m][n] += A[m][2k]·B[k][2n], then
// C[m][n] += A[m][2k+1]·B[k][2n+1], each an FP32 FMA with DAZ and FTZ
// (denormal inputs, bf16 or float32, taken as zero; denormal results
// flushed to zero), round to nearest even, MXCSR neither read nor
// written, no exceptions. A bf16 product is exact in float32, so each step
// rounds only its sum. Newer SDM revisions write the loop with a float32
// temporary of twice the row's width (even and odd products summed apart,
// combined horizontally at the end; the exact order of that last step was
// not at hand when this was written). The emulation (below) follows the
// one-chain form, so its last bits may differ from the hardware's where
// the two orders round differently; the tests compare with a tolerance,
// or exactly on grids where every order gives the same sum.
//
// This package was written on a machine without AMX. Generator's internal
// emulateTiles option (tests only) emits the same kernels with each tile
// instruction replaced by a call to plain IR over an emulated tile-register
// file in the thread's scratch (amx_emu.go): ldtilecfg parses the 64-byte
// configuration, tileloadd and tilestored honour the configured rows,
// colsb and the stride and zero the rest, tdpbf16ps computes as above, and
// what the hardware faults on (an unconfigured tile, shapes that do not
// fit) traps. The tests run every AMX kernel shape that way against the
// float64 reference; the assembly test compiles them for sapphirerapids.
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
