package onnx

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"gitee.com/gidean/conv-linn/ir"
)

// This file holds the graph-building helpers that the op converters
// (ops_*.go) share: slices and gathers along an axis, log softmax, equality,
// the NLL loss, Where, constant index inputs, erf and einsum.

// sliceAxis takes x[start:end:step] along axis ax (bounds already clamped as
// ONNX Slice does): a Slice for step 1, else a Gather of the picked indices
// with the axis moved to the front.
func (im *importer) sliceAxis(v string, ax int, start, end, step int64) string {
	b := im.b
	if step == 1 {
		return b.Slice(v, ax, int(start), int(max(start, end)))
	}
	var idx []float64
	for i := start; (step > 0 && i < end) || (step < 0 && i > end); i += step {
		idx = append(idx, float64(i))
	}
	return im.gatherAxis(v, ax, idx, []int{len(idx)})
}

// gatherAxis is ONNX Gather along axis ax with constant, non-negative indices
// of the given shape.
func (im *importer) gatherAxis(v string, ax int, idx []float64, shape []int) string {
	b := im.b
	it := ir.Type{DType: ir.I64, Shape: shape}
	uniform := true
	for _, i := range idx {
		uniform = uniform && i == idx[0]
	}
	var iv string
	if len(idx) == 0 || uniform {
		iv = b.Const(append(idx, 0)[0], it)
	} else {
		iv = im.constInput("gather_indices", it, idx)
	}
	return im.gatherAt(v, ax, iv)
}

// gatherAt is ONNX Gather along axis ax with non-negative indices: the axis
// is moved to the front for slc's axis-0 Gather and the result's axes are
// moved back.
func (im *importer) gatherAt(v string, ax int, iv string) string {
	b := im.b
	r := b.Type(v).Rank()
	if ax != 0 {
		perm := []int{ax}
		for k := range r {
			if k != ax {
				perm = append(perm, k)
			}
		}
		v = b.Transpose(v, perm...)
	}
	y := b.Op("Gather", nil, v, iv)
	if ax == 0 || b.Err() != nil {
		return y
	}
	// y is the index dims, then x's dims before ax, then those after it.
	ri := b.Type(iv).Rank()
	var perm []int
	for k := range ax {
		perm = append(perm, ri+k)
	}
	for k := range ri {
		perm = append(perm, k)
	}
	for k := ri + ax; k < b.Type(y).Rank(); k++ {
		perm = append(perm, k)
	}
	return b.Transpose(y, perm...)
}

// logSoftmax is log softmax x along axis ax: x − logsumexp x. slc's
// SoftmaxCrossEntropy is logsumexp(row) − row[label]; with label 0 it gives
// lse − x₀, so y = (x − x₀) − SoftmaxCrossEntropy(x, 0), along the last axis
// (the axis is moved there and back).
func (im *importer) logSoftmax(v string, ax int) string {
	b := im.b
	r := b.Type(v).Rank()
	if b.Type(v).Shape[ax] == 0 {
		return v
	}
	var perm []int
	if ax != r-1 {
		for k := range r {
			if k != ax {
				perm = append(perm, k)
			}
		}
		perm = append(perm, ax)
		v = b.Transpose(v, perm...)
	}
	s := b.Type(v).Shape
	labels := b.Const(0, ir.Type{DType: ir.I64, Shape: s[:r-1]})
	lse := b.Op("SoftmaxCrossEntropy", nil, v, labels)
	keep := append(slices.Clone(s[:r-1]), 1)
	y := b.Sub(b.Sub(v, b.Slice(v, r-1, 0, 1)), b.Reshape(lse, keep...))
	if perm != nil {
		inv := make([]int, r)
		for k, p := range perm {
			inv[p] = k
		}
		y = b.Transpose(y, inv...)
	}
	return y
}

// equal is (1 − [u > v])·(1 − [v > u]) in their dtype: u = v for integers
// and for floats other than NaN.
func (im *importer) equal(u, v string) string {
	b := im.b
	one := b.Scalar(1, u)
	return b.Mul(b.Sub(one, b.Op("Greater", nil, u, v)), b.Sub(one, b.Op("Greater", nil, v, u)))
}

