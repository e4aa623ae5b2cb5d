package interp

import "gitee.com/gidean/conv-linn/ir"

// Data movement is expressed with one primitive: the list of source offsets of
// every destination element, computed from a shape and per-axis strides. Broadcast,
// transpose, slice, concat and reduce differ only in the strides they pass.

// numel is the number of elements of a shape (1 for a scalar).
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// contiguous returns the row-major strides of shape.
func contiguous(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for k := len(shape) - 1; k >= 0; k-- {
		s[k] = acc
		acc *= shape[k]
	}
	return s
}

// broadcastStrides returns strides over the axes of out that read an operand of
// shape in broadcast to out (NumPy rules, trailing axes aligned): axes of size 1
// and missing leading axes get stride 0.
func broadcastStrides(in, out []int) []int {
	s := make([]int, len(out))
	cs := contiguous(in)
	d := len(out) - len(in)
	for k := range in {
		if in[k] != 1 {
			s[k+d] = cs[k]
		}
	}
	return s
}

// offsets returns, for every index of shape in row-major order, the offset
// base + Σ_k index[k]·strides[k].
func offsets(shape, strides []int, base int) []int {
	n := numel(shape)
	out := make([]int, n)
	if n == 0 {
		return out
	}
	idx := make([]int, len(shape))
	off := base
	for i := 0; i < n; i++ {
		out[i] = off
		for k := len(shape) - 1; k >= 0; k-- {
			idx[k]++
			off += strides[k]
			if idx[k] < shape[k] {
				break
			}
			off -= strides[k] * shape[k]
			idx[k] = 0
		}
	}
	return out
}

// gatherTo returns a tensor of type t whose element i is src's element at src
// offset from[i].
func gatherTo(t ir.Type, src *Tensor, from []int) *Tensor {
	y := NewTensor(t)
	if y.F != nil {
		for i, o := range from {
			y.F[i] = src.F[o]
		}
	} else {
		for i, o := range from {
			y.I[i] = src.I[o]
		}
	}
	return y
}

// scatterInto writes src's element i to dst offset to[i].
func scatterInto(dst *Tensor, src *Tensor, to []int) {
	if dst.F != nil {
		for i, o := range to {
			dst.F[o] = src.F[i]
		}
	} else {
		for i, o := range to {
			dst.I[o] = src.I[i]
		}
	}
}
