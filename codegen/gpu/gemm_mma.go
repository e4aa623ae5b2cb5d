package gpu

import (
	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # The tensor-core GEMM
//
// mmaGEMM computes a GEMM of two bf16 operands (f32 accumulation, C f32 or
// bf16) with the warp-level mma.sync.aligned.m16n8k16.row.col.f32.bf16.
// bf16.f32 (LLVM's llvm.nvvm.mma.m16n8k16.row.col.bf16, sm_80 and later):
// D[16×8] = A[16×16]·B[16×8] + C[16×8] per instruction and warp.
//
// Blocks take 64×64 tiles of C round-robin (as tiledGEMM). For each tile,
// the 8 warp units of 16 rows × 32 columns (four m16n8 tiles side by side)
// go to the block's warps (warp = tid.x / 32, lane = tid.x % 32: the
// launch is 1-D): unit u = warp + round·(ntid/32), rounds while some unit
// is left; each warp keeps its unit's four 16×8 f32 accumulators (4
// registers each per thread). A warp without a unit in a round (a block of
// more than 8 warps) computes unit 0 again and stores nothing, so that no
// mma.sync (.aligned: the whole warp executes the same one) is under a
// condition but the block-uniform k bound. Per k-tile of mmaK (32, two mma k-steps)
// the block loads, with bar.sync before and after, the A tile as
// sa[m][k] (row-major, 64 rows of mmaK bf16, row stride mmaStride) and the
// B tile as sb[n][k] (B's columns, i.e. B column-major, the "col" of
// .row.col), bf16 bits as they are, zero outside A and B — zero-padding in
// k makes the partial last k-tile exact (0·0 adds +0 to the sums, which
// are never −0) — and every warp runs its mma steps from them.
//
// The row stride mmaStride = mmaK + 8 halves (20 words) puts the eight
// rows a warp's fragment loads touch at word offsets 20·g mod 32 = 0, 20,
// 8, 28, 16, 4, 24, 12: with the 4 words of a row (t below) all 32 banks
// once, no conflicts.
//
// ## Register fragments (PTX ISA 9.7.14.5.8, "Matrix Fragments for
// mma.m16n8k16 with floating point type": Figure 79 for A and Figure 81 for
// B with .f16/.bf16, Figure 83 for the accumulators C/D)
//
//	groupID g = laneid >> 2, threadID_in_group t = laneid % 4
//
// A (16×16, row), four .b32 registers holding a0..a7, two bf16 each, the
// lower-numbered element in the low half:
//
//	row(ai) = g      for i in {0, 1, 4, 5},   g + 8 for i in {2, 3, 6, 7}
//	col(ai) = 2t + (i & 1) for i < 4,         2t + (i & 1) + 8 for i ≥ 4
//
// so register 0 = (a0, a1) = A[g][2t, 2t+1], register 1 = (a2, a3) =
// A[g+8][2t, 2t+1], register 2 = (a4, a5) = A[g][2t+8, 2t+9], register 3 =
// (a6, a7) = A[g+8][2t+8, 2t+9]: each a pair of adjacent bf16 in a row of
// sa, one aligned 32-bit load (sa's rows are an even number of halves and
// 2t is even), and little-endian memory puts the lower column in the low
// half, as the fragment wants.
//
// B (16×8, col), two .b32 registers holding b0..b3:
//
//	row(bi) = 2t + (i & 1) for i < 2,         2t + (i & 1) + 8 for i ≥ 2
//	col(bi) = g
//
// so register 0 = (b0, b1) = B[2t, 2t+1][g] and register 1 = (b2, b3) =
// B[2t+8, 2t+9][g]: adjacent in k, which sb (B's columns as rows) stores
// adjacently — again one 32-bit load each.
//
// C and D (16×8 f32), four .f32 registers c0..c3:
//
//	row(ci) = g for i in {0, 1},  g + 8 for i in {2, 3}
//	col(ci) = 2t + (i & 1)
//
// which is where the epilogue stores d0..d3 (each guarded by M and N).
//
// The ordering of each element's sum is the tensor core's, not simtGEMM's k
// order, so results differ from the SIMT variants in the last bits of f32.
// Neither the PTX emulator nor a machine without an sm_80+ GPU runs mma:
// the tests check that LLVM accepts and emits it, and run everything
// around it in the emulator with the instruction emulated (emulateMMA,
// below); only a GPU runs the instruction itself.

const (
	mmaM, mmaN, mmaK = 64, 64, 32
	mmaStride        = mmaK + 8 // halves per row of the staged tiles
	// mmaUnits is the number of 16×32 warp units of a 64×64 tile.
	mmaUnits = (mmaM / 16) * (mmaN / 32)
)

// mmaGEMM defines the tensor-core GEMM for spec (ElemA and ElemB bf16; the
// rule of gemm_tiled.go holds: every thread of the launch calls it). A
// block whose size is not a multiple of 32 threads (no whole warps for
// mma.sync) runs the tiled SIMT GEMM instead, which the function calls.
func (e *Backend) mmaGEMM(spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	s := spec
	if s.Batch == 0 {
		s.Batch = 1
	}
	fallbackSpec := s
	fallbackSpec.Name = s.Name + "_tiled"
	_, fallback, err := e.tiledGEMM(fallbackSpec)
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	f, err := e.gpuGEMMFunction(s.Name)
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	k, finish := e.gemmFrame(f, s)
	b, f32, i16, i32 := e.b, e.F32, e.I16, e.I32
	tc := e.gemmElem(s.ElemC)
	M, N, K := int64(s.M), int64(s.N), int64(s.K)
	sa := e.sharedArray("slc_gemm_mma_a", i16, mmaM*mmaStride) // [mmaM][mmaStride] of A's rows
	sb := e.sharedArray("slc_gemm_mma_b", i16, mmaN*mmaStride) // [mmaN][mmaStride] of B's columns
	emulated := e.opt.GPUKernels == "tensorcore-emulated"
	var mma llvm.Function
	var stage llvm.Value
	if emulated {
		stage = e.sharedArray("slc_gemm_mma_emulation", f32, mmaEmulatedWarps*mmaStage)
	} else if mma, err = e.Intrinsic("llvm.nvvm.mma.m16n8k16.row.col.bf16"); err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	hw, err := k.blockRegs()
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	lt := func(x llvm.Value, n int64) llvm.Value { return b.ICmp(llvm.IntSLT, x, k.C64(n), "") }

	// Blocks of partial warps (and, emulated, of too many): the tiled SIMT
	// GEMM (a uniform branch).
	odd := b.ICmp(llvm.IntNE, b.And(hw.Nt, k.C64(31), ""), k.C64(0), "")
	if emulated {
		odd = b.Or(odd, b.ICmp(llvm.IntUGT, hw.Nt, k.C64(32*mmaEmulatedWarps), ""), "")
	}
	k.When(odd, func() {
		b.Call(fallback, []llvm.Value{f.Param(0), f.Param(1), f.Param(2), f.Param(3), f.Param(4), f.Param(5)}, "")
		b.RetVoid()
		b.SetInsertPointAtEnd(f.AppendBasicBlock("dead")) // for when's branch to its join
	})

	warps := b.LShr(hw.Nt, k.C64(5), "warps")
	warp := b.LShr(hw.Tx, k.C64(5), "warp")
	lane := b.And(hw.Tx, k.C64(31), "lane")
	g, t := b.LShr(lane, k.C64(2), "g"), b.And(lane, k.C64(3), "t")
	rounds := b.UDiv(k.Add(k.C64(mmaUnits-1), warps), warps, "rounds")
	tilesM, tilesN := (M+mmaM-1)/mmaM, (N+mmaN-1)/mmaN
	total := int64(s.Batch) * tilesM * tilesN
	k.Work.Blocks = max(k.Work.Blocks, total)
	k.Work.MMA = true
	zero := llvm.ConstFloat(f32, 0)
	var acc [4][4]llvm.Value // [n8 tile j][c0..c3]
	for j := range acc {
		for i := range acc[j] {
			acc[j][i] = k.Variable(f32, zero)
		}
	}
	zero16 := llvm.ConstInt(i16, 0)
	// bits loads the bf16 bits of element idx of p (no widening).
	bits := func(p, idx llvm.Value) llvm.Value {
		v := b.Load(i16, k.At(i16, p, idx), "")
		v.SetAlignment(2)
		return v
	}
	// word loads the 32-bit word at half index h (even) of a staged tile.
	word := func(p, h llvm.Value) llvm.Value {
		v := b.Load(i32, k.At(i32, p, b.LShr(h, k.C64(1), "")), "")
		v.SetAlignment(4)
		return v
	}
	var ferr error
	k.LoopStep(hw.Bx, k.C64(total), hw.Nb, func(tile llvm.Value) {
		m0, n0, aBase, bBase, cBase := k.tileOrigin(s, tile, tilesM, tilesN, mmaM, mmaN)
		k.Loop(k.C64(0), rounds, func(round llvm.Value) {
			u := k.Add(warp, k.Mul(round, warps))
			// Warps without a unit this round (more than mmaUnits warps) run
			// unit 0's steps too and store nothing: so every thread of the
			// block runs every mma step (no mma.sync under a condition, and
			// the emulation's barriers are uniform).
			active := lt(u, mmaUnits) // the same for the 32 lanes of a warp
			uc := b.Select(active, u, k.C64(0), "")
			mb := k.Mulc(k.Divc(uc, mmaN/32), 16)
			nb := k.Mulc(k.Remc(uc, mmaN/32), 32)
			for j := range acc {
				for i := range acc[j] {
					k.Store(zero, f32, acc[j][i])
				}
			}
			k.LoopN((K+mmaK-1)/mmaK, func(kt llvm.Value) {
				k0 := k.Mulc(kt, mmaK)
				if err := k.barrier(); err != nil {
					ferr = err
				}
				// sa[mm][kk] = A[m0+mm, k0+kk] (0 outside A).
				k.LoopStep(hw.Tx, k.C64(mmaM*mmaK), hw.Nt, func(el llvm.Value) {
					mm, kk, in, idx := k.stageElement(el, mmaM, mmaK, !s.TransA, m0, k0, M, K)
					v := bits(k.P[1], b.Select(in, k.Add(aBase, idx), aBase, ""))
					st := b.Store(b.Select(in, v, zero16, ""), k.At(i16, sa, k.Add(k.Mulc(mm, mmaStride), kk)))
					st.SetAlignment(2)
				})
				// sb[nn][kk] = B[k0+kk, n0+nn] (0 outside B).
				k.LoopStep(hw.Tx, k.C64(mmaK*mmaN), hw.Nt, func(el llvm.Value) {
					nn, kk, in, idx := k.stageElement(el, mmaN, mmaK, s.TransB, n0, k0, N, K)
					v := bits(k.P[2], b.Select(in, k.Add(bBase, idx), bBase, ""))
					st := b.Store(b.Select(in, v, zero16, ""), k.At(i16, sb, k.Add(k.Mulc(nn, mmaStride), kk)))
					st.SetAlignment(2)
				})
				if err := k.barrier(); err != nil {
					ferr = err
				}
				{
					for ks := int64(0); ks < mmaK; ks += 16 {
						step := func() {
							rowA := k.Add(mb, g)             // fragment rows g and g+8 of the unit's 16
							colA := k.Addc(k.Mulc(t, 2), ks) // 2t, within the k-step ks
							ha := func(row llvm.Value, dc int64) llvm.Value {
								return k.Add(k.Mulc(row, mmaStride), k.Addc(colA, dc))
							}
							a0 := word(sa, ha(rowA, 0))            // a0, a1: A[g][2t, 2t+1]
							a1 := word(sa, ha(k.Addc(rowA, 8), 0)) // a2, a3: A[g+8][2t, 2t+1]
							a2 := word(sa, ha(rowA, 8))            // a4, a5: A[g][2t+8, 2t+9]
							a3 := word(sa, ha(k.Addc(rowA, 8), 8)) // a6, a7: A[g+8][2t+8, 2t+9]
							for j := range acc {
								col := k.Add(k.Addc(nb, int64(8*j)), g)                        // B's column g of the j-th n8 tile
								b0 := word(sb, k.Add(k.Mulc(col, mmaStride), colA))            // b0, b1: B[2t, 2t+1][g]
								b1 := word(sb, k.Add(k.Mulc(col, mmaStride), k.Addc(colA, 8))) // b2, b3: B[2t+8, 2t+9][g]
								args := []llvm.Value{a0, a1, a2, a3, b0, b1}
								for i := range acc[j] {
									args = append(args, k.Load(f32, acc[j][i]))
								}
								var d [4]llvm.Value
								if emulated {
									d, err = k.emulateMMA(stage, warp, g, t, args)
									if err != nil {
										ferr = err
										return
									}
								} else {
									r := b.Call(mma, args, "")
									for i := range d {
										d[i] = b.ExtractValue(r, i, "")
									}
								}
								for i := range acc[j] {
									k.Store(d[i], f32, acc[j][i])
								}
							}
						}
						if ks == 0 {
							step()
						} else {
							// The k-step is all padding when K ends before it
							// (the same for the whole block).
							k.When(b.ICmp(llvm.IntSLT, k.Addc(k0, ks), k.C64(K), ""), step)
						}
					}
				}
			})
			k.When(active, func() {
				k.storeTile(s, tc, cBase, len(acc), len(acc[0]), func(j, i int) llvm.Value { return acc[j][i] }, func(j, i int) (llvm.Value, llvm.Value) {
					row := k.Add(m0, k.Addc(k.Add(mb, g), int64(8*(i/2))))            // c0, c1: row g; c2, c3: g+8
					col := k.Add(n0, k.Addc(k.Add(nb, k.Mulc(t, 2)), int64(8*j+i%2))) // 2t + (i & 1)
					return row, col
				})
			})
		})
	})
	finish()
	if ferr != nil {
		return cpu.Kernel{}, llvm.Function{}, ferr
	}
	return cpu.Kernel{GEMM: s}, f, nil
}

// # The emulated tensor core
//
// Options.GPUKernels "tensorcore-emulated" is mmaGEMM with each mma.sync
// replaced by emulateMMA, for the PTX emulator, which has no tensor cores:
// it checks the fragment loads and the epilogue above (everything of the
// tensor-core GEMM but the instruction itself) against the PTX ISA's
// layouts, written out a second time, independently, in emulateMMA. Test
// only: slow, and blocks of more than mmaEmulatedWarps warps take the
// tiled GEMM.

const (
	mmaEmulatedWarps = 16
	mmaStage         = 16*16 + 16*8 // f32: A and B of one warp
)

// emulateMMA computes what mma.sync.aligned.m16n8k16.row.col.f32.bf16.
// bf16.f32 returns to this lane (d0..d3) from the warp's fragments args (a
// as four i32, b as two, c as four f32), through the warp's part of stage:
// bar.sync (the last call's readers are done), every lane scatters its
// elements to their places in A (16×16) and B (16×8) by the ISA's layouts,
// bar.sync, then each lane computes its four elements of D = A·B + C by
// the layout of C and D, from its own c0..c3 (an element of D is held
// where that of C is), fma in k order. All threads of the block must call
// it together (mmaGEMM does: no condition around a step but the
// block-uniform k bound).
func (k *kfn) emulateMMA(stage, warp, g, t llvm.Value, args []llvm.Value) ([4]llvm.Value, error) {
	b, e := k.B, k.e
	f32 := e.F32
	var d [4]llvm.Value
	base := k.Mulc(warp, mmaStage)
	sA, sB := base, k.Addc(base, 16*16)
	put := func(off, row, col llvm.Value, cols int64, v llvm.Value) {
		k.StoreAt(v, f32, stage, k.Add(off, k.Add(k.Mulc(row, cols), col)))
	}
	// half is bf16 element h (0: the low 16 bits) of an i32 register, as f32.
	half := func(reg llvm.Value, h int) llvm.Value {
		if h == 1 {
			reg = b.LShr(reg, llvm.ConstInt(e.I32, 16), "")
		}
		return k.WidenBF16(b.Trunc(reg, e.I16, ""))
	}
	if err := k.barrier(); err != nil { // the last step's readers are done
		return d, err
	}
	// A: row = g for a0, a1, a4, a5, g+8 for the others; col = 2t + (i&1),
	// + 8 for i ≥ 4.
	for i := 0; i < 8; i++ {
		row := k.Addc(g, int64(8*((i/2)%2)))
		col := k.Addc(k.Mulc(t, 2), int64(i&1+8*(i/4)))
		put(sA, row, col, 16, half(args[i/2], i%2))
	}
	// B: row = 2t + (i&1), + 8 for i ≥ 2; col = g.
	for i := 0; i < 4; i++ {
		row := k.Addc(k.Mulc(t, 2), int64(i&1+8*(i/2)))
		put(sB, row, g, 8, half(args[4+i/2], i%2))
	}
	if err := k.barrier(); err != nil {
		return d, err
	}
	for i := range d {
		// C and D: row = g for c0, c1 (d0, d1), g+8 for c2, c3; col =
		// 2t + (i&1). D's element i is C's element i of the same lane, so C
		// needs no staging.
		row, col := k.Addc(g, int64(8*(i/2))), k.Addc(k.Mulc(t, 2), int64(i&1))
		acc := k.Variable(f32, args[6+i])
		var ferr error
		k.LoopN(16, func(kk llvm.Value) {
			av := k.LoadAt(f32, stage, k.Add(sA, k.Add(k.Mulc(row, 16), kk)))
			bv := k.LoadAt(f32, stage, k.Add(sB, k.Add(k.Mulc(kk, 8), col)))
			sum, err := k.callIntrinsic("llvm.fma", f32, av, bv, k.Load(f32, acc))
			if err != nil {
				ferr = err
				return
			}
			k.Store(sum, f32, acc)
		})
		if ferr != nil {
			return d, ferr
		}
		d[i] = k.Load(f32, acc)
	}
	return d, nil
}
