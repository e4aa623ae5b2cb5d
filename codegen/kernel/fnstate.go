package kernel

import "gitee.com/gidean/conv-linn/codegen/llvm"

// Fn is a kernel body being emitted: B is positioned where the next
// instruction goes, AB in the body's alloca block (Entry). P holds the
// buffer pointer of each argument (arguments written in place of another
// share its pointer), Tid, Nth and Scr the thread's number, the thread
// count and the thread's scratch (see codegen/lower's ABI).
type Fn struct {
	*Types
	B, AB *llvm.Builder
	F     llvm.Function // the body
	P     []llvm.Value  // buffer pointer per argument
	Tid   llvm.Value
	Nth   llvm.Value
	Scr   llvm.Value // this thread's scratch
	Entry llvm.BasicBlock
	// Syncs records that the body synchronizes the threads of a block
	// (bar.sync, shfl.sync, or a call of a block-cooperative GEMM): on the
	// GPU such a body is convergent and not nosync.
	Syncs bool
	// Work is the parallelism the body exposes, from which the cuda
	// device's launch geometry is chosen (codegen/gpu's geometry.go).
	Work Work
	// A multi-tensor kernel runs each group's body over a part of its
	// launch: Stop, when set, bounds the GPU's grid-stride iterations
	// (from Tid, by Nth, both set per chunk), and Virt replaces the block
	// numbering the GPU's block rows see.
	Stop llvm.Value
	Virt *BlockRegs
}

// BlockRegs are a GPU block's coordinates: the thread's index in the block
// (Tx) and the block size (Nt), the block's index (Bx) and the block count
// (Nb), all i64.
type BlockRegs struct{ Tx, Nt, Bx, Nb llvm.Value }

// Work is the parallelism a kernel body exposes.
type Work struct {
	Threads int64 // independent per-thread units (grid-stride iterations, shares)
	Blocks  int64 // block-cooperative units (rows, GEMM tiles)
	// MaxBlocks, when > 0, caps the launch's blocks: a kernel whose every
	// block repeats some fixed work (the sparse kernels' check of their
	// support, codegen/gpu's sparse.go) takes its units in rounds on fewer
	// blocks.
	MaxBlocks int64
	Scratch   bool // the body uses its per-thread scratch
	// The work itself, for performance models: floating-point operations
	// (MMA: on tensor cores) and bytes of the buffers read and written.
	Flops, Bytes int64
	MMA          bool
}

// Merge adds the needs of o (a GEMM the body calls) to the body's.
func (w *Work) Merge(o Work) {
	w.Threads = max(w.Threads, o.Threads)
	w.Blocks = max(w.Blocks, o.Blocks)
	if o.MaxBlocks > 0 && (w.MaxBlocks == 0 || o.MaxBlocks < w.MaxBlocks) {
		w.MaxBlocks = o.MaxBlocks
	}
	w.Scratch = w.Scratch || o.Scratch
	w.Flops += o.Flops
	w.MMA = w.MMA || o.MMA
}
