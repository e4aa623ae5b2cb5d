package interp

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// reduceKernel sums (mean: sums then divides by the reduced element count) over
// the axes attribute. Each input element is added, in row-major input order, to
// the output element it maps to; keepdims only changes the output's shape, not
// its layout.
func reduceKernel(mean bool) kernel {
	return func(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
		x := in[0]
		axes, err := ir.ReduceAxes(n.Attrs.GetInts("axes"), x.Type.Rank())
		if err != nil {
			return nil, err
		}
		kept := ir.ReducedShape(x.Type.Shape, axes, true)
		to := offsets(x.Type.Shape, broadcastStrides(kept, x.Type.Shape), 0)
		y := NewTensor(t)
		for i, v := range x.F {
			y.F[to[i]] += v
		}
		if mean {
			count := float64(numel(x.Type.Shape)) / float64(numel(kept)) // 0 for an empty axis: mean is NaN
			for i := range y.F {
				y.F[i] /= count
			}
		}
		return y, nil
	}
}

// reshapeKernel copies the elements unchanged under the new shape.
func reshapeKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	y := in[0].Clone()
	y.Type = cloneType(t)
	return y, nil
}

// expandKernel broadcasts x to the output shape.
func expandKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x := in[0]
	return gatherTo(t, x, offsets(t.Shape, broadcastStrides(x.Type.Shape, t.Shape), 0)), nil
}

// transposeKernel: output axis k walks input axis perm[k].
func transposeKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x := in[0]
	perm := n.Attrs.GetInts("perm")
	xs := contiguous(x.Type.Shape)
	s := make([]int, len(perm))
	for k, p := range perm {
		s[k] = xs[p]
	}
	return gatherTo(t, x, offsets(t.Shape, s, 0)), nil
}

// sliceKernel takes x[..., start:end, ...] along axis.
func sliceKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x := in[0]
	ax, err := ir.NormAxis(n.Attrs.GetInt("axis", 0), x.Type.Rank())
	if err != nil {
		return nil, err
	}
	xs := contiguous(x.Type.Shape)
	start := int(n.Attrs.GetInt("start", 0))
	return gatherTo(t, x, offsets(t.Shape, xs, start*xs[ax])), nil
}

// concatKernel writes each input into its block of the output along axis.
func concatKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	ax, err := ir.NormAxis(n.Attrs.GetInt("axis", 0), t.Rank())
	if err != nil {
		return nil, err
	}
	ys := contiguous(t.Shape)
	y := NewTensor(t)
	at := 0
	for _, x := range in {
		scatterInto(y, x, offsets(x.Type.Shape, ys, at*ys[ax]))
		at += x.Type.Shape[ax]
	}
	return y, nil
}

// gatherKernel: y[j..., :] = table[indices[j...], :]. An index outside
// [0, rows) is an error.
func gatherKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	table, idx := in[0], in[1]
	rows := table.Type.Shape[0]
	row := numel(table.Type.Shape[1:])
	y := NewTensor(t)
	for j, r := range idx.I {
		if r < 0 || r >= int64(rows) {
			return nil, fmt.Errorf("index %d at position %d is out of range [0, %d)", r, j, rows)
		}
		src, dst := int(r)*row, j*row
		if y.F != nil {
			copy(y.F[dst:dst+row], table.F[src:src+row])
		} else {
			copy(y.I[dst:dst+row], table.I[src:src+row])
		}
	}
	return y, nil
}

// scatterAddKernel: y = zeros[num_rows, ...]; y[indices[j...], :] += updates[j..., :],
// in increasing j, so repeated indices accumulate. An index outside
// [0, num_rows) is an error.
func scatterAddKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	u, idx := in[0], in[1]
	rows := t.Shape[0]
	row := numel(t.Shape[1:])
	y := NewTensor(t)
	for j, r := range idx.I {
		if r < 0 || r >= int64(rows) {
			return nil, fmt.Errorf("index %d at position %d is out of range [0, %d)", r, j, rows)
		}
		dst, src := int(r)*row, j*row
		for k := 0; k < row; k++ {
			if y.F != nil && t.DType == ir.BF16 {
				// bf16 accumulates in place, each add rounded, as PyTorch's
				// CPU index_add_ does (and the kernel, whose output is the
				// accumulator).
				y.F[dst+k] = RoundTo(ir.BF16, y.F[dst+k]+u.F[src+k])
			} else if y.F != nil {
				y.F[dst+k] += u.F[src+k]
			} else {
				y.I[dst+k] += u.I[src+k]
			}
		}
	}
	return y, nil
}
