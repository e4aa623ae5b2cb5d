package gpu

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # Sparse kernels on a sorted support
//
// An SLTrain layer's support (its sparse_index, ir.InitSupport) is sorted
// ascending, so the entries of one row of W (flat indices [o·in, (o+1)·in))
// are a contiguous run of the index, found by two binary searches: a
// row-pointer (CSR) view of the support without building it. The cuda
// device's scatters use that view instead of having every thread scan
// every entry (the CPU's mapping, each thread its share of rows):
//
//   - ScatterSupport (the merged lowering's W.flat[index] += values): rows
//     of W to blocks, a row's entries to the thread owning their column
//     (column c to thread c mod ntid, rowStride's mapping), each entry
//     added in index order, so repeated indices sum as the interpreter
//     sums them; the thread then finishes its columns (the mixed form's
//     rounding into a bf16 W).
//   - ScatterAddSorted (ScatterAdd, the backward's S scattered into a
//     dense [out·in] gradient path): output rows grid-stride, each summing
//     its run of the index (found by one binary search) in index order from
//     zero, as the interpreter does.
//
// Neither needs atomics, and each output is computed by one thread in the
// interpreter's order: the bits do not depend on the launch.
//
// The index is a runtime tensor (a checkpoint may hold any), so every
// block first checks that it is non-decreasing (sortedIndex: a strided pass
// over the index and a flag in shared memory, three bar.sync); an unsorted
// index takes the caller's fallback, the CPU's mapping, correct for any
// order. The check repeats in every block, so these kernels run on at most
// sparseBlocks blocks (Work.MaxBlocks), their rows or elements in rounds.

// sparseBlocks caps a sparse kernel's blocks: two per SM of an H100, so
// that the per-block check of the index is paid a few hundred times, not
// thousands.
const sparseBlocks = 2 * spreadSMs

// OmitSparseFallback, set by tests only, leaves the unsorted-index
// fallback out of the sparse kernels, so that a test on a sorted index
// fails unless the sorted path computed its result (e2e's
// TestCUDASparseKernels).
var OmitSparseFallback bool

// Index is a sparse support's index: N entries of integer type T (i32 or
// i64) at P.
type Index struct {
	P llvm.Value
	T llvm.Type
	N int64
}

// at is entry j of ix as an i64.
func (k *kfn) at(ix Index, j llvm.Value) llvm.Value {
	v := k.LoadAt(ix.T, ix.P, j)
	if ix.T.IntWidth() != 64 {
		v = k.B.SExt(v, k.e.I64, "")
	}
	return v
}

// sortedIndex is whether ix is non-decreasing, the same i1 in every thread
// of the block: bar.sync; thread 0 sets a shared flag; bar.sync; each
// thread clears it on a descent among its strided pairs; bar.sync; all
// read it; bar.sync (before anything reuses shared memory). Every thread of
// the block must call it.
func (k *kfn) sortedIndex(hw kernel.BlockRegs, ix Index) (llvm.Value, error) {
	b, i32 := k.B, k.e.I32
	flag := k.e.sharedArray("slc_sparse_sorted", i32, 1)
	if err := k.barrier(); err != nil {
		return llvm.Value{}, err
	}
	k.When(b.ICmp(llvm.IntEQ, hw.Tx, k.C64(0), ""), func() { k.Store(llvm.ConstInt(i32, 1), i32, flag) })
	if err := k.barrier(); err != nil {
		return llvm.Value{}, err
	}
	k.rowStride(hw, k.C64(max(ix.N-1, 0)), func(j llvm.Value) {
		k.When(b.ICmp(llvm.IntSGT, k.at(ix, j), k.at(ix, k.Addc(j, 1)), ""), func() {
			k.Store(llvm.ConstInt(i32, 0), i32, flag)
		})
	})
	if err := k.barrier(); err != nil {
		return llvm.Value{}, err
	}
	ok := b.ICmp(llvm.IntNE, k.Load(i32, flag), llvm.ConstInt(i32, 0), "")
	if err := k.barrier(); err != nil {
		return llvm.Value{}, err
	}
	return ok, nil
}

