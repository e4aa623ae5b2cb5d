package gpu

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # GPU matrix products
//
// On the cuda device a GEMM spec becomes one of three functions, all with
// the ABI of codegen/cpu's GEMMs, void f(c, a, b, scratch, tid, nthreads),
// so that a kernel calls each as it calls a CPU GEMM (codegen/lower's callGEMM):
//
//   - simtGEMM (gemm_simt.go): every thread computes its contiguous share
//     of C's elements one by one. Runs anywhere, from any control flow.
//   - tiledGEMM (here): the blocks of the grid take 64×64 tiles of C and
//     each block's threads stage k-tiles of A and B in shared memory and
//     keep 4×4 micro-tiles of C in registers. The default.
//   - mmaGEMM (gemm_mma.go): tensor cores (mma.sync m16n8k16 bf16) for
//     products of two bf16 operands, Options.GPUKernels "tensorcore".
//
// All three sum each element of C the same way as the CPU micro-kernels:
// Σ_k fma(a, b, acc) into an f32 accumulator starting at +0 in k order,
// then alpha·Σ (+ the old C with Accumulate), rounded once to C's type —
// so simtGEMM and tiledGEMM give bit-identical results for every launch
// (mmaGEMM's tensor cores sum in their own order).
//
// The rule for the block-cooperative variants (tiledGEMM, mmaGEMM): they
// synchronize the threads of a block (bar.sync, llvm.nvvm.barrier0) and
// number the work by blocks — the block tid / ntid.x of nthreads / ntid.x,
// the thread tid mod ntid.x (blockRegs: the hardware's numbering when the
// caller passes the entry's tid and nthreads, a virtual block's in an
// instanced entry, codegen/lower's Instances). So a kernel may call
// one only where EVERY thread of EVERY block of the launch reaches the
// call, the same number of times, with the same operands: directly in the
// kernel body (which the CUDA ABI runs on every thread of the launch), or
// in a loop whose trip count and operands do not depend on the thread
// (matMul's loop over broadcast batch items). A call under a condition or
// in a loop that depends on tid — a per-thread share, a per-row loop —
// would deadlock or race: such a call site must take simtGEMM.
// Every call site in codegen/lower's matmul.go is uniform (checked when this was written:
// MatMul, its batch loop, Linear and every GEMM of LowRankSparseAdd), so
// gemm gives them the block-cooperative variants.

// Tile geometry of tiledGEMM: a block computes TileM×TileN of C at a time
// from k-tiles of TileK; a thread keeps microM×microN of it in registers,
// rows ty + 16·r and columns tx + 16·c of the tile for the micro-tile
// (ty, tx) (strided, so that the threads of a warp read consecutive
// columns of the B tile and write consecutive elements of C).
const (
	TileM, TileN, TileK = 64, 64, 16
	microM, microN      = 4, 4
	// tileThreads is the number of micro-tiles of a tile: a block of
	// tileThreads threads computes a tile in one round; a smaller block
	// takes ⌈tileThreads/ntid⌉ rounds (each reloading the k-tiles), a larger
	// one leaves threads idle in the compute (they still load).
	tileThreads = (TileM / microM) * (TileN / microN)
)

// gemmGPU is the cuda device's GEMM for spec, the variant
// Options.GPUKernels picks (see the rule above: gemm's callers are uniform).
func (e *Backend) gemmGPU(spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	switch e.opt.GPUKernels {
	case "simt":
		return e.simtGEMM(spec)
	case "", "portable":
		return e.tiledGEMM(spec)
	case "tensorcore", "tensorcore-emulated":
		if spec.ElemA == cpu.BF16 && spec.ElemB == cpu.BF16 {
			return e.mmaGEMM(spec)
		}
		return e.tiledGEMM(spec)
	}
	return cpu.Kernel{}, llvm.Function{}, fmt.Errorf("GPU kernels %q: want portable, tensorcore or simt", e.opt.GPUKernels)
}

// gpuGEMMFunction adds the function of a block-cooperative GEMM: internal,
// nounwind and convergent (it calls barriers), and — unlike stamp's kernel
// functions — not nosync; alwaysinline, as the kernel bodies: a GEMM that
// a kernel and its instanced entry (codegen/lower's Instances) both call
// would otherwise stay a .func of pointer parameters, which the PTX
// emulator cannot call and which costs a GPU the ABI's spills.
func (e *Backend) gpuGEMMFunction(name string) (llvm.Function, error) {
	ptr, i64 := e.Ptr, e.I64
	f := e.Mod.AddFunction(name, llvm.FunctionType(e.Void, []llvm.Type{ptr, ptr, ptr, ptr, i64, i64}, false))
	f.SetLinkage(llvm.InternalLinkage)
	for _, a := range []string{"nounwind", "convergent", "alwaysinline"} {
		if err := f.AddAttribute(llvm.FunctionIndex, a, 0); err != nil {
			return llvm.Function{}, err
		}
	}
	return f, nil
}

