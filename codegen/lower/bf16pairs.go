package lower

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// bf16 element-wise chains in pairs. A bf16 chain that LLVM's loop
// vectorizer widens spends most of its instructions moving bf16 in and out
// of f32 lanes: vpmovzxwd and a shift to widen every load, a shift and
// vpmovdw (a cross-lane shuffle, slow on Zen 4) to narrow every store. On
// the CPU a chain whose streams are all contiguous bf16 (or one scalar)
// runs instead on words of two bf16: a vector of W i32 read from the bf16
// array holds elements 2j (low half) and 2j+1 (high half), so
//
//	even = word << 16,  odd = word & 0xffff0000   (both exact f32)
//
// the chain is evaluated twice at W lanes, once on the even and once on the
// odd elements, and each result's rounded bits go back as
// bits_even | bits_odd << 16: no shuffle at all, half the shifts. Every
// element goes through exactly the arithmetic of the scalar chain (the same
// IR ops, lane-wise, and the same round-to-nearest-even BF16Bits), so the
// results are bit-identical to the vectorized scalar loop's; only the
// threads' shares are multiples of 2W elements instead of 16. A thread's
// last 2W−1 elements or fewer take the scalar chain.

// pairLanes returns W (the target's f32 vector width) when group g's
// element-wise loop can run on bf16 pairs, 0 otherwise: on the CPU, every
// output in bf16, every value of the chain f32 or bf16, and over the
// merged iteration space (mergeDims) an innermost axis of at least 2W
// points that every stream either walks contiguously (then a bf16 one) or
// does not move along (a value per row: a scalar, RMSNorm's 1/rms, any
// float type).
func pairLanes(e *Emitter, g *Group, space []int, streams []stream, outs []int) int {
	if _, cpu := e.be.(cpuBackend); !cpu {
		return 0
	}
	w := e.arch.VectorWidth
	if w < 4 || len(outs) != len(g.Outputs) {
		return 0
	}
	dims, ss := mergeDims(space, streams)
	last := len(dims) - 1
	if dims[last] < int64(2*w) {
		return 0
	}
	for i, in := range g.Inputs {
		switch st := ss[i].strides[last]; {
		case st == 0 && (in.Type.DType == ir.F32 || in.Type.DType == ir.BF16):
		case st == 1 && in.Type.DType == ir.BF16:
		default:
			return 0
		}
	}
	for o, out := range g.Outputs {
		if out.Type.DType != ir.BF16 || ss[len(g.Inputs)+o].strides[last] != 1 {
			return 0
		}
	}
	for _, n := range g.Nodes {
		if d := n.Outputs[0].Type.DType; d != ir.F32 && d != ir.BF16 {
			return 0
		}
		if n.Op == "Cast" {
			if d := g.typeOf(n.Inputs[0]).DType; d != ir.F32 && d != ir.BF16 {
				return 0
			}
		}
	}
	return w
}

// typeOf is the type of value v of the group: an input's or a node's
// output's.
func (g *Group) typeOf(v string) ir.Type {
	for _, in := range g.Inputs {
		if in.Name == v {
			return in.Type
		}
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o.Name == v {
				return o.Type
			}
		}
	}
	return ir.Type{}
}

// bf16Pairs emits this thread's share of g's elements over space in pairs
// of W-lane vectors (see pairLanes), the rest of each run with the scalar
// chain. streams are the inputs' then the outputs' (g.Outputs, all over the
// space, after the inputs in k.P). A space of one merged axis is shared
// among the threads in parts of 2W points, one of several axes in whole
// rows of the innermost.
func (k *kfn) bf16Pairs(g *Group, space []int, streams []stream, w int) error {
	dims, ss := mergeDims(space, streams)
	last := len(dims) - 1
	if last == 0 {
		s, e := k.Share(dims[0], int64(2*w))
		base := make([]llvm.Value, len(ss))
		for i, st := range ss {
			base[i] = k.C64(st.base)
		}
		return k.pairRun(g, ss, base, s, e, w)
	}
	outer := dims[:last]
	rows := numel(intsOf(outer))
	outerStreams := make([]stream, len(ss))
	for i, st := range ss {
		outerStreams[i] = stream{base: st.base, strides: st.strides[:last]}
	}
	r0, r1 := k.Share(rows, 1)
	var err error
	k.Loop(r0, r1, func(row llvm.Value) {
		if err == nil {
			err = k.pairRun(g, ss, k.offsets(row, outer, outerStreams), k.C64(0), k.C64(dims[last]), w)
		}
	})
	return err
}