// lowerBound is the number of entries of the sorted ix below key (i64):
// the first j with ix[j] ≥ key, or N. Branch-free, ⌊log₂ N⌋+1 steps of
// powers of two from the largest at or below N.
func (k *kfn) lowerBound(ix Index, key llvm.Value) llvm.Value {
	b := k.B
	pos := k.C64(0)
	if ix.N == 0 {
		return pos
	}
	s := int64(1)
	for s*2 <= ix.N {
		s *= 2
	}
	for ; s >= 1; s /= 2 {
		cand := k.Addc(pos, s)
		fits := b.ICmp(llvm.IntSLE, cand, k.C64(ix.N), "")
		v := k.at(ix, k.Min(k.Addc(pos, s-1), k.C64(ix.N-1)))
		pos = b.Select(b.And(fits, b.ICmp(llvm.IntSLT, v, key, ""), ""), cand, pos, "")
	}
	return pos
}

// capBlocks records that the body runs on blocks of GPUBlock threads, at
// most sparseBlocks of them, wanting units of block work.
func (k *kfn) capBlocks(units int64) {
	k.Work.Blocks = max(k.Work.Blocks, min(max(units, 1), sparseBlocks))
	if k.Work.MaxBlocks == 0 || k.Work.MaxBlocks > sparseBlocks {
		k.Work.MaxBlocks = sparseBlocks
	}
}

// ScatterSupport adds the support's values into W [out, in] (f32 at w):
// W.flat[ix[j]] += vals[j] (vals of storage type vt), indices outside W
// skipped, then calls finish(p) for every element p of W, after p's last
// addition, by the thread that made it (nil: no finishing). With a sorted
// index, rows of W go to blocks and columns to threads (see the section
// above); otherwise fallback runs (every thread of the launch calls it,
// once).
func (e *Backend) ScatterSupport(k *kernel.Fn, ix Index, vals llvm.Value, vt llvm.Type, w llvm.Value, out, in int64, finish func(p llvm.Value), fallback func() error) error {
	g := e.fn(k)
	b, f32 := g.B, e.F32
	hw, err := g.blockRegs()
	if err != nil {
		return err
	}
	g.capBlocks(out)
	g.Work.Flops += ix.N
	sorted, err := g.sortedIndex(hw, ix)
	if err != nil {
		return err
	}
	g.When(sorted, func() {
		g.LoopStep(hw.Bx, g.C64(out), hw.Nb, func(o llvm.Value) {
			base := g.Mulc(o, in)
			lo, hi := g.lowerBound(ix, base), g.lowerBound(ix, g.Addc(base, in))
			g.Loop(lo, hi, func(j llvm.Value) {
				c := g.Sub(g.at(ix, j), base)
				g.When(b.ICmp(llvm.IntEQ, b.URem(c, hw.Nt, ""), hw.Tx, ""), func() {
					p := g.At(f32, w, g.Add(base, c))
					g.Store(b.FAdd(g.Load(f32, p), g.LoadAt(vt, vals, j), ""), f32, p)
				})
			})
			if finish != nil {
				g.rowStride(hw, g.C64(in), func(c llvm.Value) { finish(g.Add(base, c)) })
			}
		})
	})
	return g.unsorted(sorted, fallback)
}

// ScatterAddSorted is ScatterAdd's y = zeros[rows, rowLen];
// y[ix[j], :] += upd[j, :] (storage type st; float says whether it adds
// floats; a bf16 sum is rounded at every addition, as the interpreter
// rounds it): with a sorted index each output element grid-stride sums its
// run of the index from zero in index order; otherwise fallback runs
// (every thread of the launch calls it, once). Indices outside y are
// skipped.
func (e *Backend) ScatterAddSorted(k *kernel.Fn, ix Index, upd, y llvm.Value, st llvm.Type, float bool, rows, rowLen int64, fallback func() error) error {
	g := e.fn(k)
	b := g.B
	t := e.ComputeOf(st)
	hw, err := g.blockRegs()
	if err != nil {
		return err
	}
	g.capBlocks((rows*rowLen + GPUBlock - 1) / GPUBlock)
	sorted, err := g.sortedIndex(hw, ix)
	if err != nil {
		return err
	}
	var zero llvm.Value
	if float {
		zero = llvm.ConstFloat(t, 0)
	} else {
		zero = llvm.ConstInt(t, 0)
	}
	g.When(sorted, func() {
		g.gridStride(rows*rowLen, func(i llvm.Value) {
			r, c := g.Divc(i, rowLen), g.Remc(i, rowLen)
			acc := g.Variable(t, zero)
			g.Loop(g.lowerBound(ix, r), g.lowerBound(ix, g.Addc(r, 1)), func(j llvm.Value) {
				u := g.LoadAt(st, upd, g.Add(g.Mulc(j, rowLen), c))
				var s llvm.Value
				if float {
					s = b.FAdd(g.Load(t, acc), u, "")
					if e.IsBF16(st) {
						s = g.WidenBF16(g.BF16Bits(s))
					}
				} else {
					s = b.Add(g.Load(t, acc), u, "")
				}
				g.Store(s, t, acc)
			})
			g.StoreAt(g.Load(t, acc), st, y, i)
		})
	})
	return g.unsorted(sorted, fallback)
}

