// Package kernel is the kernel-building layer the code generators share:
// the LLVM types every kernel uses (Types) and the function being filled
// (Fn) with its small helpers — constants, addresses, bf16-aware loads and
// stores, nsw index arithmetic, counted loops, conditionals, stack
// variables and the CPU's per-thread shares.
//
// The lowering (codegen/lower) and the GPU's kernels (codegen/gpu) build
// every kernel body through an Fn; codegen/cpu's GEMM generator uses Types.
// It imports only codegen/llvm, so every backend may use it without a
// cycle: lower imports gpu and cpu, and they import kernel, never lower.
package kernel