// nllLoss is ONNX NegativeLogLikelihoodLoss of x [N, C, d…] and target
// [N, d…]: loss[n, d…] = −x[n, t, d…]·w[t] with t = target[n, d…], w the
// weight (1 without one) and w[t] = 0 where t is ignore_index; "mean" divides
// the sum by Σ w[t]. x[n, t, d…] is a Gather from x with C moved last and
// flattened, at (row·C + t), so it is exact; an ignored t reads row·C + 0.
func (im *importer) nllLoss(x, t, w string, ii *int64, red string) string {
	b := im.b
	xs := b.Type(x).Shape
	r, c := len(xs), xs[1]
	perm := []int{0}
	for k := 2; k < r; k++ {
		perm = append(perm, k)
	}
	perm = append(perm, 1)
	if r > 2 {
		x = b.Transpose(x, perm...)
	}
	ts := b.Type(t).Shape
	m := 1
	for _, d := range ts {
		m *= d
	}
	flat := b.Reshape(x, m*c)
	var mask string // 1 where the target counts, as an integer
	if ii != nil {
		mask = b.Sub(b.Scalar(1, t), im.equal(t, b.Scalar(float64(*ii), t)))
		t = b.Mul(t, mask)
	}
	base := make([]float64, m)
	for k := range base {
		base[k] = float64(k * c)
	}
	bt := ir.Type{DType: b.Type(t).DType, Shape: ts}
	name := "nll_rows"
	for k := 1; b.Type(name).DType != ir.InvalidDType; k++ {
		name = fmt.Sprintf("nll_rows_%d", k)
	}
	var rows string
	if m == 1 {
		rows = b.Const(0, bt)
	} else {
		rows = b.AddInput(name, bt, ir.Buffer, &ir.Init{Kind: ir.InitExplicit, Data: base})
	}
	picked := b.Op("Gather", nil, flat, b.Add(rows, t))
	var wt string // the weight of each target
	if w != "" {
		wt = b.Op("Gather", nil, w, t)
	}
	if mask != "" {
		mf := b.Op("Cast", ir.Attrs{"to": ir.String(b.Type(x).DType.String())}, mask)
		if wt == "" {
			wt = mf
		} else {
			wt = b.Mul(wt, mf)
		}
	}
	loss := b.Unary("Neg", picked)
	if wt != "" {
		loss = b.Mul(loss, wt)
	}
	all := make([]int, len(ts))
	for k := range all {
		all[k] = k
	}
	switch {
	case red == "none":
		return loss
	case red == "sum":
		return b.Reduce("ReduceSum", loss, false, all...)
	case wt == "":
		return b.Reduce("ReduceMean", loss, false, all...)
	}
	return b.Div(b.Reduce("ReduceSum", loss, false, all...), b.Reduce("ReduceSum", wt, false, all...))
}

// constInput adds a constant integer tensor as a Buffer input named after name.
func (im *importer) constInput(name string, t ir.Type, data []float64) string {
	b := im.b
	in := name
	for k := 1; b.Type(in).DType != ir.InvalidDType; k++ {
		in = fmt.Sprintf("%s_%d", name, k)
	}
	im.derived = append(im.derived, in)
	return b.AddInput(in, t, ir.Buffer, &ir.Init{Kind: ir.InitExplicit, Data: data})
}

