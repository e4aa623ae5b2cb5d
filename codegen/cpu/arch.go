package cpu

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Arch is the x86-64 vector unit the kernels are generated for.
type Arch struct {
	CPU      string // LLVM CPU name, stamped on every function ("target-cpu")
	Features string // LLVM feature string ("target-features")
	// VectorWidth is the number of floats in one vector register: 16 with
	// AVX-512F, 8 with AVX, 4 otherwise (SSE).
	VectorWidth int
	// FMA reports whether the target has fused multiply-add instructions;
	// the micro-kernel then uses llvm.fma, else llvm.fmuladd (a multiply
	// and an add).
	FMA bool
	// BF16 reports AVX512-BF16 (with VectorWidth 16): GEMMs of bf16 A and
	// B then multiply bf16 pairs with vdpbf16ps instead of converting them
	// to float32 while packing.
	BF16 bool
	// AMX reports AMX-TILE and AMX-BF16 (with VectorWidth 16): GEMMs of
	// bf16 A and B then multiply 16×32 by 32×16 tiles with tdpbf16ps (see
	// the package doc, "AMX"). It comes from the target's features, never
	// from the host's.
	AMX bool
}

// ArchOf reads the CPU, features and vector width of tm. The vector unit is
// judged from every feature tm enables, those its CPU name implies
// included (CPU "x86-64-v4" alone is AVX-512), while Features keeps the
// string given to tm, which is what functions are stamped with next to the
// CPU name.
func ArchOf(tm llvm.TargetMachine) Arch {
	cpu, feats := tm.CPU(), tm.Features()
	a := Arch{CPU: cpu, Features: feats, VectorWidth: 4}
	on := feats + "," + tm.EnabledFeatures()
	switch {
	case llvm.HasFeature(on, "avx512f"):
		a.VectorWidth = 16
	case llvm.HasFeature(on, "avx"):
		a.VectorWidth = 8
	}
	a.FMA = llvm.HasFeature(on, "fma") || llvm.HasFeature(on, "avx512f")
	a.BF16 = a.VectorWidth == 16 && llvm.HasFeature(on, "avx512bf16")
	a.AMX = a.VectorWidth == 16 && llvm.HasFeature(on, "amx-tile") && llvm.HasFeature(on, "amx-bf16")
	return a
}

// Blocking is the BLIS register and cache blocking of a kernel.
//
// The micro-kernel holds an MR×NR tile of C in MR·NR/W vector registers; NR
// is a multiple of the vector width W. A packed B micro-panel (KC×NR) stays
// in L1 while the micro-kernel sweeps the packed MC×KC block of A held in
// L2; the packed KC×NC block of B lives in L2/L3. The generator shrinks MC,
// KC and NC to the problem (KC is also evened out so that K splits into
// blocks of nearly equal size). Per-thread scratch is about
// 4·(MC·KC + KC·NC) bytes: 4.3 MB with the AVX-512 defaults.
type Blocking struct {
	MR, NR int // micro-tile: rows of A, columns of B
	MC     int // rows of A per packed block (rounded up to a multiple of MR)
	KC     int // depth of a packed block: at most this many k per pass over C
	NC     int // columns of B per packed block (rounded up to a multiple of NR)
	// Unroll is how many k steps one iteration of the micro-kernel's loop
	// performs (≥ 1).
	Unroll int
}

// DefaultBlocking returns the blocking tuned for vector width w (floats per
// vector) on a Zen 5 core (48 KB L1D, 1 MB L2 per core, 32 zmm registers).
// On AVX-512, 8×32 measured best among 6/8/10/12/14×32, 6/8×48, 4/6×64 and
// 14/28×16 (12×32 and 14×32 were 3–5% slower, NR = 16 tiles ~8% slower);
// KC between 256 and 512 and MC between 64 and 512 were within noise, and
// with the C prefetch KC = 256 is as fast as deeper blocks even when C
// lives in DRAM. AVX2 uses the classic 6×16 (12 of 16 ymm registers).
func DefaultBlocking(w int) Blocking {
	switch w {
	case 16: // AVX-512: 32 registers, 16 of them accumulators
		return Blocking{MR: 8, NR: 32, MC: 144, KC: 256, NC: 4096, Unroll: 4}
	case 8: // AVX2: 16 registers, 12 of them accumulators
		return Blocking{MR: 6, NR: 16, MC: 144, KC: 256, NC: 4096, Unroll: 4}
	default: // SSE: 16 registers
		return Blocking{MR: 6, NR: 8, MC: 144, KC: 256, NC: 4096, Unroll: 4}
	}
}