// unsorted runs fallback where sorted is false (unless OmitSparseFallback).
func (k *kfn) unsorted(sorted llvm.Value, fallback func() error) error {
	if OmitSparseFallback {
		return nil
	}
	// The work counted is the sorted path's (the support is sorted): the
	// fallback's scans would only inflate the performance model's figures.
	flops := k.Work.Flops
	var ferr error
	k.When(k.B.Xor(sorted, llvm.ConstInt(k.e.Ctx.Int1Type(), 1), ""), func() { ferr = fallback() })
	k.Work.Flops = flops
	return ferr
}

// sparseShared is the static shared memory SparseProduct may take: its x
// tile and its row pointers, within the 48 KB every sm_80/sm_90 block has
// without opting in (the GEMMs' tiles are other kernels').
const sparseShared = 40 << 10

// sparseTokens is the most token rows SparseProduct's block holds in its x
// tile: each of an output row's entries (its value and column loaded once)
// then serves that many tokens from registers.
const sparseTokens = 8

// sparseProductTiling is SparseProduct's choice for a product over in
// features and out output rows: whether the row pointers are cached in
// shared memory, and how many tokens a block's x tile holds (0: no tile,
// x read from global memory a token at a time).
func sparseProductTiling(in, out, nnz int64) (cache bool, tokens int64) {
	ptrBytes := 4 * (out + 1)
	cache = ptrBytes <= sparseShared/2 && nnz < 1<<31
	avail := int64(sparseShared)
	if cache {
		avail -= ptrBytes
	}
	return cache, min(avail/(4*max(in, 1)), sparseTokens)
}