// where is ONNX Where with c a 0/1 integer: all three are broadcast to one
// shape of n elements and flattened, and y = Gather(Concat(v, u), c·n + i),
// which picks u's or v's element itself (no arithmetic on them, so inf and
// NaN pass through exactly).
func (im *importer) where(c, u, v string) string {
	b := im.b
	s, err := ir.Broadcast(b.Type(c).Shape, b.Type(u).Shape)
	if err == nil {
		s, err = ir.Broadcast(s, b.Type(v).Shape)
	}
	if err != nil {
		b.Fail(fmt.Errorf("Where: %w", err))
		return ""
	}
	m := 1
	for _, d := range s {
		m *= d
	}
	flat := func(w string) string {
		if !ir.ShapeEqual(b.Type(w).Shape, s) {
			w = b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(s)}, w)
		}
		return b.Reshape(w, m)
	}
	if m == 0 {
		return b.Reshape(flat(u), s...)
	}
	iota := make([]float64, m)
	for k := range iota {
		iota[k] = float64(k)
	}
	ci := flat(c)
	if b.Type(ci).DType != ir.I64 {
		ci = b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, ci)
	}
	var idx string
	if m == 1 {
		idx = b.Mul(ci, b.Scalar(1, ci))
	} else {
		idx = b.Add(b.Mul(ci, b.Scalar(float64(m), ci)), im.constInput("where_iota", ir.Type{DType: ir.I64, Shape: []int{m}}, iota))
	}
	y := b.Op("Gather", nil, b.Op("Concat", ir.Attrs{"axis": ir.Int(0)}, flat(v), flat(u)), idx)
	return im.reshape(y, s)
}

// nonNegative is an index operand with ONNX's negative indices (counted from
// the end of a dim of size d) made non-negative: folded for a constant, else
// idx + d·(0 > idx).
func (im *importer) nonNegative(name, idx string, d int) (string, error) {
	b := im.b
	if t, ok := im.consts[name]; ok {
		c := &Tensor{DType: t.DType, Shape: t.Shape, I: make([]int64, len(t.I))}
		for k, i := range t.I {
			if i < 0 {
				i += int64(d)
			}
			c.I[k] = i
		}
		im.consts[name+"#index"] = c
		return im.value(name + "#index")
	}
	neg := b.Op("Greater", nil, b.Scalar(0, idx), idx)
	return b.Add(idx, b.Mul(neg, b.Scalar(float64(d), idx))), nil
}

// erf is an approximation of the error function with existing ops, not an
// exact one: for |x| < 0.5 the Taylor series 2/√π·Σ (−1)ᵏ x²ᵏ⁺¹/(k!(2k+1)) to
// x¹¹ (relative error < 3·10⁻⁸), elsewhere Abramowitz & Stegun 7.1.26,
// sign(x)·(1 − (a₁t + … + a₅t⁵)·exp(−x²)) with t = 1/(1 + p|x|) (absolute
// error < 1.5·10⁻⁷ where erf is above 0.52), both then rounded to x's dtype.
// The branch is picked by Where (a Gather), so ±∞ and NaN come through as 1, −1
// and NaN.
func (im *importer) erf(v string) string {
	b := im.b
	c := func(f float64) string { return b.Scalar(f, v) }
	x2 := b.Mul(v, v)
	// Taylor: x·(c₀ + x²(c₁ + x²(c₂ + …))), Horner from the top.
	var coef []float64
	fact := 1.0
	for k := range 6 {
		if k > 0 {
			fact *= float64(k)
		}
		s := 2 / math.Sqrt(math.Pi) / (fact * float64(2*k+1))
		if k%2 == 1 {
			s = -s
		}
		coef = append(coef, s)
	}
	small := c(coef[5])
	for k := 4; k >= 0; k-- {
		small = b.Add(b.Mul(small, x2), c(coef[k]))
	}
	small = b.Mul(small, v)
	abs := b.Op("Max", nil, v, b.Unary("Neg", v))
	t := b.Unary("Recip", b.Add(c(1), b.Mul(c(0.3275911), abs)))
	a := []float64{0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429}
	poly := c(a[4])
	for k := 3; k >= 0; k-- {
		poly = b.Add(b.Mul(poly, t), c(a[k]))
	}
	poly = b.Mul(poly, t)
	big := b.Sub(c(1), b.Mul(poly, b.Unary("Exp", b.Unary("Neg", x2))))
	sign := b.Sub(b.Mul(c(2), b.Op("Greater", nil, v, c(0))), c(1))
	big = b.Mul(sign, big)
	isSmall := b.Op("Greater", nil, c(0.5), abs)
	return im.where(b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, isSmall), small, big)
}