// DefaultBlockingBF16 returns the blocking of the vdpbf16ps kernels
// (AVX-512, bf16 pairs along k; KC counts k, Unroll pairs) tuned on a Zen 5
// core: on one thread over the llama_60m step shapes, 8×32, 8×48 and 6×64
// tiles with KC 384–512 were within 1% of each other (geometric mean ~397
// GFLOP/s, 90% of the 444 GFLOP/s vdpbf16ps peak), 16×16 ~8% slower;
// 8×32 keeps the float32 kernel's tile and its edge variants. The packed
// panels hold half the bytes of float32 ones, so KC = 512 keeps a B
// micro-panel at 32 KB of the 48 KB L1D. Scratch is about 2·(MC·KC +
// KC·NC) bytes (4.3 MB), plus up to 2 MB of float32 workspace when C is
// bf16 and K has several blocks. See BenchmarkGEMMBF16.
func DefaultBlockingBF16() Blocking {
	return Blocking{MR: 8, NR: 32, MC: 144, KC: 512, NC: 4096, Unroll: 2}
}

// DefaultBlockingAMX returns the blocking of the AMX kernels: a 32×32
// block of C in 2×2 tiles of 16×16 floats (4 of the 8 tile registers; the
// other 4 hold two A tiles of 16 rows × 32 k and two B tiles of 32 k × 16
// columns), KC a multiple of 32 (one tile depth). The packed A block
// (MC×KC bf16, 256 KB) and B block (KC×NC, 1 MB) are sized for a Sapphire
// Rapids core's 2 MB L2 and a B micro-panel (KC×NR, 32 KB) for its 48 KB
// L1D. Not tuned: no AMX machine was at hand when it was written.
func DefaultBlockingAMX() Blocking {
	return Blocking{MR: 32, NR: 32, MC: 256, KC: 512, NC: 1024, Unroll: 1}
}

// checkAMX reports the first problem that makes b unusable for the AMX
// kernels: MR and NR must be 16 or 32 (one or two tiles), KC at least 32.
func (b Blocking) checkAMX() error {
	if (b.MR != 16 && b.MR != 32) || (b.NR != 16 && b.NR != 32) {
		return fmt.Errorf("cpu: AMX blocking %d×%d: MR and NR must be 16 or 32", b.MR, b.NR)
	}
	if b.KC < 32 {
		return fmt.Errorf("cpu: AMX blocking KC=%d: must be ≥ 32 (one tile depth)", b.KC)
	}
	return nil
}

// check reports the first problem that makes b unusable with width w.
func (b Blocking) check(w int) error {
	switch {
	case b.MR < 1 || b.NR < 1 || b.MC < 1 || b.KC < 1 || b.NC < 1 || b.Unroll < 1:
		return fmt.Errorf("cpu: blocking %+v: every size must be ≥ 1", b)
	case b.NR%w != 0:
		return fmt.Errorf("cpu: blocking NR=%d is not a multiple of the vector width %d", b.NR, w)
	case b.MR > 64 || b.NR/w > 16 || b.MR*b.NR/w > 64:
		return fmt.Errorf("cpu: blocking %d×%d: micro-tile too large", b.MR, b.NR)
	case b.KC > 1<<16 || b.MC > 1<<16 || b.NC > 1<<20:
		return fmt.Errorf("cpu: blocking %+v: block too large", b)
	}
	return nil
}
