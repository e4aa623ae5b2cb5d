// Package gpu holds the cuda device's kernels beside codegen/cpu's: the
// matrix products (the tiled shared-memory SIMT GEMM, the mma.sync
// tensor-core GEMM and the plain per-element one: gemm_tiled.go,
// gemm_mma.go, gemm_simt.go), the block-cooperative row mappings and
// reductions (rows.go), the inline math NVPTX lacks (math.go), the PTX
// entry of the CUDA ABI (entry.go) and the launch geometry (geometry.go).
//
// codegen/lower's gpuBackend uses it through a Backend made once per
// module (New) and the methods of api.go; every piece builds on the kernel
// body being filled, a codegen/kernel Fn, so this package imports kernel,
// cpu (the GEMM specs) and llvm, never lower.
package gpu
