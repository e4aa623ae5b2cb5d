package interp

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// softmaxKernel: y = exp(x - max x) / Σ exp(x - max x) along axis (default -1).
// The tensor is viewed as [outer, L, inner] with the axis in the middle.
func softmaxKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x := in[0]
	ax, err := ir.NormAxis(n.Attrs.GetInt("axis", -1), x.Type.Rank())
	if err != nil {
		return nil, err
	}
	s := x.Type.Shape
	outer, L, inner := numel(s[:ax]), s[ax], numel(s[ax+1:])
	y := NewTensor(t)
	for o := 0; o < outer; o++ {
		for c := 0; c < inner; c++ {
			base := o*L*inner + c
			m := math.Inf(-1)
			for l := 0; l < L; l++ {
				m = math.Max(m, x.F[base+l*inner])
			}
			var sum float64
			for l := 0; l < L; l++ {
				e := math.Exp(x.F[base+l*inner] - m)
				y.F[base+l*inner] = e
				sum += e
			}
			for l := 0; l < L; l++ {
				y.F[base+l*inner] /= sum
			}
		}
	}
	return y, nil
}

// logSumExp returns log Σ exp(row) computed as m + log Σ exp(row - m), m = max.
func logSumExp(row []float64) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, v)
	}
	if math.IsInf(m, 0) {
		return m // all -Inf (empty sum) or a +Inf entry
	}
	var s float64
	for _, v := range row {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

// label returns labels[j] checked against the vocabulary size.
func label(labels *Tensor, j, V int) (int, error) {
	l := labels.I[j]
	if l < 0 || l >= int64(V) {
		return 0, fmt.Errorf("label %d at position %d is out of range [0, %d)", l, j, V)
	}
	return int(l), nil
}

// crossEntropyKernel: loss[j] = logsumexp(logits[j, :]) - logits[j, labels[j]].
func crossEntropyKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	logits, labels := in[0], in[1]
	V := logits.Type.Shape[logits.Type.Rank()-1]
	y := NewTensor(t)
	for j := range labels.I {
		l, err := label(labels, j, V)
		if err != nil {
			return nil, err
		}
		row := logits.F[j*V : (j+1)*V]
		y.F[j] = logSumExp(row) - row[l]
	}
	return y, nil
}

// crossEntropyGradKernel: dlogits[j, v] = (softmax(logits[j, :])[v] - [v = labels[j]])·dloss[j].
func crossEntropyGradKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	logits, labels, dloss := in[0], in[1], in[2]
	V := logits.Type.Shape[logits.Type.Rank()-1]
	y := NewTensor(t)
	for j := range labels.I {
		l, err := label(labels, j, V)
		if err != nil {
			return nil, err
		}
		row := logits.F[j*V : (j+1)*V]
		lse := logSumExp(row)
		for v, x := range row {
			p := math.Exp(x - lse)
			if v == l {
				p--
			}
			y.F[j*V+v] = p * dloss.F[j]
		}
	}
	return y, nil
}

// ropeKernel applies HF's rotate_half rotary embedding. With D the last axis,
// h = D/2 and p the index along seq_axis, θ_i = p·base^(-2i/D) (in float64):
// y[i] = x[i]·cos θ_i - x[i+h]·sin θ_i, y[i+h] = x[i+h]·cos θ_i + x[i]·sin θ_i;
// inverse=1 uses -θ_i. The tensor is viewed as rows of D features; a row's
// position is its index along seq_axis.
func ropeKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x := in[0]
	r := x.Type.Rank()
	ax, err := ir.NormAxis(n.Attrs.GetInt("seq_axis", -2), r)
	if err != nil {
		return nil, err
	}
	base := n.Attrs.GetFloat("base", 10000)
	sign := 1.0
	if n.Attrs.GetInt("inverse", 0) != 0 {
		sign = -1
	}
	s := x.Type.Shape
	D, S := s[r-1], s[ax]
	h := D / 2
	within := numel(s[ax+1 : r-1]) // rows between consecutive positions
	cos := make([]float64, S*h)
	sin := make([]float64, S*h)
	for p := 0; p < S; p++ {
		for i := 0; i < h; i++ {
			theta := sign * float64(p) * math.Pow(base, -2*float64(i)/float64(D))
			cos[p*h+i], sin[p*h+i] = math.Cos(theta), math.Sin(theta)
		}
	}
	y := NewTensor(t)
	rows := numel(s[:r-1])
	for row := 0; row < rows; row++ {
		p := (row / within) % S
		xr, yr := x.F[row*D:(row+1)*D], y.F[row*D:(row+1)*D]
		c, sn := cos[p*h:(p+1)*h], sin[p*h:(p+1)*h]
		for i := 0; i < h; i++ {
			yr[i] = xr[i]*c[i] - xr[i+h]*sn[i]
			yr[i+h] = xr[i+h]*c[i] + xr[i]*sn[i]
		}
	}
	return y, nil
}

// causalMaskKernel: y[..., i, j] = x[..., i, j] if j <= i else fill, with fill
// -Inf ("neg_inf", the default) or 0 ("zero").
func causalMaskKernel(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x := in[0]
	fill := math.Inf(-1)
	switch f := n.Attrs.GetString("fill", "neg_inf"); f {
	case "neg_inf":
	case "zero":
		fill = 0
	default:
		return nil, fmt.Errorf("unknown fill %q", f)
	}
	r := x.Type.Rank()
	R, C := x.Type.Shape[r-2], x.Type.Shape[r-1]
	y := NewTensor(t)
	for off := 0; off < len(x.F); off += R * C {
		for i := 0; i < R; i++ {
			for j := 0; j < C; j++ {
				v := x.F[off+i*C+j]
				if j > i {
					v = fill
				}
				y.F[off+i*C+j] = v
			}
		}
	}
	return y, nil
}