// sharedArray is the module's shared-memory array name of n elements of
// type t (addrspace(3), 16-byte aligned), defined on first use. The GEMMs
// of a module share their staging arrays: a kernel runs one GEMM at a time.
func (e *Backend) sharedArray(name string, t llvm.Type, n int) llvm.Value {
	if g, ok := e.Mod.NamedGlobal(name); ok {
		return g
	}
	return e.Mod.AddGlobalArray(name, t, n, 3, 16)
}

// sreg reads PTX special register r (tid.x, ntid.x, ctaid.x, nctaid.x,
// laneid) as an i64.
func (k *kfn) sreg(r string) (llvm.Value, error) {
	f, err := k.e.Intrinsic("llvm.nvvm.read.ptx.sreg." + r)
	if err != nil {
		return llvm.Value{}, err
	}
	return k.B.ZExt(k.B.Call(f, nil, ""), k.e.I64, ""), nil
}

// barrier is bar.sync 0: every thread of the block waits for the others
// (and their shared-memory writes).
func (k *kfn) barrier() error {
	k.Syncs = true
	f, err := k.e.Intrinsic("llvm.nvvm.barrier0")
	if err != nil {
		return err
	}
	k.B.Call(f, nil, "")
	return nil
}

// blockRegs is the numbering a block-cooperative body works by: a
// multi-tensor kernel's virtual one when it sets Virt, else the one its
// tid and nthreads give — block tid / ntid.x of nthreads / ntid.x, thread
// tid mod ntid.x — with ntid.x the one hardware register read. An entry
// passes tid = ctaid.x·ntid.x + tid.x and nthreads = nctaid.x·ntid.x (the
// CUDA ABI, entry.go), so this is the hardware's numbering; an instanced
// entry (codegen/lower's Instances) passes a virtual block's instead, so
// that the GEMMs, row kernels and sparse kernels run as instances of one
// launch. Code without a tid yet (a multi-tensor entry computing it) reads
// the hardware's four registers.
func (k *kfn) blockRegs() (kernel.BlockRegs, error) {
	if k.Virt != nil {
		return *k.Virt, nil
	}
	var r kernel.BlockRegs
	if k.Tid.IsNil() || k.Nth.IsNil() {
		for _, x := range []struct {
			name string
			v    *llvm.Value
		}{{"tid.x", &r.Tx}, {"ntid.x", &r.Nt}, {"ctaid.x", &r.Bx}, {"nctaid.x", &r.Nb}} {
			v, err := k.sreg(x.name)
			if err != nil {
				return r, err
			}
			*x.v = v
		}
		return r, nil
	}
	nt, err := k.sreg("ntid.x")
	if err != nil {
		return r, err
	}
	b := k.B
	r.Nt = nt
	r.Bx = b.UDiv(k.Tid, nt, "bx")
	r.Tx = k.Sub(k.Tid, b.Mul(r.Bx, nt, ""))
	r.Nb = b.UDiv(k.Nth, nt, "nb")
	return r, nil
}

// gemmStore finishes element cAt of C (index in C's buffer k.p[0]) from its
// f32 sum v: alpha·v, plus the old C with Accumulate, rounded once to tc —
// simtGEMM's epilogue.
func (k *kfn) gemmStore(s cpu.GEMM, tc llvm.Type, cAt, v llvm.Value) {
	if s.Alpha != 1 {
		v = k.B.FMul(v, llvm.ConstFloat(k.e.F32, float64(s.Alpha)), "")
	}
	if s.Accumulate {
		v = k.B.FAdd(k.LoadAt(tc, k.P[0], cAt), v, "")
	}
	k.StoreAt(v, tc, k.P[0], cAt)
}