// SparseProduct is y[rows, out] += x[rows, in]·Sᵀ (x of storage xt, the
// values of vt, y f32) with S zero but S.flat[ix[j]] = vals[j], indices
// outside S skipped.
//
// With a sorted index, blocks take groups of tokens (rows of x) round-robin,
// each after the block has checked the index and cached its row pointers
// (the first entry of each output row, by binary search) in shared memory
// once: the group's rows of x are staged in shared memory as f32 (one
// coalesced pass), then the threads take output rows o strided and walk
// their entries (o's run of the index) once, each entry's value and column
// serving all the group's tokens from register accumulators; y[t, o] gets
// the sum (consecutive threads, consecutive o: coalesced). Every y[t, o]
// is one thread's sum in index order from zero, added once: the bits do
// not depend on the launch. An unsorted index takes the fallback: tokens
// grid-stride, each adding every entry's product into its row of y.
//
// With rounded set (a bf16 [rows, out] buffer), each finished element of y
// is also stored there rounded to bf16 — by the thread that finished it,
// after its one addition (sorted) or after its row's (fallback) — so that
// a bf16 result needs no rounding pass of its own.
func (e *Backend) SparseProduct(k *kernel.Fn, ix Index, x llvm.Value, xt llvm.Type, vals llvm.Value, vt llvm.Type, y, rounded llvm.Value, rows, in, out int64) error {
	g := e.fn(k)
	b, f32, i32 := g.B, e.F32, e.I32
	hw, err := g.blockRegs()
	if err != nil {
		return err
	}
	cache, tb := sparseProductTiling(in, out, ix.N)
	tokens := max(tb, 1)
	groups := (rows + tokens - 1) / tokens
	g.capBlocks(groups)
	g.Work.Flops += 2 * rows * ix.N
	sorted, err := g.sortedIndex(hw, ix)
	if err != nil {
		return err
	}
	var ferr error
	g.When(sorted, func() {
		var rowptr llvm.Value
		if cache {
			rowptr = e.sharedArray(fmt.Sprintf("slc_sparse_rowptr_%d", out+1), i32, int(out+1))
			g.rowStride(hw, g.C64(out+1), func(o llvm.Value) {
				g.StoreAt(b.Trunc(g.lowerBound(ix, g.Mulc(o, in)), i32, ""), i32, rowptr, o)
			})
		}
		bounds := func(o llvm.Value) (lo, hi llvm.Value) {
			if cache {
				return b.SExt(g.LoadAt(i32, rowptr, o), e.I64, ""), b.SExt(g.LoadAt(i32, rowptr, g.Addc(o, 1)), e.I64, "")
			}
			base := g.Mulc(o, in)
			return g.lowerBound(ix, base), g.lowerBound(ix, g.Addc(base, in))
		}
		var xs llvm.Value
		if tb > 0 {
			xs = e.sharedArray(fmt.Sprintf("slc_sparse_x_%d", tb*in), f32, int(tb*in))
		}
		zero := llvm.ConstFloat(f32, 0)
		g.LoopStep(hw.Bx, g.C64(groups), hw.Nb, func(grp llvm.Value) {
			r0 := g.Mulc(grp, tokens)
			nr := g.Min(g.C64(tokens), g.Sub(g.C64(rows), r0)) // the group's tokens
			// xAt is x[r0+t, c] as f32, for t < nr.
			xAt := func(t int64, c llvm.Value) llvm.Value {
				if tb > 0 {
					return g.LoadAt(f32, xs, g.Addc(c, t*in))
				}
				return g.LoadAt(xt, x, g.Add(g.Mulc(g.Addc(r0, t), in), c))
			}
			if err := g.barrier(); err != nil { // the last group's readers are done; the row pointers are written
				ferr = err
				return
			}
			if tb > 0 {
				g.rowStride(hw, g.C64(tb*in), func(l llvm.Value) {
					valid := b.ICmp(llvm.IntSLT, g.Divc(l, in), nr, "")
					src := b.Select(valid, g.Add(g.Mulc(r0, in), l), g.C64(0), "")
					g.StoreAt(b.Select(valid, g.LoadAt(xt, x, src), zero, ""), f32, xs, l)
				})
				if err := g.barrier(); err != nil {
					ferr = err
					return
				}
			}
			g.rowStride(hw, g.C64(out), func(o llvm.Value) {
				lo, hi := bounds(o)
				base := g.Mulc(o, in)
				acc := make([]llvm.Value, tokens)
				for t := range acc {
					acc[t] = g.Variable(f32, zero)
				}
				g.Loop(lo, hi, func(j llvm.Value) {
					v := g.LoadAt(vt, vals, j)
					c := g.Sub(g.at(ix, j), base)
					for t := range acc {
						if tb == 0 {
							// x from global memory: rows past the group's
							// last are not read.
							t := int64(t)
							g.When(b.ICmp(llvm.IntSLT, g.C64(t), nr, ""), func() {
								g.Store(b.FAdd(g.Load(f32, acc[t]), b.FMul(xAt(t, c), v, ""), ""), f32, acc[t])
							})
							continue
						}
						g.Store(b.FAdd(g.Load(f32, acc[t]), b.FMul(xAt(int64(t), c), v, ""), ""), f32, acc[t])
					}
				})
				for t := range acc {
					g.When(b.ICmp(llvm.IntSLT, g.C64(int64(t)), nr, ""), func() {
						at := g.Add(g.Mulc(g.Addc(r0, int64(t)), out), o)
						p := g.At(f32, y, at)
						sum := b.FAdd(g.Load(f32, p), g.Load(f32, acc[t]), "")
						if rounded.IsNil() {
							g.Store(sum, f32, p)
						} else { // final: only its rounding is kept
							g.StoreAt(sum, e.BF16, rounded, at)
						}
					})
				}
			})
		})
	})
	if ferr != nil {
		return ferr
	}
	return g.unsorted(sorted, func() error {
		g.gridStride(rows, func(r llvm.Value) {
			g.LoopN(ix.N, func(j llvm.Value) {
				p := g.at(ix, j)
				ok := b.And(b.ICmp(llvm.IntSGE, p, g.C64(0), ""), b.ICmp(llvm.IntSLT, p, g.C64(out*in), ""), "")
				g.When(ok, func() {
					o := g.Divc(p, in)
					c := g.Sub(p, g.Mulc(o, in))
					d := g.At(f32, y, g.Add(g.Mulc(r, out), o))
					xv := g.LoadAt(xt, x, g.Add(g.Mulc(r, in), c))
					g.Store(b.FAdd(g.Load(f32, d), b.FMul(xv, g.LoadAt(vt, vals, j), ""), ""), f32, d)
				})
			})
			if !rounded.IsNil() { // row r is final
				g.LoopN(out, func(o llvm.Value) {
					at := g.Add(g.Mulc(r, out), o)
					g.StoreAt(g.LoadAt(f32, y, at), e.BF16, rounded, at)
				})
			}
		})
		return nil
	})
}
