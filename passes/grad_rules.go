package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// gradRule builds the vector-Jacobian product of one node: given dy, the
// gradient of the node's output, it returns one gradient per input ("" where an
// input gets none or c.need says it is not wanted). Rules read forward values
// (inputs and the output) directly: the backward graph keeps them alive.
type gradRule func(c *gradCtx, dy string) ([]string, error)

// noGradient lists the ops that never carry a gradient: their outputs are
// piecewise constant (Greater) or have no inputs (Const). Integer values carry
// none either; autodiff never asks for them.
var noGradient = map[string]string{
	"Greater":          "a step function: zero gradient almost everywhere",
	"Quant8Signed":     "8-bit quantization (optimizer state): a step function",
	"Quant8Unsigned":   "8-bit quantization (optimizer state): a step function",
	"Dequant8Signed":   "a code table lookup of optimizer state: a step function",
	"Dequant8Unsigned": "a code table lookup of optimizer state: a step function",
	"AbsMaxLast":       "the 8-bit optimizer's block absmax, only in the update graph",
	"Const":            "no inputs",
}

// gradRules is the table of reverse-mode rules, one per differentiable op. The
// math is in each entry's comment; x, y are inputs, z the output, dz = dy the
// incoming gradient.
var gradRules map[string]gradRule

