package gpu

import "gitee.com/gidean/conv-linn/codegen/kernel"

// # Launch geometry
//
// Every cuda kernel is correct on any launch (see the CUDA ABI in entry.go),
// but fast only on one shaped for its work. While a kernel is emitted, the
// mappings it uses record the parallelism they expose (kernel.Fn.Work): a
// grid-stride loop over n iterations wants n threads, a per-thread share
// of n units in parts of align wants ⌈n/align⌉ threads, a row reduction
// over r rows wants r blocks (one block per row), a block-cooperative GEMM
// one block per output tile (the simple GEMM one thread per element of C).
// Launch turns that into the kernel's geometry, recorded per step in the
// artifact: blocks of GPUBlock threads (8 warps, the tiled GEMM's and the
// tensor-core GEMM's tile of work; fewer for a few threads of per-thread
// work, see launch), as many as the work wants up to MaxGrid (the
// kernels' loops take any excess in rounds), at least one. The scratch a
// kernel uses (only those that take per-thread scratch; the SLTrain sparse
// product and scatters take none on the cuda device, see sparse.go) is
// sized per kernel by the caller, which also caps the grid so that the
// launch's scratch areas fit (codegen's program builder). A kernel whose
// every block repeats fixed work (sparse.go's check of the index) caps its
// blocks itself (Work.MaxBlocks).

// GPUBlock is the threads per block of a cuda launch (fewer for a small
// launch of per-thread work).
const GPUBlock = 256

// MaxGrid bounds a launch's blocks: 8,192 blocks of 256 threads are
// 2M threads, about 8 waves of a 132-SM GPU (2,048 resident threads per
// SM); a kernel with more work loops over it (grid-stride, rows and tiles
// round-robin over the blocks).
const MaxGrid = 8192

// Launch is a cuda kernel's launch geometry.
type Launch struct {
	Grid, Block int
	// SharedBytes is the dynamic shared memory (0: every kernel's shared
	// memory is static, module arrays ptxas counts).
	SharedBytes int
	// Scratch says the kernel uses its per-thread scratch (the lowering's
	// ScratchBytes); without it the launch gets none.
	Scratch bool
	// Flops, Bytes and TensorCore count the kernel's work (see
	// artifact.Step).
	Flops, Bytes int64
	TensorCore   bool
}

// spreadSMs is the SM count a launch of few threads is spread over (an
// H100's 132; a smaller GPU just runs more blocks per SM).
const spreadSMs = 132

// launch is the geometry for w: enough blocks of GPUBlock threads for its
// threads, one block per block unit, within [1, MaxGrid]. A kernel of
// per-thread work only (no block units) with fewer threads than
// spreadSMs blocks of GPUBlock takes smaller blocks (whole warps, at
// least one), so that its threads spread over the SMs instead of filling a
// few (llama_60m's sparse products, 512 threads: 16 blocks of 32, not 2
// of 256). A kernel that sets Work.MaxBlocks gets at most that many.
func LaunchOf(w kernel.Work) Launch {
	block := int64(GPUBlock)
	if w.Blocks == 0 && w.Threads < spreadSMs*GPUBlock {
		per := (w.Threads + spreadSMs - 1) / spreadSMs
		block = min(GPUBlock, max(32, (per+31)/32*32))
	}
	grid := max(w.Blocks, (w.Threads+block-1)/block)
	if w.MaxBlocks > 0 {
		grid = min(grid, w.MaxBlocks)
	}
	return Launch{Grid: int(min(max(grid, 1), MaxGrid)), Block: int(block), Scratch: w.Scratch, Flops: w.Flops, Bytes: w.Bytes, TensorCore: w.MMA}
}
