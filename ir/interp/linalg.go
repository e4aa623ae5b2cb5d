package interp

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// matMulKernel: c[..., m, n] = Σ_k a[..., m, k]·b[..., k, n], with the last two
// axes of a (b) read transposed when transpose_a (transpose_b) is set and the
// batch axes broadcast. Sums are accumulated in float64 in increasing k.
func matMulKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	a, b := in[0], in[1]
	ta := n.Attrs.GetInt("transpose_a", 0) != 0
	tb := n.Attrs.GetInt("transpose_b", 0) != 0
	ra, rb := a.Type.Rank(), b.Type.Rank()
	M, K := ir.MatDims(a.Type.Shape, ta)
	_, N := ir.MatDims(b.Type.Shape, tb)

	// Strides of the logical (m, k) and (k, n) indices in the stored matrices.
	sam, sak := a.Type.Shape[ra-1], 1 // stored [m, k]
	if ta {
		sam, sak = 1, a.Type.Shape[ra-1] // stored [k, m]
	}
	sbk, sbn := b.Type.Shape[rb-1], 1 // stored [k, n]
	if tb {
		sbk, sbn = 1, b.Type.Shape[rb-1] // stored [n, k]
	}

	batch := t.Shape[:t.Rank()-2]
	aBase := offsets(batch, matrixStrides(a.Type.Shape, batch), 0)
	bBase := offsets(batch, matrixStrides(b.Type.Shape, batch), 0)
	y := NewTensor(t)
	for bi := range aBase {
		ao, bo, yo := aBase[bi], bBase[bi], bi*M*N
		for m := 0; m < M; m++ {
			for j := 0; j < N; j++ {
				var s float64
				pa, pb := ao+m*sam, bo+j*sbn
				for k := 0; k < K; k++ {
					s += a.F[pa+k*sak] * b.F[pb+k*sbk]
				}
				y.F[yo+m*N+j] = s
			}
		}
	}
	return y, nil
}

// matrixStrides returns the element strides, over the broadcast batch axes,
// of the matrices stacked in an operand of the given shape: a batch axis of
// size 1 (or missing) has stride 0, the others step by whole matrices.
func matrixStrides(shape, batch []int) []int {
	r := len(shape)
	s := broadcastStrides(shape[:r-2], batch)
	for k := range s {
		s[k] *= shape[r-2] * shape[r-1]
	}
	return s
}

// linearKernel: y[..., o] = Σ_i x[..., i]·w[o, i].
func linearKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	return linear(in[0], in[1].F, in[1].Type.Shape[0], t), nil
}

// linear computes x·wᵀ for w stored row-major as [out, in] in wf.
func linear(x *Tensor, wf []float64, out int, t ir.Type) *Tensor {
	nIn := x.Type.Shape[x.Type.Rank()-1]
	rows := numel(x.Type.Shape[:x.Type.Rank()-1])
	y := NewTensor(t)
	for r := 0; r < rows; r++ {
		xr := x.F[r*nIn : (r+1)*nIn]
		for o := 0; o < out; o++ {
			wr := wf[o*nIn : (o+1)*nIn]
			var s float64
			for i, v := range xr {
				s += v * wr[i]
			}
			y.F[r*out+o] = s
		}
	}
	return y
}

// lowRankSparseAddKernel: SLTrain's layer. It materialises
// W[out, in] = B[out, r]·(A[r, in]·scale) + S in float64, where S is zero except
// S.flat[index[j]] += values[j] (the support is distinct, so this is the Doc's
// assignment; accumulating keeps the backward dS = dW[index] exact even for a
// repeated index), then y = x·Wᵀ. An index outside [0, out·in) is an error.
//
// The mixed form (bf16 x, f32 factors) rounds where the op's Doc says: B
// and A·scale (an f32 product) to bf16, the W they make and W + S to f32
// (the kernels keep W in f32), then W to bf16 for x·Wᵀ.
func lowRankSparseAddKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x, B, A, vals, idx := in[0], in[1], in[2], in[3], in[4]
	scale := n.Attrs.GetFloat("scale", 0)
	out, r := B.Type.Shape[0], B.Type.Shape[1]
	nIn := A.Type.Shape[1]
	mixed := x.Type.DType == ir.BF16 && B.Type.DType != ir.BF16
	b, as := B.F, make([]float64, len(A.F))
	for i, v := range A.F {
		as[i] = v * scale
	}
	if mixed {
		b = make([]float64, len(B.F))
		for i, v := range B.F {
			b[i] = roundBF16(v)
		}
		for i, v := range as {
			as[i] = roundBF16(RoundTo(ir.F32, v))
		}
	}
	w := make([]float64, out*nIn)
	for o := 0; o < out; o++ {
		for i := 0; i < nIn; i++ {
			var s float64
			for k := 0; k < r; k++ {
				s += b[o*r+k] * as[k*nIn+i]
			}
			w[o*nIn+i] = s
		}
	}
	if mixed {
		roundSlice(ir.F32, w)
	}
	for j, p := range idx.I {
		if p < 0 || p >= int64(len(w)) {
			return nil, fmt.Errorf("sparse index[%d] = %d is outside the %dx%d weight", j, p, out, nIn)
		}
		w[p] += vals.F[j]
	}
	if mixed {
		for i, v := range w {
			w[i] = roundBF16(RoundTo(ir.F32, v))
		}
	}
	return linear(x, w, out, t), nil
}