func init() {
	gradRules = map[string]gradRule{
		// dx = dz
		"Identity": func(c *gradCtx, dy string) ([]string, error) { return []string{dy}, nil },
		// dx = -dz
		"Neg": func(c *gradCtx, dy string) ([]string, error) { return []string{c.b.Unary("Neg", dy)}, nil },
		// dx = dz·z
		"Exp": func(c *gradCtx, dy string) ([]string, error) { return []string{c.b.Mul(dy, c.out())}, nil },
		// dx = dz / x
		"Log": func(c *gradCtx, dy string) ([]string, error) { return []string{c.b.Div(dy, c.in(0))}, nil },
		// dx = dz·½ / z
		"Sqrt": func(c *gradCtx, dy string) ([]string, error) {
			return []string{c.b.Div(c.b.Mul(dy, c.scalar(0.5)), c.out())}, nil
		},
		// z = x^-½: dx = dz·(-½)·z³
		"Rsqrt": func(c *gradCtx, dy string) ([]string, error) {
			z := c.out()
			z3 := c.b.Mul(c.b.Mul(z, z), z)
			return []string{c.b.Mul(dy, c.b.Mul(z3, c.scalar(-0.5)))}, nil
		},
		// z = 1/x: dx = -dz·z²
		"Recip": func(c *gradCtx, dy string) ([]string, error) {
			z := c.out()
			return []string{c.b.Unary("Neg", c.b.Mul(dy, c.b.Mul(z, z)))}, nil
		},
		// dx = dz·z·(1 - z)
		"Sigmoid": func(c *gradCtx, dy string) ([]string, error) {
			z := c.out()
			return []string{c.b.Mul(dy, c.b.Mul(z, c.b.Sub(c.scalar(1), z)))}, nil
		},
		// z = x·s, s = σ(x): dx = dz·s·(1 + x·(1 - s))
		"Silu": func(c *gradCtx, dy string) ([]string, error) {
			x := c.in(0)
			s := c.b.Unary("Sigmoid", x)
			one := c.scalar(1)
			d := c.b.Mul(s, c.b.Add(one, c.b.Mul(x, c.b.Sub(one, s))))
			return []string{c.b.Mul(dy, d)}, nil
		},
		// dx = dz, dy = dz (each summed over its broadcast axes)
		"Add": func(c *gradCtx, dy string) ([]string, error) {
			return c.binary(func() string { return dy }, func() string { return dy }), nil
		},
		// dx = dz, dy = -dz
		"Sub": func(c *gradCtx, dy string) ([]string, error) {
			return c.binary(func() string { return dy }, func() string { return c.b.Unary("Neg", dy) }), nil
		},
		// dx = dz·y, dy = dz·x
		"Mul": func(c *gradCtx, dy string) ([]string, error) {
			return c.binary(func() string { return c.b.Mul(dy, c.in(1)) }, func() string { return c.b.Mul(dy, c.in(0)) }), nil
		},
		// dx = dz / y, dy = -dz·z / y
		"Div": func(c *gradCtx, dy string) ([]string, error) {
			return c.binary(func() string { return c.b.Div(dy, c.in(1)) },
				func() string { return c.b.Unary("Neg", c.b.Div(c.b.Mul(dy, c.out()), c.in(1))) }), nil
		},
		// dx = dz·y·x^(y-1), dy = dz·z·ln x
		"Pow": func(c *gradCtx, dy string) ([]string, error) {
			x, y := c.in(0), c.in(1)
			return c.binary(func() string {
				return c.b.Mul(dy, c.b.Mul(y, c.b.Op("Pow", nil, x, c.b.Sub(y, c.scalar(1)))))
			}, func() string {
				return c.b.Mul(dy, c.b.Mul(c.out(), c.b.Unary("Log", x)))
			}), nil
		},
		// PyTorch's rule: the larger input takes dz, a tie splits it in halves.
		"Max": func(c *gradCtx, dy string) ([]string, error) { return c.minMax(dy, true), nil },
		// The smaller input takes dz, a tie splits it in halves.
		"Min": func(c *gradCtx, dy string) ([]string, error) { return c.minMax(dy, false), nil },
		// dx = cast(dz) back to x's dtype
		"Cast": func(c *gradCtx, dy string) ([]string, error) {
			return []string{c.b.Op("Cast", ir.Attrs{"to": ir.String(c.typ(c.in(0)).DType.String())}, dy)}, nil
		},
		"MatMul": matMulGrad,
		// y = x·wᵀ over x[N, in] (leading axes flattened): dx = dy·w, dw = dyᵀ·x
		"Linear": func(c *gradCtx, dy string) ([]string, error) {
			x, w := c.in(0), c.in(1)
			xt, wt := c.typ(x), c.typ(w)
			out, in := wt.Shape[0], wt.Shape[1]
			dy2 := c.b.Reshape(dy, -1, out)
			res := make([]string, 2)
			if c.need[0] {
				res[0] = c.b.Reshape(c.b.MatMul(dy2, w, false, false), xt.Shape...)
			}
			if c.need[1] {
				res[1] = c.b.MatMul(dy2, c.b.Reshape(x, -1, in), true, false)
			}
			return res, nil
		},
		"LowRankSparseAdd": lowRankSparseAddGrad,
		// dx = dz broadcast back over the reduced axes
		"ReduceSum": func(c *gradCtx, dy string) ([]string, error) { return c.reduce(dy, false) },
		// dx = dz / count broadcast back over the reduced axes
		"ReduceMean": func(c *gradCtx, dy string) ([]string, error) { return c.reduce(dy, true) },
		// dx = dz reshaped to x's shape
		"Reshape": func(c *gradCtx, dy string) ([]string, error) {
			return []string{c.b.Reshape(dy, c.typ(c.in(0)).Shape...)}, nil
		},
		// dx = dz summed over the expanded axes
		"Expand": func(c *gradCtx, dy string) ([]string, error) {
			return []string{reduceTo(c.b, dy, c.typ(c.in(0)).Shape)}, nil
		},
		// dx = dz transposed by the inverse permutation
		"Transpose": func(c *gradCtx, dy string) ([]string, error) {
			perm := c.n.Attrs.GetInts("perm")
			inv := make([]int, len(perm))
			for k, p := range perm {
				inv[p] = k
			}
			return []string{c.b.Transpose(dy, inv...)}, nil
		},
		// dx = zeros with dz placed at [start:end] along axis
		"Slice": sliceGrad,
		// dx_i = dz[off_i : off_i + len_i] along axis
		"Concat": func(c *gradCtx, dy string) ([]string, error) {
			ax, err := ir.NormAxis(c.n.Attrs.GetInt("axis", 0), c.typ(dy).Rank())
			if err != nil {
				return nil, err
			}
			res := make([]string, len(c.n.Inputs))
			off := 0
			for i, in := range c.n.Inputs {
				size := c.typ(in).Shape[ax]
				if c.need[i] {
					res[i] = c.b.Slice(dy, ax, off, off+size)
				}
				off += size
			}
			return res, nil
		},
		// dtable = ScatterAdd(dz, indices) with table's row count
		"Gather": func(c *gradCtx, dy string) ([]string, error) {
			rows := c.typ(c.in(0)).Shape[0]
			return []string{c.b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(int64(rows))}, dy, c.in(1)), ""}, nil
		},
		// dupdates = Gather(dz, indices)
		"ScatterAdd": func(c *gradCtx, dy string) ([]string, error) {
			return []string{c.b.Op("Gather", nil, dy, c.in(1)), ""}, nil
		},
		// dx = z·(dz - Σ_axis dz·z)
		"Softmax": func(c *gradCtx, dy string) ([]string, error) {
			z := c.out()
			ax, err := ir.NormAxis(c.n.Attrs.GetInt("axis", -1), c.typ(z).Rank())
			if err != nil {
				return nil, err
			}
			s := c.b.Reduce("ReduceSum", c.b.Mul(dy, z), true, ax)
			return []string{c.b.Mul(z, c.b.Sub(dy, s))}, nil
		},
		// dlogits = (softmax(logits) - onehot(labels))·dloss
		"SoftmaxCrossEntropy": func(c *gradCtx, dy string) ([]string, error) {
			return []string{c.b.Op("SoftmaxCrossEntropyGrad", nil, c.in(0), c.in(1), dy), ""}, nil
		},
		"SoftmaxCrossEntropyGrad": func(c *gradCtx, dy string) ([]string, error) {
			return nil, fmt.Errorf("SoftmaxCrossEntropyGrad has no gradient rule (second-order derivatives of the cross-entropy are not supported)")
		},
		// A rotation is orthogonal: its adjoint rotates by -θ.
		"RoPE": func(c *gradCtx, dy string) ([]string, error) {
			a := c.n.Attrs.Clone()
			if a == nil {
				a = ir.Attrs{}
			}
			a["inverse"] = ir.Int(1 - min(1, max(0, a.GetInt("inverse", 0))))
			return []string{c.b.Op("RoPE", a, dy)}, nil
		},
		// Masked entries are constants: dx = dz with them zeroed.
		"CausalMask": func(c *gradCtx, dy string) ([]string, error) {
			return []string{c.b.Op("CausalMask", ir.Attrs{"fill": ir.String("zero")}, dy)}, nil
		},
	}
}