// gemmFrame opens f, a GPU GEMM of the cpu.GEMM ABI (c, a, b, scratch,
// tid, nthreads), for its body: the kernel function with C, A and B as its
// buffers, the builder in the body block, strictly in f32 (one rounding per
// product and sum, in k order). finish closes the function and gives the
// builder back its fast-math flags.
func (e *Backend) gemmFrame(f llvm.Function, spec cpu.GEMM) (k *kfn, finish func()) {
	k = &kfn{Fn: &kernel.Fn{Types: e.Types, B: e.b, AB: e.ab, F: f, Tid: f.Param(4), Nth: f.Param(5), Scr: f.Param(3)}, e: e}
	k.P = []llvm.Value{f.Param(0), f.Param(1), f.Param(2)}
	k.Entry = f.AppendBasicBlock("entry")
	body := f.AppendBasicBlock("body")
	e.ab.SetInsertPointAtEnd(k.Entry)
	e.b.SetInsertPointAtEnd(body)
	fm := e.b.FastMath()
	e.b.SetFastMath(llvm.FastMathNone)
	return k, func() {
		k.Work.Flops = 2 * int64(max(1, spec.Batch)) * int64(spec.M) * int64(spec.N) * int64(spec.K)
		e.gemmWork[f.Name()] = k.Work
		e.b.RetVoid()
		e.ab.Br(body)
		e.b.SetFastMath(fm)
	}
}

// tileOrigin places output tile number tile of a batched product whose
// items have tilesM×tilesN tiles of tm×tn: its first row m0 and column n0,
// and the item's offsets into A, B and C.
func (k *kfn) tileOrigin(s cpu.GEMM, tile llvm.Value, tilesM, tilesN, tm, tn int64) (m0, n0, aBase, bBase, cBase llvm.Value) {
	item := k.Divc(tile, tilesM*tilesN)
	rest := k.Remc(tile, tilesM*tilesN)
	m0 = k.Mulc(k.Divc(rest, tilesN), tm)
	n0 = k.Mulc(k.Remc(rest, tilesN), tn)
	return m0, n0, k.Mul(item, k.C64(s.StrideA)), k.Mul(item, k.C64(s.StrideB)), k.Mul(item, k.C64(s.StrideC))
}

// storeTile finishes a thread's r×c accumulators (f32 variables) into C
// (element type tc), each whose element (row, col) = at(i, j) lies inside
// M×N.
func (k *kfn) storeTile(s cpu.GEMM, tc llvm.Type, cBase llvm.Value, r, c int, acc func(i, j int) llvm.Value, at func(i, j int) (row, col llvm.Value)) {
	M, N := int64(s.M), int64(s.N)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			row, col := at(i, j)
			in := k.B.And(k.B.ICmp(llvm.IntSLT, row, k.C64(M), ""), k.B.ICmp(llvm.IntSLT, col, k.C64(N), ""), "")
			k.When(in, func() {
				k.gemmStore(s, tc, k.Add(cBase, k.Add(k.Mulc(row, N), col)), k.Load(k.e.F32, acc(i, j)))
			})
		}
	}
}

// gemmElem is the LLVM storage type of a GEMM element type.
func (e *Backend) gemmElem(el cpu.Elem) llvm.Type {
	if el == cpu.BF16 {
		return e.BF16
	}
	return e.F32
}

