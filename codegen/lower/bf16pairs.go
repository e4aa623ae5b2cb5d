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
// element-wise loop can run on bf16 pairs, 0 otherwise: on the CPU, over a
// space every stream walks contiguously (or a scalar input, read once),
// every input that is not a scalar and every output in bf16, and every value
// of the chain f32 or bf16.
func pairLanes(e *Emitter, g *Group, space []int, streams []stream, outs []int) int {
	if _, cpu := e.be.(cpuBackend); !cpu {
		return 0
	}
	w := e.arch.VectorWidth
	if w < 4 || numel(space) < int64(2*w) || len(outs) != len(g.Outputs) {
		return 0
	}
	dims, ss := mergeDims(space, streams)
	if len(dims) != 1 {
		return 0
	}
	for i, in := range g.Inputs {
		switch {
		case numel(in.Type.Shape) == 1 && (in.Type.DType == ir.F32 || in.Type.DType == ir.BF16):
		case in.Type.DType == ir.BF16 && ss[i].strides[0] == 1 && ss[i].base == 0:
		default:
			return 0
		}
	}
	for _, o := range g.Outputs {
		if o.Type.DType != ir.BF16 {
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

// bf16Pairs emits this thread's share of g's elements (total of them) in
// pairs of W-lane vectors (see pairLanes), the remainder with the scalar
// chain. Outputs are g.Outputs, all over the space, after the inputs in
// k.P.
func (k *kfn) bf16Pairs(g *Group, total int64, w int) error {
	b, e := k.B, k.e
	n2 := int64(2 * w)
	s, end := k.Share(total, n2)
	vend := k.Add(s, k.Mulc(k.Divc(k.Sub(end, s), n2), n2))
	wordT := llvm.VectorType(e.I32, w)
	bt := e.BF16
	var err error
	k.LoopStep(s, vend, k.C64(n2), func(i llvm.Value) {
		if err != nil {
			return
		}
		words := map[int]llvm.Value{}
		half := func(odd bool) func(int, llvm.Type) llvm.Value {
			return func(j int, t llvm.Type) llvm.Value {
				in := g.Inputs[j]
				if numel(in.Type.Shape) == 1 {
					return b.VectorSplat(w, k.Load(t, k.P[j]), "")
				}
				x, ok := words[j]
				if !ok {
					l := b.Load(wordT, k.At(bt, k.P[j], i), "")
					l.SetAlignment(2)
					x, words[j] = l, l
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
		for j, o := range g.Outputs {
			lo := b.ZExt(even.roundedBits(o.Name), wordT, "")
			hi := b.ZExt(odd.roundedBits(o.Name), wordT, "")
			word := b.Or(lo, b.Shl(hi, k.IntSplat(wordT, 16), ""), "")
			b.Store(word, k.At(bt, k.P[len(g.Inputs)+j], i)).SetAlignment(2)
		}
	})
	if err != nil {
		return err
	}
	k.Loop(vend, end, func(i llvm.Value) {
		if err != nil {
			return
		}
		c := newChain(k, g, 0)
		offs := make([]llvm.Value, len(g.Inputs))
		for j, in := range g.Inputs {
			offs[j] = i
			if numel(in.Type.Shape) == 1 {
				offs[j] = k.C64(0)
			}
		}
		if err = c.eval(g.Nodes, c.at(offs)); err != nil {
			return
		}
		for j, o := range g.Outputs {
			c.store(o.Name, bt, k.At(bt, k.P[len(g.Inputs)+j], i))
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