// binary applies the rules dx() and dy() of a broadcasting binary op, each only
// when needed, and sums each result back to its input's shape.
func (c *gradCtx) binary(dx, dy func() string) []string {
	res := make([]string, 2)
	for i, f := range []func() string{dx, dy} {
		if c.need[i] {
			res[i] = reduceTo(c.b, f(), c.typ(c.in(i)).Shape)
		}
	}
	return res
}

// minMax is PyTorch's maximum (max true) / minimum rule: the input ahead (larger
// for Max, smaller for Min) takes dz, a tie splits it in halves. With
// w = ½ + ½·(ahead(x, y) − ahead(y, x)): dx = dz·w, dy = dz·(1 − w).
func (c *gradCtx) minMax(dy string, isMax bool) []string {
	b := c.b
	x, y := c.in(0), c.in(1)
	gt, lt := b.Op("Greater", nil, x, y), b.Op("Greater", nil, y, x)
	if !isMax {
		gt, lt = lt, gt
	}
	half := c.scalar(0.5)
	w := b.Add(half, b.Mul(half, b.Sub(gt, lt)))
	return c.binary(func() string { return b.Mul(dy, w) }, func() string { return b.Mul(dy, b.Sub(c.scalar(1), w)) })
}

// reduce is the rule of ReduceSum (mean false) and ReduceMean (mean true).
func (c *gradCtx) reduce(dy string, mean bool) ([]string, error) {
	xt := c.typ(c.in(0))
	axes, err := ir.ReduceAxes(c.n.Attrs.GetInts("axes"), xt.Rank())
	if err != nil {
		return nil, err
	}
	kept := ir.ReducedShape(xt.Shape, axes, true)
	if !ir.ShapeEqual(c.typ(dy).Shape, kept) {
		dy = c.b.Reshape(dy, kept...)
	}
	if mean {
		count := 1
		for _, a := range axes {
			count *= xt.Shape[a]
		}
		dy = c.b.Mul(dy, c.scalar(1/float64(count)))
	}
	if !ir.ShapeEqual(kept, xt.Shape) {
		dy = c.b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(xt.Shape)}, dy)
	}
	return []string{dy}, nil
}