// tiledGEMM defines the tiled shared-memory SIMT GEMM for spec (see the
// rule at the top of this file: every thread of the launch must call it).
//
// The output tiles (TileM×TileN of C, batch items included, numbered item
// by item, row of tiles by row) go to the blocks round-robin: block ctaid.x
// takes tiles ctaid.x, ctaid.x + nctaid.x, … For a tile, in rounds of ntid
// micro-tiles (micro-tile u = tid.x + round·ntid, active while u <
// tileThreads), each thread zeroes its microM×microN f32 accumulators, and
// for every k-tile of TileK the block
//
//	bar.sync; loads the A tile (TileM×TileK) and the B tile (TileK×TileN)
//	into shared memory, widened to f32, zero outside A and B, element e
//	of a tile by thread e mod ntid (consecutive threads take consecutive
//	elements of the operand's rows, so loads coalesce whatever the
//	transposes); bar.sync; each active thread then runs the k-tile's
//	min(TileK, K − k0) steps, fma(a, b, acc) per output, in k order.
//
// Then each active thread finishes its outputs inside C (gemmStore). Every
// loop bound and condition around a barrier is the same for all threads of
// a block, so any block size and any grid work.
func (e *Backend) tiledGEMM(spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	s := spec
	if s.Batch == 0 {
		s.Batch = 1
	}
	f, err := e.gpuGEMMFunction(s.Name)
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	k, finish := e.gemmFrame(f, s)
	b, f32 := e.b, e.F32
	ta, tb, tc := e.gemmElem(s.ElemA), e.gemmElem(s.ElemB), e.gemmElem(s.ElemC)
	M, N, K := int64(s.M), int64(s.N), int64(s.K)
	as := e.sharedArray("slc_gemm_tile_a", f32, TileK*TileM) // [TileK][TileM]
	bs := e.sharedArray("slc_gemm_tile_b", f32, TileK*TileN) // [TileK][TileN]
	hw, err := k.blockRegs()
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	tilesM, tilesN := (M+TileM-1)/TileM, (N+TileN-1)/TileN
	total := int64(s.Batch) * tilesM * tilesN
	k.Work.Blocks = total
	rounds := b.UDiv(k.Add(k.C64(tileThreads-1), hw.Nt), hw.Nt, "rounds")
	zero := llvm.ConstFloat(f32, 0)
	var acc [microM][microN]llvm.Value
	for r := range acc {
		for c := range acc[r] {
			acc[r][c] = k.Variable(f32, zero)
		}
	}
	lt := func(x llvm.Value, n int64) llvm.Value { return b.ICmp(llvm.IntSLT, x, k.C64(n), "") }
	var ferr error
	k.LoopStep(hw.Bx, k.C64(total), hw.Nb, func(tile llvm.Value) {
		m0, n0, aBase, bBase, cBase := k.tileOrigin(s, tile, tilesM, tilesN, TileM, TileN)
		k.Loop(k.C64(0), rounds, func(round llvm.Value) {
			u := k.Add(hw.Tx, k.Mul(round, hw.Nt))
			active := lt(u, tileThreads)
			ty, tx := k.Divc(u, TileN/microN), k.Remc(u, TileN/microN)
			for r := range acc {
				for c := range acc[r] {
					k.Store(zero, f32, acc[r][c])
				}
			}
			k.LoopN((K+TileK-1)/TileK, func(kt llvm.Value) {
				k0 := k.Mulc(kt, TileK)
				if err := k.barrier(); err != nil { // the last k-tile's readers are done
					ferr = err
				}
				// The A tile: as[kk][mm] = A[m0+mm, k0+kk] (0 outside A).
				k.LoopStep(hw.Tx, k.C64(TileM*TileK), hw.Nt, func(el llvm.Value) {
					mm, kk, in, idx := k.stageElement(el, TileM, TileK, !s.TransA, m0, k0, M, K) // TransA: A stored [K, M]
					v := k.LoadAt(ta, k.P[1], b.Select(in, k.Add(aBase, idx), aBase, ""))
					k.StoreAt(b.Select(in, v, zero, ""), f32, as, k.Add(k.Mulc(kk, TileM), mm))
				})
				// The B tile: bs[kk][nn] = B[k0+kk, n0+nn] (0 outside B).
				k.LoopStep(hw.Tx, k.C64(TileK*TileN), hw.Nt, func(el llvm.Value) {
					nn, kk, in, idx := k.stageElement(el, TileN, TileK, s.TransB, n0, k0, N, K) // TransB: B stored [N, K]
					v := k.LoadAt(tb, k.P[2], b.Select(in, k.Add(bBase, idx), bBase, ""))
					k.StoreAt(b.Select(in, v, zero, ""), f32, bs, k.Add(k.Mulc(kk, TileN), nn))
				})
				if err := k.barrier(); err != nil { // the tiles are in
					ferr = err
				}
				k.When(active, func() {
					steps := k.Min(k.C64(TileK), k.Sub(k.C64(K), k0))
					k.Loop(k.C64(0), steps, func(kk llvm.Value) {
						var av [microM]llvm.Value
						var bv [microN]llvm.Value
						for r := range av {
							av[r] = k.LoadAt(f32, as, k.Add(k.Mulc(kk, TileM), k.Addc(ty, int64(r*TileM/microM))))
						}
						for c := range bv {
							bv[c] = k.LoadAt(f32, bs, k.Add(k.Mulc(kk, TileN), k.Addc(tx, int64(c*TileN/microN))))
						}
						for r := range acc {
							for c := range acc[r] {
								sum, err := k.callIntrinsic("llvm.fma", f32, av[r], bv[c], k.Load(f32, acc[r][c]))
								if err != nil {
									ferr = err
									return
								}
								k.Store(sum, f32, acc[r][c])
							}
						}
					})
				})
			})
			k.When(active, func() {
				k.storeTile(s, tc, cBase, microM, microN, func(r, c int) llvm.Value { return acc[r][c] }, func(r, c int) (llvm.Value, llvm.Value) {
					return k.Add(m0, k.Addc(ty, int64(r*TileM/microM))), k.Add(n0, k.Addc(tx, int64(c*TileN/microN)))
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
