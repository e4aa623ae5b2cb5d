package onnx

import (
	"fmt"
	"slices"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// nnOps are the network layers: matrix products (a product with a weight
// becomes a Linear, importer.linear), normalizations, losses and Dropout.
var nnOps = map[string]opDef{
	"MatMul":                    {conv: convMatMul, floatIn: true},
	"Gemm":                      {conv: convGemm, attrs: []string{"alpha", "beta", "transA", "transB"}, floatIn: true},
	"Einsum":                    {conv: convEinsum, attrs: []string{"equation"}},
	"LayerNormalization":        {conv: convLayerNorm, attrs: []string{"axis", "epsilon", "stash_type"}, outs: -1},
	"BatchNormalization":        {conv: convNorm, attrs: []string{"epsilon", "momentum", "training_mode"}},
	"InstanceNormalization":     {conv: convNorm, attrs: []string{"epsilon"}},
	"NegativeLogLikelihoodLoss": {conv: convLoss, attrs: []string{"reduction", "ignore_index"}},
	"SoftmaxCrossEntropyLoss":   {conv: convLoss, attrs: []string{"reduction", "ignore_index"}, outs: 2},
	"Dropout":                   {conv: convDropout, attrs: []string{"seed"}, outs: -1, keepsBool: true},
}

// convMatMul is a Linear of a weight (importer.linear), else NumPy's matmul
// (importer.matmul).
func convMatMul(c *ctx) error {
	if y, ok, err := c.im.linear(c.n, c.in(0), c.in(1), false); ok || err != nil {
		if err != nil {
			return err
		}
		return c.set(y)
	}
	u, v, err := c.pair()
	if err != nil {
		return err
	}
	return c.set(c.im.matmul(u, v))
}

// convGemm is alpha·A·B + beta·C with either operand transposed; A·B is a
// Linear of a weight where it can be.
func convGemm(c *ctx) error {
	b := c.b
	transA, transB := c.attrInt("transA", 0) != 0, c.attrInt("transB", 0) != 0
	var y string
	var err error
	if !transA {
		if y, _, err = c.im.linear(c.n, c.in(0), c.in(1), transB); err != nil {
			return err
		}
	}
	if y == "" {
		u, v, err := c.pair()
		if err != nil {
			return err
		}
		y = b.MatMul(u, v, transA, transB)
	}
	if alpha := c.attrFloat("alpha", 1); alpha != 1 {
		y = b.Mul(y, b.Scalar(alpha, y))
	}
	if c.in(2) != "" {
		k, err := c.x(2)
		if err != nil {
			return err
		}
		if beta := c.attrFloat("beta", 1); beta != 1 {
			k = b.Mul(k, b.Scalar(beta, k))
		}
		y = b.Add(y, k)
	}
	return c.set(y)
}

// convEinsum is importer.einsum of float operands.
func convEinsum(c *ctx) error {
	var ops []string
	for k := range c.n.inputs {
		v, err := c.x(k)
		if err != nil {
			return err
		}
		if err := c.needFloat(v); err != nil {
			return err
		}
		ops = append(ops, v)
	}
	y, err := c.im.einsum(c.attrString("equation", ""), ops)
	if err != nil {
		return err
	}
	return c.set(y)
}

// convLayerNorm normalizes over the axes from axis on, then scales and
// shifts; the optional outputs are the mean and the inverse deviation.
func convLayerNorm(c *ctx) error {
	b, n := c.b, c.n
	if len(n.outputs) > 3 {
		return c.unsupported(fmt.Sprintf("number of outputs (%d)", len(n.outputs)), "")
	}
	v, err := c.x(0)
	if err != nil {
		return err
	}
	dt := b.Type(v).DType
	if !dt.IsFloat() {
		return c.dtype(dt)
	}
	if st := c.attrInt("stash_type", 1); st != 1 || dt != ir.F32 {
		return c.unsupported("attribute", fmt.Sprintf("stash_type=%d with %v input", st, dt))
	}
	r := b.Type(v).Rank()
	ax, err := c.axis(c.attrInt("axis", -1), r)
	if err != nil {
		return err
	}
	var axes []int
	for k := ax; k < r; k++ {
		axes = append(axes, k)
	}
	mean := b.Reduce("ReduceMean", v, true, axes...)
	d := b.Sub(v, mean)
	inv := b.Unary("Rsqrt", b.Add(b.Reduce("ReduceMean", b.Mul(d, d), true, axes...), b.Scalar(c.attrFloat("epsilon", 1e-5), v)))
	y := b.Mul(d, inv)
	sc, err := c.x(1)
	if err != nil {
		return err
	}
	y = b.Mul(y, sc)
	if c.in(2) != "" {
		bias, err := c.x(2)
		if err != nil {
			return err
		}
		y = b.Add(y, bias)
	}
	if err := b.Err(); err != nil {
		return c.errorf("%w", err)
	}
	for k, o := range n.outputs {
		if o != "" && k > 0 {
			c.im.vals[o] = []string{"", mean, inv}[k]
		}
	}
	return c.set(y)
}

// convNorm converts BatchNormalization and InstanceNormalization for
// inference: y = (x − mean)·scale/√(var + ε) + bias per channel (axis 1);
// InstanceNormalization takes mean and var of each (n, c) over the spatial
// axes.
func convNorm(c *ctx) error {
	b, op := c.b, c.n.opType
	if c.attrInt("training_mode", 0) != 0 {
		return c.unsupported("attribute", "training_mode=1")
	}
	v, err := c.x(0)
	if err != nil {
		return err
	}
	xt := b.Type(v)
	if xt.Rank() < 2 || !xt.DType.IsFloat() {
		return c.errorf("input %v", xt)
	}
	cs := make([]int, xt.Rank()) // a per-channel operand's shape
	for k := range cs {
		cs[k] = 1
	}
	cs[1] = xt.Shape[1]
	ch := func(k int) (string, error) {
		w, err := c.x(k)
		if err != nil {
			return "", err
		}
		if t := b.Type(w); t.Rank() != 1 || t.Shape[0] != xt.Shape[1] {
			return "", c.errorf("input %d is %v for %v", k, t, xt)
		}
		return b.Reshape(w, cs...), nil
	}
	var mean, vari string
	if op == "BatchNormalization" {
		if mean, err = ch(3); err != nil {
			return err
		}
		if vari, err = ch(4); err != nil {
			return err
		}
	} else {
		var axes []int
		for k := 2; k < xt.Rank(); k++ {
			axes = append(axes, k)
		}
		if len(axes) == 0 {
			return c.errorf("input %v has no spatial axes", xt)
		}
		mean = b.Reduce("ReduceMean", v, true, axes...)
		d := b.Sub(v, mean)
		vari = b.Reduce("ReduceMean", b.Mul(d, d), true, axes...)
	}
	sc, err := ch(1)
	if err != nil {
		return err
	}
	bias, err := ch(2)
	if err != nil {
		return err
	}
	inv := b.Unary("Rsqrt", b.Add(vari, b.Scalar(c.attrFloat("epsilon", 1e-5), v)))
	return c.set(b.Add(b.Mul(b.Mul(b.Sub(v, mean), inv), sc), bias))
}

// convLoss converts NegativeLogLikelihoodLoss (importer.nllLoss) and
// SoftmaxCrossEntropyLoss (the same of the log softmax, which is its
// optional second output).
func convLoss(c *ctx) error {
	b, op, n := c.b, c.n.opType, c.n
	red := c.attrString("reduction", "mean")
	if red != "mean" && red != "sum" && red != "none" {
		return c.badAttr("reduction", red)
	}
	v, t, err := c.pair()
	if err != nil {
		return err
	}
	tv, tt := b.Type(v), b.Type(t)
	if !tv.DType.IsFloat() {
		return c.dtype(tv.DType)
	}
	if !tt.DType.IsInt() {
		return c.dtype(tt.DType)
	}
	if tv.Rank() < 2 || tt.Rank() != tv.Rank()-1 || tt.Shape[0] != tv.Shape[0] || !ir.ShapeEqual(tt.Shape[1:], tv.Shape[2:]) {
		return c.errorf("input %v and target %v do not match", tv, tt)
	}
	w := ""
	if c.in(2) != "" {
		if w, err = c.x(2); err != nil {
			return err
		}
		if wt := b.Type(w); wt.Rank() != 1 || wt.Shape[0] != tv.Shape[1] || wt.DType != tv.DType {
			return c.errorf("weight %v does not match input %v", wt, tv)
		}
	}
	var ii *int64
	if p, ok := c.a["ignore_index"]; ok {
		ii = &p.i
	}
	if op == "SoftmaxCrossEntropyLoss" {
		v = c.im.logSoftmax(v, 1)
		if len(n.outputs) > 1 && n.outputs[1] != "" {
			if err := b.Err(); err != nil {
				return c.errorf("%w", err)
			}
			c.im.vals[n.outputs[1]] = v
		}
	}
	return c.set(c.im.nllLoss(v, t, w, ii, red))
}

// convDropout is the identity (inference). A training_mode operand must be
// a constant false; the mask output (bool) is refused.
func convDropout(c *ctx) error {
	n := c.n
	if len(n.outputs) > 1 && n.outputs[1] != "" {
		return c.unsupported("dtype", "bool (Dropout mask)")
	}
	if c.in(2) != "" {
		t, err := c.constant(2)
		if err != nil {
			return err
		}
		if t.len() != 1 || t.at(0) != 0 {
			return c.unsupported("attribute", "training_mode")
		}
	}
	if t, ok := c.im.consts[c.in(0)]; ok {
		return c.setConst(t)
	}
	v, err := c.x(0)
	if err != nil {
		return err
	}
	return c.set(v)
}

// matmul is ONNX MatMul: NumPy matmul, where a 1-D operand is a row (left) or
// a column (right) vector whose axis is dropped from the result.
func (im *importer) matmul(u, v string) string {
	b := im.b
	tu, tv := b.Type(u), b.Type(v)
	if tu.Rank() == 0 || tv.Rank() == 0 {
		b.Fail(fmt.Errorf("MatMul of a scalar (%v, %v)", tu, tv))
		return ""
	}
	if tu.Rank() == 1 {
		u = b.Reshape(u, 1, tu.Shape[0])
	}
	if tv.Rank() == 1 {
		v = b.Reshape(v, tv.Shape[0], 1)
	}
	y := b.MatMul(u, v, false, false)
	if b.Err() != nil || (tu.Rank() > 1 && tv.Rank() > 1) {
		return y
	}
	ys := b.Type(y).Shape
	s := slices.Clone(ys[:len(ys)-2])
	if tu.Rank() > 1 {
		s = append(s, ys[len(ys)-2])
	}
	if tv.Rank() > 1 {
		s = append(s, ys[len(ys)-1])
	}
	return b.Reshape(y, s...)
}

// linear turns a matrix product x·w (wᵀ when transB) whose w is a 2-D weight
// (an initializer, or a Transpose of one) used by this node alone into slc's
// Linear y = x·Wᵀ with W [out, in], the form sltrain-fuse rewrites. W is the
// initializer itself when the product already reads it transposed (Gemm's
// transB, MatMul of a Transpose): it keeps its name. Otherwise W holds the
// initializer's values transposed and is named after the node's module,
// "<module>.weight": torch.onnx.export folds each nn.Linear's transpose into
// a new initializer ("onnx::MatMul_305") while the node keeps the module's
// scope ("/model/layers.0/self_attn/q_proj/MatMul" → module
// "model.layers.0.self_attn.q_proj"), so the weight gets its PyTorch name
// back. The Linear node is named after the module. ok is false when the
// product is not such a Linear (it is then a MatMul).
func (im *importer) linear(n *nodeProto, xn, wn string, transB bool) (string, bool, error) {
	b := im.b
	src, direct := wn, transB
	if w, ok := im.transposed[wn]; ok && !transB && im.uses[wn] == 1 {
		src, direct = w, true
	}
	t, ok := im.consts[src]
	if !ok || !im.params[src] || len(t.Shape) != 2 || im.uses[src] != 1 || xn == "" {
		return "", false, nil
	}
	if _, isConst := im.consts[xn]; isConst && !im.params[xn] {
		return "", false, nil
	}
	x, err := im.value(xn)
	if err != nil {
		return "", false, err
	}
	if b.Type(x).Rank() < 2 || !b.Type(x).DType.IsFloat() || b.Type(x).DType != t.DType {
		return "", false, nil
	}
	module := scopePath(n.name)
	var w string
	if direct {
		if module == "" {
			module = strings.TrimSuffix(src, ".weight")
		}
		if w, err = im.value(src); err != nil {
			return "", false, err
		}
	} else {
		if module == "" {
			module = n.name
		}
		if module == "" {
			module = src
		}
		name := module + ".weight"
		if Frozen(name, im.freeze) { // frozen under its module's name: a fixed MatMul operand
			delete(im.params, src)
			return "", false, nil
		}
		if _, taken := im.consts[name]; taken || b.Type(name).DType != ir.InvalidDType {
			name = src // a clash: the initializer's own name, its values transposed
		}
		rows, cols := t.Shape[0], t.Shape[1] // [in, out]
		data := make([]float64, rows*cols)
		for i := range rows {
			for j := range cols {
				data[j*rows+i] = t.F[i*cols+j]
			}
		}
		w = b.AddInput(name, ir.T(t.DType, cols, rows), ir.Param, &ir.Init{Kind: ir.InitExplicit, Data: data})
	}
	scope := b.Scope
	b.Scope = module
	y := b.Op("Linear", nil, x, w)
	b.Scope = scope
	return y, true, b.Err()
}

// scopePath is the module path of an exported node's name: the scope without
// the op's own last component, with dots for slashes
// ("/model/layers.0/mlp/up_proj/MatMul" → "model.layers.0.mlp.up_proj"); ""
// for a name without a scope.
func scopePath(name string) string {
	k := strings.LastIndexByte(name, '/')
	if k < 0 {
		return ""
	}
	return strings.ReplaceAll(strings.Trim(name[:k], "/"), "/", ".")
}