// matMulGrad differentiates c = op(a)·op(b) for every transpose combination:
//
//	ta tb   da            db
//	0  0    dc·bᵀ         aᵀ·dc
//	1  0    b·dcᵀ         a·dc
//	0  1    dc·b          dcᵀ·a
//	1  1    bᵀ·dcᵀ        dcᵀ·aᵀ
//
// and sums each over the batch axes its input was broadcast along. When b is a
// matrix shared by a batch of a (and a is not transposed), db is one MatMul over
// the flattened batch instead of a batched product and a reduction.
func matMulGrad(c *gradCtx, dc string) ([]string, error) {
	a, bv := c.in(0), c.in(1)
	ta := c.n.Attrs.GetInt("transpose_a", 0) != 0
	tb := c.n.Attrs.GetInt("transpose_b", 0) != 0
	at, bt := c.typ(a), c.typ(bv)
	b := c.b
	res := make([]string, 2)
	if c.need[0] {
		var d string
		switch {
		case !ta && !tb:
			d = b.MatMul(dc, bv, false, true)
		case ta && !tb:
			d = b.MatMul(bv, dc, false, true)
		case !ta && tb:
			d = b.MatMul(dc, bv, false, false)
		default:
			d = b.MatMul(bv, dc, true, true)
		}
		res[0] = reduceTo(b, d, at.Shape)
	}
	if c.need[1] {
		var d string
		if bt.Rank() == 2 && at.Rank() > 2 && !ta {
			k := at.Shape[at.Rank()-1]
			n := c.typ(dc).Shape[c.typ(dc).Rank()-1]
			a2, dc2 := b.Reshape(a, -1, k), b.Reshape(dc, -1, n)
			if tb {
				d = b.MatMul(dc2, a2, true, false)
			} else {
				d = b.MatMul(a2, dc2, true, false)
			}
		} else {
			switch {
			case !ta && !tb:
				d = b.MatMul(a, dc, true, false)
			case ta && !tb:
				d = b.MatMul(a, dc, false, false)
			case !ta && tb:
				d = b.MatMul(dc, a, true, false)
			default:
				d = b.MatMul(dc, a, true, true)
			}
		}
		res[1] = reduceTo(b, d, bt.Shape)
	}
	return res, nil
}

// lowRankSparseAddGrad is the seed's memory-saving backward of SLTrain's layer
// y = x·Wᵀ, W = B·(A·scale) + scatter(S). With x2 = x as [N, in], dy2 = dy as
// [N, out]:
//
//	W  = B·(A·scale) + reshape(ScatterAdd(values as [nnz,1], index, out·in), [out, in])
//	dx = dy2·W
//	dW = dy2ᵀ·x2            (transient: never an input or state)
//	dB = dW·(A·scale)ᵀ
//	dA = scale·Bᵀ·dW
//	dS = Gather(dW as [out·in, 1], index) as [nnz]
//
// The index buffer gets no gradient.
func lowRankSparseAddGrad(c *gradCtx, dy string) ([]string, error) {
	x, bm, am, vals, idx := c.in(0), c.in(1), c.in(2), c.in(3), c.in(4)
	xt, bt, at := c.typ(x), c.typ(bm), c.typ(am)
	out, in := bt.Shape[0], at.Shape[1]
	nnz := c.typ(vals).Shape[0]
	scale := c.n.Attrs.GetFloat("scale", 1)
	b := c.b
	res := make([]string, 5)
	dy2 := b.Reshape(dy, -1, out)
	scaleC := c.scalar(scale)
	var sA string
	if c.need[0] || c.need[1] {
		sA = b.Mul(am, scaleC)
	}
	if c.need[0] {
		s := b.Op("ScatterAdd", ir.Attrs{"num_rows": ir.Int(int64(out) * int64(in))}, b.Reshape(vals, nnz, 1), idx)
		w := b.Add(b.MatMul(bm, sA, false, false), b.Reshape(s, out, in))
		res[0] = b.Reshape(b.MatMul(dy2, w, false, false), xt.Shape...)
	}
	if c.need[1] || c.need[2] || c.need[3] {
		dW := b.MatMul(dy2, b.Reshape(x, -1, in), true, false)
		if c.need[1] {
			res[1] = b.MatMul(dW, sA, false, true)
		}
		if c.need[2] {
			res[2] = b.Mul(b.MatMul(bm, dW, true, false), scaleC)
		}
		if c.need[3] {
			res[3] = b.Reshape(b.Op("Gather", nil, b.Reshape(dW, out*in, 1), idx), nnz)
		}
	}
	return res, nil
}

// sliceGrad places dz at [start:end] along axis of a zero tensor of x's shape.
func sliceGrad(c *gradCtx, dy string) ([]string, error) {
	xt := c.typ(c.in(0))
	ax, err := ir.NormAxis(c.n.Attrs.GetInt("axis", 0), xt.Rank())
	if err != nil {
		return nil, err
	}
	st, en := int(c.n.Attrs.GetInt("start", 0)), int(c.n.Attrs.GetInt("end", 0))
	zeros := func(size int) string {
		s := append([]int(nil), xt.Shape...)
		s[ax] = size
		return c.b.Const(0, ir.Type{DType: xt.DType, Shape: s})
	}
	parts := []string{}
	if st > 0 {
		parts = append(parts, zeros(st))
	}
	parts = append(parts, dy)
	if rest := xt.Shape[ax] - en; rest > 0 {
		parts = append(parts, zeros(rest))
	}
	if len(parts) == 1 {
		return []string{dy}, nil
	}
	return []string{c.b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, parts...)}, nil
}