// intsOf is dims as ints.
func intsOf(dims []int64) []int {
	out := make([]int, len(dims))
	for i, d := range dims {
		out[i] = int(d)
	}
	return out
}

// pairRun computes points lo..hi of the innermost axis of one run (a row,
// or a thread's share of a one-axis space) whose streams start at base:
// whole pairs of W-lane vectors, then the rest one point at a time.
func (k *kfn) pairRun(g *Group, ss []stream, base []llvm.Value, lo, hi llvm.Value, w int) error {
	b, e := k.B, k.e
	last := len(ss[0].strides) - 1
	n2 := int64(2 * w)
	vend := k.Add(lo, k.Mulc(k.Divc(k.Sub(hi, lo), n2), n2))
	wordT := llvm.VectorType(e.I32, w)
	bt := e.BF16
	nin := len(g.Inputs)
	// at is stream i's element offset at point j of the run.
	at := func(i int, j llvm.Value) llvm.Value {
		if ss[i].strides[last] == 0 {
			return base[i]
		}
		return k.Add(base[i], j)
	}
	var err error
	k.LoopStep(lo, vend, k.C64(n2), func(j llvm.Value) {
		if err != nil {
			return
		}
		words := map[int]llvm.Value{}
		half := func(odd bool) func(int, llvm.Type) llvm.Value {
			return func(i int, t llvm.Type) llvm.Value {
				if ss[i].strides[last] == 0 {
					return b.VectorSplat(w, k.LoadAt(t, k.P[i], base[i]), "")
				}
				x, ok := words[i]
				if !ok {
					l := b.Load(wordT, k.At(bt, k.P[i], at(i, j)), "")
					l.SetAlignment(2)
					x, words[i] = l, l
				}
				if odd {
					x = b.And(x, k.IntSplat(wordT, -0x10000), "")
				} else {
					x = b.Shl(x, k.IntSplat(wordT, 16), "")
				}
				return b.BitCast(x, llvm.VectorType(e.F32, w), "")
			}
		}
		even, odd := newChain(k, g, w), newChain(k, g, w)
		if err = even.eval(g.Nodes, half(false)); err != nil {
			return
		}
		if err = odd.eval(g.Nodes, half(true)); err != nil {
			return
		}
		for o, out := range g.Outputs {
			lo := b.ZExt(even.roundedBits(out.Name), wordT, "")
			hi := b.ZExt(odd.roundedBits(out.Name), wordT, "")
			word := b.Or(lo, b.Shl(hi, k.IntSplat(wordT, 16), ""), "")
			b.Store(word, k.At(bt, k.P[nin+o], at(nin+o, j))).SetAlignment(2)
		}
	})
	if err != nil {
		return err
	}
	k.Loop(vend, hi, func(j llvm.Value) {
		if err != nil {
			return
		}
		offs := make([]llvm.Value, len(ss))
		for i := range ss {
			offs[i] = at(i, j)
		}
		c := newChain(k, g, 0)
		if err = c.eval(g.Nodes, c.at(offs)); err != nil {
			return
		}
		for o, out := range g.Outputs {
			c.store(out.Name, bt, k.At(bt, k.P[nin+o], offs[nin+o]))
		}
	})
	return err
}

// roundedBits are the bf16 bits (i16 lanes) of chain value v: those the
// chain rounded, or v rounded now (an input passed through unchanged, whose
// f32 widening rounds back exactly).
func (c *chain) roundedBits(v string) llvm.Value {
	if bits, ok := c.bits[v]; ok {
		return bits
	}
	return c.k.BF16Bits(c.vals[v])
}
