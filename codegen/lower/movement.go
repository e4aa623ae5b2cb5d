package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// movement emits the data-movement ops as strided copies of the elements'
// bits (so any dtype moves exactly): the destination is walked in order and
// the source with the strides the op implies.
func (e *Emitter) movement(name string, g *Group) (*Lowering, error) {
	n := g.Nodes[0]
	y := n.Outputs[0].Type
	bt, err := e.bitsType(y.DType)
	if err != nil {
		return nil, err
	}
	type copyOp struct {
		in     int   // input index
		shape  []int // iteration space
		src    stream
		dst    stream
		inType ir.Type
	}
	var copies []copyOp
	x := g.Inputs[0].Type
	switch n.Op {
	case "Reshape":
		copies = append(copies, copyOp{0, y.Shape, stream{strides: contiguous(y.Shape)}, stream{strides: contiguous(y.Shape)}, x})
	case "Expand":
		copies = append(copies, copyOp{0, y.Shape, stream{strides: broadcastStrides(x.Shape, y.Shape)}, stream{strides: contiguous(y.Shape)}, x})
	case "Transpose":
		perm := n.Attrs.GetInts("perm")
		xs := contiguous(x.Shape)
		s := make([]int64, len(perm))
		for k, p := range perm {
			s[k] = xs[p]
		}
		copies = append(copies, copyOp{0, y.Shape, stream{strides: s}, stream{strides: contiguous(y.Shape)}, x})
	case "Slice":
		ax, err := ir.NormAxis(n.Attrs.GetInt("axis", 0), x.Rank())
		if err != nil {
			return nil, err
		}
		xs := contiguous(x.Shape)
		start := n.Attrs.GetInt("start", 0)
		copies = append(copies, copyOp{0, y.Shape, stream{base: start * xs[ax], strides: xs}, stream{strides: contiguous(y.Shape)}, x})
	case "Concat":
		ax, err := ir.NormAxis(n.Attrs.GetInt("axis", 0), y.Rank())
		if err != nil {
			return nil, err
		}
		ys := contiguous(y.Shape)
		at := int64(0)
		for i, in := range g.Inputs {
			copies = append(copies, copyOp{i, in.Type.Shape, stream{strides: contiguous(in.Type.Shape)}, stream{base: at * ys[ax], strides: ys}, in.Type})
			at += int64(in.Type.Shape[ax])
		}
	default:
		return nil, fmt.Errorf("no data-movement kernel for %s", n.Op)
	}
	out := len(g.Inputs)
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		for _, c := range copies {
			if c.inType.DType.Size() != y.DType.Size() {
				return fmt.Errorf("input %v and output %v differ in element size", c.inType, y)
			}
			src := k.P[c.in]
			k.forEach(c.shape, []stream{c.src, c.dst}, func(offs []llvm.Value) {
				k.StoreAt(k.LoadAt(bt, src, offs[0]), bt, k.P[out], offs[1])
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// loadIndex loads an integer index element (i32 or i64) as i64.
func (k *kfn) loadIndex(d ir.DType, p, idx llvm.Value) (llvm.Value, error) {
	t, err := k.e.scalarType(d)
	if err != nil || !d.IsInt() {
		return llvm.Value{}, fmt.Errorf("index dtype %v is not an integer type", d)
	}
	v := k.LoadAt(t, p, idx)
	if d != ir.I64 {
		v = k.B.SExt(v, k.e.I64, "")
	}
	return v, nil
}

// inRange is lo ≤ v < hi for i64 values.
func (k *kfn) inRange(v, lo, hi llvm.Value) llvm.Value {
	b := k.B
	return b.And(b.ICmp(llvm.IntSGE, v, lo, ""), b.ICmp(llvm.IntSLT, v, hi, ""), "")
}

// gather: y[j, :] = table[indices[j], :]. Threads split the output elements
// like an element-wise loop (on the GPU grid-stride); a row whose index is
// out of range (the interpreter's error) comes out as zeros.
func (e *Emitter) gather(name string, g *Group) (*Lowering, error) {
	table, idx := g.Inputs[0].Type, g.Inputs[1].Type
	bt, err := e.bitsType(table.DType)
	if err != nil {
		return nil, err
	}
	rows := int64(table.Shape[0])
	rowLen := numel(table.Shape[1:])
	J := numel(idx.Shape)
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		if J*rowLen == 0 {
			return nil
		}
		var ferr error
		if e.tr.coalesce {
			// Grid-stride over the output's elements (coalesced stores):
			// element i is column i mod rowLen of row i / rowLen.
			k.e.dev.GridStride(k.Fn, J*rowLen, func(i llvm.Value) {
				j, c := k.Divc(i, rowLen), k.Remc(i, rowLen)
				r, err := k.loadIndex(idx.DType, k.P[1], j)
				if err != nil {
					ferr = err
					return
				}
				ok := k.inRange(r, k.C64(0), k.C64(rows))
				r = k.B.Select(ok, r, k.C64(0), "")
				v := k.B.Select(ok, k.LoadAt(bt, k.P[0], k.Add(k.Mulc(r, rowLen), c)), llvm.ConstInt(bt, 0), "")
				k.StoreAt(v, bt, k.P[2], i)
			})
			return ferr
		}
		s, en := k.Share(J*rowLen, 16)
		r0 := k.Divc(s, rowLen)
		r1 := k.Divc(k.Addc(en, rowLen-1), rowLen)
		k.Loop(r0, r1, func(j llvm.Value) {
			r, err := k.loadIndex(idx.DType, k.P[1], j)
			if err != nil {
				ferr = err
				return
			}
			ok := k.inRange(r, k.C64(0), k.C64(rows))
			r = k.B.Select(ok, r, k.C64(0), "")
			jb := k.Mulc(j, rowLen)
			lo := k.Max(k.Sub(s, jb), k.C64(0))
			hi := k.Min(k.Sub(en, jb), k.C64(rowLen))
			src := k.At(bt, k.P[0], k.Mulc(r, rowLen))
			dst := k.At(bt, k.P[2], jb)
			k.Loop(lo, hi, func(c llvm.Value) {
				v := k.B.Select(ok, k.LoadAt(bt, src, c), llvm.ConstInt(bt, 0), "")
				k.StoreAt(v, bt, dst, c)
			})
		})
		return ferr
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// scatterAdd: y = zeros[num_rows, …]; y[indices[j], :] += updates[j, :].
// Threads split the output rows, and each scans all indices in increasing
// j, adding the rows that fall in its part: no two threads write one row, and
// repeated indices accumulate in the interpreter's order, so the result does
// not depend on the thread count. Out-of-range indices are skipped. On the
// cuda device a sorted index (an SLTrain support) takes its runs instead
// (codegen/gpu's sparse.go), and an unsorted one this mapping.
func (e *Emitter) scatterAdd(name string, g *Group) (*Lowering, error) {
	idx := g.Inputs[1].Type
	y := g.Outputs[0].Type
	t, err := e.scalarType(y.DType) // computed in
	if err != nil {
		return nil, err
	}
	st, _ := e.storageType(y.DType) // stored as: a bf16 row sum is rounded at every add
	rows := int64(y.Shape[0])
	rowLen := numel(y.Shape[1:])
	J := numel(idx.Shape)
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		if e.tr.sortedSparse {
			// The cuda device: a sorted index's runs (codegen/gpu's
			// sparse.go), this mapping where it is not sorted.
			it, err := e.scalarType(idx.DType)
			if err != nil || !idx.DType.IsInt() {
				return fmt.Errorf("index dtype %v is not an integer type", idx.DType)
			}
			ix := gpu.Index{P: k.P[1], T: it, N: J}
			return e.dev.ScatterAddSorted(k.Fn, ix, k.P[0], k.P[2], st, y.DType.IsFloat(), rows, rowLen, func() error { return k.scatterAddRows(st, t, y.DType, idx.DType, rows, rowLen, J) })
		}
		return k.scatterAddRows(st, t, y.DType, idx.DType, rows, rowLen, J)
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// scatterAddRows is scatterAdd's body on the CPU (and the cuda device's
// fallback for an unsorted index): threads split the output rows and each
// scans every index.
func (k *kfn) scatterAddRows(st, t llvm.Type, yd, idxd ir.DType, rows, rowLen, J int64) error {
	var zero llvm.Value
	if yd.IsFloat() {
		zero = llvm.ConstFloat(t, 0)
	} else {
		zero = llvm.ConstInt(t, 0)
	}
	r0, r1 := k.Share(rows, max(1, 16/max(rowLen, 1)))
	k.Loop(k.Mulc(r0, rowLen), k.Mulc(r1, rowLen), func(i llvm.Value) {
		k.StoreAt(zero, st, k.P[2], i)
	})
	var ferr error
	k.LoopN(J, func(j llvm.Value) {
		r, err := k.loadIndex(idxd, k.P[1], j)
		if err != nil {
			ferr = err
			return
		}
		k.When(k.inRange(r, r0, r1), func() {
			src := k.At(st, k.P[0], k.Mulc(j, rowLen))
			dst := k.At(st, k.P[2], k.Mulc(r, rowLen))
			k.LoopN(rowLen, func(c llvm.Value) {
				p := k.At(st, dst, c)
				var s llvm.Value
				if yd.IsFloat() {
					s = k.B.FAdd(k.Load(st, p), k.LoadAt(st, src, c), "")
				} else {
					s = k.B.Add(k.Load(st, p), k.LoadAt(st, src, c), "")
				}
				k.Store(s, st, p)
			})
		})
	})
	return ferr
}
