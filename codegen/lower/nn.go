package lower

import (
	"fmt"
	"math"
	"strconv"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// softmax: y = exp(x − max x) / Σ exp(x − max x) along axis. The tensor is
// viewed as [outer, L, inner]; threads split the outer·inner lines. Each
// line takes three passes: the max, then the exponentials (stored) and their
// f64 sum, then the division. On the GPU a softmax over the last axis
// (inner = 1) takes block rows (codegen/gpu's rows.go: a block per line, its threads
// strided over the line, the max and the sum by blockReduce); over another
// axis the lines go grid-stride, one per thread (consecutive threads take
// consecutive lines, adjacent in memory), as on the CPU but coalesced.
func (e *Emitter) softmax(name string, g *Group) (*Lowering, error) {
	x := g.Inputs[0].Type
	ax, err := ir.NormAxis(g.Nodes[0].Attrs.GetInt("axis", -1), x.Rank())
	if err != nil {
		return nil, err
	}
	t, err := e.storageType(x.DType)
	if err != nil || !x.DType.IsFloat() {
		return nil, fmt.Errorf("Softmax of %v: want a float type", x)
	}
	outer, L, inner := numel(x.Shape[:ax]), int64(x.Shape[ax]), numel(x.Shape[ax+1:])
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		if outer*inner*L == 0 {
			return nil
		}
		var ferr error
		if e.tr.blockRows && inner == 1 {
			return k.softmaxRows(t, outer, L)
		}
		k.each(outer*inner, 1, func(line llvm.Value) {
			base := k.Add(k.Mulc(k.Divc(line, inner), L*inner), k.Remc(line, inner))
			xp := k.At(t, k.P[0], base)
			yp := k.At(t, k.P[1], base)
			at := func(p, l llvm.Value) llvm.Value { return k.At(t, p, k.Mulc(l, inner)) }
			m, err := k.rowMax(t, L, xp, inner)
			if err != nil {
				ferr = err
				return
			}
			total, err := k.rowExpSum(t, t, L, xp, yp, inner, m)
			if err != nil {
				ferr = err
				return
			}
			k.LoopN(L, func(l llvm.Value) {
				p := at(yp, l)
				k.Store(k.narrow(k.B.FDiv(k.Widen(k.Load(t, p)), total, ""), t), t, p)
			})
		})
		return ferr
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// softmaxRows is softmax over contiguous rows of L on the GPU, by block
// rows: per row, the block's maximum, then each thread's exponentials
// (stored to y) and the block's f64 sum of them, then each thread divides
// the exponentials it stored (no barrier: a thread reads back only its
// own). Every thread of a block runs every row's reductions (blockRows'
// loop is block-uniform).
func (k *kfn) softmaxRows(t llvm.Type, rows, L int64) error {
	var ferr error
	fail := func(err error) {
		if ferr == nil {
			ferr = err
		}
	}
	err := k.e.dev.BlockRows(k.Fn, rows, func(hw kernel.BlockRegs, row llvm.Value) {
		xp := k.At(t, k.P[0], k.Mulc(row, L))
		yp := k.At(t, k.P[1], k.Mulc(row, L))
		m, err := k.e.dev.BlockRowMax(k.Fn, hw, t, L, xp)
		if err != nil {
			fail(err)
			return
		}
		total, err := k.e.dev.BlockRowExpSum(k.Fn, hw, t, t, L, xp, yp, m, k.exp)
		if err != nil {
			fail(err)
			return
		}
		k.e.dev.RowStride(k.Fn, hw, k.C64(L), func(l llvm.Value) {
			p := k.At(t, yp, l)
			k.Store(k.narrow(k.B.FDiv(k.Widen(k.Load(t, p)), total, ""), t), t, p)
		})
	})
	if err != nil {
		return err
	}
	return ferr
}

// narrow converts an f64 to t. A bf16 storage t narrows to f32: the store rounds it on to bf16.
func (k *kfn) narrow(v llvm.Value, t llvm.Type) llvm.Value {
	t = k.e.ComputeOf(t)
	if t.Kind() == llvm.DoubleTypeKind {
		return v
	}
	return k.B.FPTrunc(v, t, "")
}

// crossEntropy emits SoftmaxCrossEntropy (loss[j] = logsumexp(row j) −
// row_j[label j]) and its gradient (dlogits[j, v] = (softmax(row j)[v] −
// [v = label j])·dloss[j]). Threads split the rows; on the GPU blocks take
// them (block rows, codegen/gpu's rows.go), reading the logits once for the
// maximum and the sum together (the online softmax, codegen/gpu's
// xent.go) and the gradient once more for its exponentials. The log-sum-exp is the
// interpreter's: m + log Σ exp(x − m) with an f64 sum, and m itself when m is
// infinite. A label out of range gives NaN (the interpreter's error). The
// gradient's softmax is exp(x − m)·(1/Σ), within an f64 ulp of the
// interpreter's exp(x − m)/Σ before rounding to the value's type.
func (e *Emitter) crossEntropy(name string, g *Group) (*Lowering, error) {
	logits, labels := g.Inputs[0].Type, g.Inputs[1].Type
	grad := g.Nodes[0].Op == "SoftmaxCrossEntropyGrad"
	t, err := e.storageType(logits.DType)
	if err != nil || !logits.DType.IsFloat() {
		return nil, fmt.Errorf("%s of %v: want a float type", g.Nodes[0].Op, logits)
	}
	// ot: the result's storage — the gradient's may be wider than the
	// logits' (bf16 logits, f32 dloss and gradient: bf16-mixed).
	ot := t
	if grad {
		if ot, err = e.storageType(g.Outputs[0].Type.DType); err != nil {
			return nil, err
		}
	}
	V := int64(logits.Shape[logits.Rank()-1])
	J := numel(labels.Shape)
	out := len(g.Inputs)
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		b, f64 := k.B, e.F64
		var ferr error
		fail := func(err error) {
			if ferr == nil {
				ferr = err
			}
		}
		// row computes row j: on the CPU by this thread alone (hw nil), on
		// the GPU by the block (block rows: every thread of the block runs
		// it, the reductions by blockReduce, the per-element loop strided
		// and the loss stored by thread 0).
		row := func(hw *kernel.BlockRegs, j llvm.Value) {
			xp := k.At(t, k.P[0], k.Mulc(j, V))
			var m, total, yp llvm.Value
			var err error
			if hw != nil {
				// One pass over the logits for m and Σ (the online
				// softmax); the gradient recomputes its exponentials.
				m, total, err = k.e.dev.BlockRowOnlineExpSum(k.Fn, *hw, t, V, xp, k.exp)
				if err != nil {
					fail(err)
					return
				}
				if grad {
					yp = k.At(ot, k.P[out], k.Mulc(j, V))
				}
			} else {
				if m, err = k.rowMax(t, V, xp, 1); err != nil {
					fail(err)
					return
				}
				if grad {
					yp = k.At(ot, k.P[out], k.Mulc(j, V))
				}
				if total, err = k.rowExpSum(t, ot, V, xp, yp, 1, m); err != nil {
					fail(err)
					return
				}
			}
			mw := k.Widen(m)
			logS, err := k.callIntrinsic("llvm.log", f64, total)
			if err != nil {
				fail(err)
				return
			}
			absM, err := k.callIntrinsic("llvm.fabs", f64, mw)
			if err != nil {
				fail(err)
				return
			}
			lse := b.Select(b.FCmp(llvm.FloatOEQ, absM, llvm.ConstFloat(f64, math.Inf(1)), ""), mw, b.FAdd(mw, logS, ""), "")
			label, err := k.loadIndex(labels.DType, k.P[1], j)
			if err != nil {
				fail(err)
				return
			}
			ok := k.inRange(label, k.C64(0), k.C64(V))
			nan := llvm.ConstFloat(f64, math.NaN())
			if !grad {
				xl := k.Widen(k.LoadAt(t, xp, b.Select(ok, label, k.C64(0), "")))
				loss := b.Select(ok, b.FSub(lse, xl, ""), nan, "")
				if hw != nil {
					k.When(b.ICmp(llvm.IntEQ, hw.Tx, k.C64(0), ""), func() { k.StoreAt(k.narrow(loss, t), t, k.P[out], j) })
				} else {
					k.StoreAt(k.narrow(loss, t), t, k.P[out], j)
				}
				return
			}
			dloss := k.Widen(k.LoadAt(ot, k.P[2], j))
			scale := b.Select(ok, dloss, nan, "")
			one := llvm.ConstFloat(f64, 1)
			zero := llvm.ConstFloat(f64, 0)
			// One division per row, not per element: a vector f64 divide
			// costs several multiplies, and this loop runs over B·L·V
			// elements. e·(1/Σ) differs from e/Σ by at most an ulp of f64.
			inv := b.FDiv(one, total, "")
			if hw != nil {
				// exp(x − m) from the logits (one pass fewer than storing
				// them first), the same exponential as in the sum.
				k.e.dev.RowStride(k.Fn, *hw, k.C64(V), func(l llvm.Value) {
					ex, err := k.exp(b.FSub(k.LoadAt(t, xp, l), m, ""))
					if err != nil {
						fail(err)
						return
					}
					prob := b.FMul(k.Widen(ex), inv, "")
					hot := b.Select(b.ICmp(llvm.IntEQ, l, label, ""), one, zero, "")
					k.StoreAt(k.narrow(b.FMul(b.FSub(prob, hot, ""), scale, ""), ot), ot, yp, l)
				})
				return
			}
			k.LoopN(V, func(l llvm.Value) {
				p := k.At(ot, yp, l)
				prob := b.FMul(k.Widen(k.Load(ot, p)), inv, "")
				hot := b.Select(b.ICmp(llvm.IntEQ, l, label, ""), one, zero, "")
				k.Store(k.narrow(b.FMul(b.FSub(prob, hot, ""), scale, ""), ot), ot, p)
			})
		}
		if e.tr.blockRows {
			if err := k.e.dev.BlockRows(k.Fn, J, func(hw kernel.BlockRegs, j llvm.Value) { row(&hw, j) }); err != nil {
				return err
			}
			return ferr
		}
		s, en := k.Share(J, 1)
		k.Loop(s, en, func(j llvm.Value) { row(nil, j) })
		return ferr
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// rope applies HF's rotate_half rotary embedding. cos θ and sin θ come from
// a table computed at compile time in float64 exactly as the interpreter
// computes them (θ = p·base^(−2i/D)), and the rotation is evaluated in
// float64 without contraction, so results match the interpreter bit for bit
// (up to the final rounding to the value's type). Threads split the rows of
// D features; a row's position is its index along seq_axis.
func (e *Emitter) rope(name string, g *Group) (*Lowering, error) {
	n := g.Nodes[0]
	x := g.Inputs[0].Type
	r := x.Rank()
	ax, err := ir.NormAxis(n.Attrs.GetInt("seq_axis", -2), r)
	if err != nil {
		return nil, err
	}
	t, err := e.storageType(x.DType)
	if err != nil || !x.DType.IsFloat() {
		return nil, fmt.Errorf("RoPE of %v: want a float type", x)
	}
	base := n.Attrs.GetFloat("base", 10000)
	sign := 1.0
	if n.Attrs.GetInt("inverse", 0) != 0 {
		sign = -1
	}
	s := x.Shape
	D, S := s[r-1], s[ax]
	h := D / 2
	within := numel(s[ax+1 : r-1])
	rows := numel(s[:r-1])
	tab := make([]float64, 2*S*h) // cos for all (p, i), then sin
	for p := 0; p < S; p++ {
		for i := 0; i < h; i++ {
			theta := float64(p) * math.Pow(base, -2*float64(i)/float64(D))
			tab[p*h+i], tab[S*h+p*h+i] = math.Cos(theta), math.Sin(theta)
		}
	}
	var get llvm.Function
	if !e.tr.computeConsts { // the GPU computes the angles (no constant tables there)
		get = e.table("rope_"+strconv.Itoa(S)+"_"+strconv.Itoa(D)+"_"+fmt.Sprintf("%x", math.Float64bits(base)), tab)
	}
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		if rows*int64(D) == 0 {
			return nil
		}
		b, f64 := k.B, e.F64
		b.SetFastMath(llvm.FastMathNone)
		if e.tr.computeConsts {
			return k.ropeGPU(t, rows, within, S, D, base, sign)
		}
		cosTab := b.Call(get, nil, "")
		sinTab := k.At(f64, cosTab, k.C64(int64(S*h)))
		lo, hi := k.Share(rows, 1)
		k.Loop(lo, hi, func(row llvm.Value) {
			p := k.Remc(k.Divc(row, within), int64(S))
			xr := k.At(t, k.P[0], k.Mulc(row, int64(D)))
			yr := k.At(t, k.P[1], k.Mulc(row, int64(D)))
			cr := k.At(f64, cosTab, k.Mulc(p, int64(h)))
			sr := k.At(f64, sinTab, k.Mulc(p, int64(h)))
			k.LoopN(int64(h), func(i llvm.Value) {
				k.rotatePair(t, xr, yr, i, int64(h), k.LoadAt(f64, cr, i), k.LoadAt(f64, sr, i), sign)
			})
		})
		b.SetFastMath(llvm.FastMathAllowContract)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}

// rotatePair rotates features i and i+h of row xr into yr by the angle with
// cosine c and sine sn (f64; sign −1 rotates backwards), in f64 without
// contraction, rounded once to t.
func (k *kfn) rotatePair(t llvm.Type, xr, yr, i llvm.Value, h int64, c, sn llvm.Value, sign float64) {
	b := k.B
	ih := k.Addc(i, h)
	if sign < 0 {
		sn = b.FNeg(sn, "")
	}
	x0 := k.Widen(k.LoadAt(t, xr, i))
	x1 := k.Widen(k.LoadAt(t, xr, ih))
	y0 := b.FSub(b.FMul(x0, c, ""), b.FMul(x1, sn, ""), "")
	y1 := b.FAdd(b.FMul(x1, c, ""), b.FMul(x0, sn, ""), "")
	k.StoreAt(k.narrow(y0, t), t, yr, i)
	k.StoreAt(k.narrow(y1, t), t, yr, ih)
}

// ropeGPU is rope's loop on the GPU: θ = p·base^(−2i/D) and its cosine and
// sine computed in f64 per element (sincos64) instead of read from a table,
// within a few f64 ulps of the interpreter's; the pairs go grid-stride.
func (k *kfn) ropeGPU(t llvm.Type, rows, within int64, S, D int, base, sign float64) error {
	b, f64 := k.B, k.e.F64
	h := D / 2
	if h == 0 {
		b.SetFastMath(llvm.FastMathAllowContract)
		return nil
	}
	// Grid-stride over the rows·h pairs (pair i of a row: features i and
	// i + h), so that a warp takes consecutive features.
	k.e.dev.GridStride(k.Fn, rows*int64(h), func(pi llvm.Value) {
		row, i := k.Divc(pi, int64(h)), k.Remc(pi, int64(h))
		p := b.SIToFP(k.Remc(k.Divc(row, within), int64(S)), f64, "")
		xr := k.At(t, k.P[0], k.Mulc(row, int64(D)))
		yr := k.At(t, k.P[1], k.Mulc(row, int64(D)))
		e := b.FMul(b.SIToFP(i, f64, ""), llvm.ConstFloat(f64, -2/float64(D)), "")
		inv := k.e.dev.Exp64(k.Fn, b.FMul(e, llvm.ConstFloat(f64, math.Log(base)), ""))
		c, sn := k.e.dev.Sincos64(k.Fn, b.FMul(p, inv, ""))
		k.rotatePair(t, xr, yr, i, int64(h), c, sn, sign)
	})
	b.SetFastMath(llvm.FastMathAllowContract)
	return nil
}

// causalMask: y[..., i, j] = x[..., i, j] if j ≤ i else fill (−Inf, or 0 for
// the gradient). Threads split the rows (on the GPU the elements,
// grid-stride).
func (e *Emitter) causalMask(name string, g *Group) (*Lowering, error) {
	n := g.Nodes[0]
	x := g.Inputs[0].Type
	t, err := e.storageType(x.DType)
	if err != nil || !x.DType.IsFloat() {
		return nil, fmt.Errorf("CausalMask of %v: want a float type", x)
	}
	fill := math.Inf(-1)
	switch f := n.Attrs.GetString("fill", "neg_inf"); f {
	case "neg_inf":
	case "zero":
		fill = 0
	default:
		return nil, fmt.Errorf("unknown fill %q", f)
	}
	r := x.Rank()
	R, C := int64(x.Shape[r-2]), int64(x.Shape[r-1])
	rows := numel(x.Shape[:r-1])
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		if rows*C == 0 {
			return nil
		}
		if e.tr.coalesce {
			// Grid-stride over the elements: element el is column el mod C
			// of row el / C.
			k.e.dev.GridStride(k.Fn, rows*C, func(el llvm.Value) {
				i, j := k.Remc(k.Divc(el, C), R), k.Remc(el, C)
				keep := k.B.ICmp(llvm.IntSLE, j, i, "")
				k.StoreAt(k.B.Select(keep, k.LoadAt(t, k.P[0], el), llvm.ConstFloat(e.ComputeOf(t), fill), ""), t, k.P[1], el)
			})
			return nil
		}
		lo, hi := k.Share(rows, 1)
		k.Loop(lo, hi, func(row llvm.Value) {
			i := k.Remc(row, R)
			xr := k.At(t, k.P[0], k.Mulc(row, C))
			yr := k.At(t, k.P[1], k.Mulc(row, C))
			k.LoopN(C, func(j llvm.Value) {
				keep := k.B.ICmp(llvm.IntSLE, j, i, "")
				k.StoreAt(k.B.Select(keep, k.LoadAt(t, xr, j), llvm.ConstFloat(e.ComputeOf(t), fill), ""), t, yr, j)
			})
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}