// einsum is ONNX Einsum of one or two operands without ellipses or repeated
// letters within an operand: each operand first sums the letters that neither
// the other operand nor the output has; a single operand is then transposed
// to the output's order; two are written as one batched MatMul
// [batch, left, contracted]·[batch, contracted, right] (the outer product
// contracts nothing), reshaped and transposed to the output's order.
func (im *importer) einsum(eq string, ops []string) (string, error) {
	b := im.b
	bad := func(why string) error { return im.unsupported("attribute", fmt.Sprintf("equation %q (%s)", eq, why)) }
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, out, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(ops) || len(ops) < 1 || len(ops) > 2 {
		return "", bad(fmt.Sprintf("%d operands; slc takes one or two", len(ops)))
	}
	if strings.Contains(eq, ".") {
		return "", bad("an ellipsis")
	}
	size := map[rune]int{}
	count := map[rune]int{}
	for k, term := range terms {
		s := b.Type(ops[k]).Shape
		if len([]rune(term)) != len(s) {
			return "", bad(fmt.Sprintf("operand %d has rank %d", k, len(s)))
		}
		seen := map[rune]bool{}
		for j, c := range term {
			if !unicode.IsLetter(c) || seen[c] {
				return "", bad("a repeated or non-letter index")
			}
			seen[c] = true
			if d, ok := size[c]; ok && d != s[j] {
				return "", bad(fmt.Sprintf("index %c is %d and %d", c, d, s[j]))
			}
			size[c] = s[j]
			count[c]++
		}
	}
	if !explicit { // implicit output: the letters that appear once, in order
		var once []rune
		for c, k := range count {
			if k == 1 {
				once = append(once, c)
			}
		}
		slices.Sort(once)
		out = string(once)
	}
	inOut := map[rune]bool{}
	for _, c := range out {
		if _, ok := size[c]; !ok || inOut[c] {
			return "", bad("an output index that no operand has, or twice")
		}
		inOut[c] = true
	}
	// Sum away what only one operand has and the output does not.
	for k := range ops {
		other := ""
		if len(ops) == 2 {
			other = terms[1-k]
		}
		var axes []int
		var keep []rune
		for j, c := range terms[k] {
			if !inOut[c] && !strings.ContainsRune(other, c) {
				axes = append(axes, j)
			} else {
				keep = append(keep, c)
			}
		}
		if len(axes) > 0 {
			ops[k] = b.Reduce("ReduceSum", ops[k], false, axes...)
			terms[k] = string(keep)
		}
	}
	// permute is a Transpose of v (letters from) to the letters to.
	permute := func(v, from string, to []rune) string {
		fr := []rune(from)
		perm := make([]int, len(to))
		for k, c := range to {
			perm[k] = slices.Index(fr, c)
		}
		if slices.IsSorted(perm) {
			return v
		}
		return b.Transpose(v, perm...)
	}
	prod := func(cs []rune) int {
		p := 1
		for _, c := range cs {
			p *= size[c]
		}
		return p
	}
	if len(ops) == 1 {
		return permute(ops[0], terms[0], []rune(out)), b.Err()
	}
	var batch, left, contract, right []rune
	for _, c := range terms[0] {
		switch {
		case strings.ContainsRune(terms[1], c) && inOut[c]:
			batch = append(batch, c)
		case strings.ContainsRune(terms[1], c):
			contract = append(contract, c)
		default:
			left = append(left, c)
		}
	}
	for _, c := range terms[1] {
		if !strings.ContainsRune(terms[0], c) {
			right = append(right, c)
		}
	}
	u := permute(ops[0], terms[0], slices.Concat(batch, left, contract))
	u = im.reshape(u, []int{prod(batch), prod(left), prod(contract)})
	v := permute(ops[1], terms[1], slices.Concat(batch, contract, right))
	v = im.reshape(v, []int{prod(batch), prod(contract), prod(right)})
	y := b.MatMul(u, v, false, false)
	got := slices.Concat(batch, left, right)
	var shape []int
	for _, c := range got {
		shape = append(shape, size[c])
	}
	y = im.reshape(y, shape)
	return permute(y, string(got), []rune(out)), b.Err()
}
