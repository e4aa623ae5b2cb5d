package onnx

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// The importer is a table (opTable) from an ONNX op type to one small
// function per op, in files by family: ops_math.go (arithmetic and
// activations), ops_logic.go (comparisons, bools, Where, casts),
// ops_shape.go (movement), ops_index.go (gathers and scatters),
// ops_const.go (ops computed at import), ops_reduce.go (reductions and
// softmaxes) and ops_nn.go (matrix products, normalizations, losses). The
// opening every op shares — the node's domain and number of outputs, the
// all-constant fold, a float first operand where the op needs one, the
// attributes it takes — is done once by convert, and a converter gets a ctx
// with the node's operands and attributes and one-line errors that name the
// node and the op.

// opDef describes how one ONNX op is imported.
type opDef struct {
	conv  func(c *ctx) error
	attrs []string // the attributes it takes; any other is refused
	// outs is the most outputs the op may have (0: exactly one; -1: any
	// number of at least one); the converter checks its own outputs.
	outs int
	// floatIn: the op's slc form needs a floating-point first operand.
	floatIn bool
	// keepsBool: the result is a bool when the first operand is one.
	keepsBool bool
}

// opTable maps each ONNX op type the importer translates to its converter.
var opTable = mergeOps(mathOps, logicOps, shapeOps, indexOps, constOps, reduceOps, nnOps)

// mergeOps joins the families' tables; an op in two of them is a bug.
func mergeOps(families ...map[string]opDef) map[string]opDef {
	all := map[string]opDef{}
	for _, f := range families {
		for op, d := range f {
			if _, dup := all[op]; dup {
				panic("onnx: op " + op + " is in two converter tables")
			}
			all[op] = d
		}
	}
	return all
}

// outputsOK reports whether k outputs suit the op.
func (d opDef) outputsOK(k int) bool {
	switch {
	case d.outs < 0:
		return k >= 1
	case d.outs == 0:
		return k == 1
	}
	return k >= 1 && k <= d.outs
}

// convert translates one node.
func (im *importer) convert(n *nodeProto) error {
	if n.domain != "" && n.domain != "ai.onnx" {
		return im.unsupported("op", n.domain+"."+n.opType)
	}
	def := opTable[n.opType]
	if !def.outputsOK(len(n.outputs)) {
		return im.unsupported(fmt.Sprintf("number of outputs (%d)", len(n.outputs)), "")
	}
	if im.foldable(n) {
		return im.fold(n)
	}
	if def.conv == nil {
		return im.unsupported("op", n.opType)
	}
	c := &ctx{im: im, b: im.b, n: n, out: n.outputs[0], keepsBool: def.keepsBool}
	c.b.Scope = n.name
	if def.floatIn && len(n.inputs) > 0 {
		if t, ok := im.consts[c.in(0)]; ok && !t.DType.IsFloat() {
			return c.dtype(t.DType)
		}
		if v, ok := im.vals[c.in(0)]; ok && !c.b.Type(v).DType.IsFloat() {
			return c.dtype(c.b.Type(v).DType)
		}
	}
	a, err := im.attrs(n, def.attrs...)
	if err != nil {
		return err
	}
	c.a = a
	return def.conv(c)
}

// ctx is the node being converted: its operands, attributes and output.
type ctx struct {
	im        *importer
	b         *ir.Builder
	n         *nodeProto
	out       string                // the first output's ONNX name
	a         map[string]*attrProto // the node's attributes, checked against opDef.attrs
	keepsBool bool                  // opDef.keepsBool
}

// in is the ONNX name of operand k ("" when absent).
func (c *ctx) in(k int) string {
	if k < len(c.n.inputs) {
		return c.n.inputs[k]
	}
	return ""
}

// x reads operand k as an slc value.
func (c *ctx) x(k int) (string, error) {
	if c.in(k) == "" {
		return "", c.errorf("input %d is missing", k)
	}
	return c.im.value(c.in(k))
}

// xInts reads operand 0 as an slc value and operand 1 as constant
// integers (a shape, repeats, starts, an axis), in that order.
func (c *ctx) xInts() (string, []int64, error) {
	v, err := c.x(0)
	if err != nil {
		return "", nil, err
	}
	ints, err := c.ints(1)
	return v, ints, err
}

// pair reads the first two operands.
func (c *ctx) pair() (string, string, error) {
	u, err := c.x(0)
	if err != nil {
		return "", "", err
	}
	v, err := c.x(1)
	return u, v, err
}

// set makes v the node's output.
func (c *ctx) set(v string) error {
	if err := c.b.Err(); err != nil {
		return c.errorf("%w", err)
	}
	c.im.vals[c.out] = v
	if c.keepsBool && c.im.bools[c.in(0)] {
		c.im.bools[c.out] = true
	}
	return nil
}

// setBool makes v, a 0/1 i64 value, the node's bool output.
func (c *ctx) setBool(v string) error {
	if err := c.set(v); err != nil {
		return err
	}
	c.im.bools[c.out] = true
	return nil
}

// setConst makes t the node's output, an import-time constant.
func (c *ctx) setConst(t *Tensor) error {
	c.im.consts[c.out] = t
	return nil
}

// errorf is an error about the node: `node "NAME" (OP): …`.
func (c *ctx) errorf(format string, args ...any) error {
	return fmt.Errorf("node %q (%s): "+format, append([]any{c.n.name, c.n.opType}, args...)...)
}

// unsupported refuses something of the node (importer.unsupported).
func (c *ctx) unsupported(what, detail string) error { return c.im.unsupported(what, detail) }

// dtype refuses an operand's dtype.
func (c *ctx) dtype(dt ir.DType) error { return c.unsupported("dtype", dt.String()) }

// badAttr refuses an attribute's value: "NAME=VALUE".
func (c *ctx) badAttr(name string, value any) error {
	return c.unsupported("attribute", fmt.Sprintf("%s=%v", name, value))
}

// needFloat refuses a value that is not of a float dtype.
func (c *ctx) needFloat(v string) error {
	if dt := c.b.Type(v).DType; !dt.IsFloat() {
		return c.dtype(dt)
	}
	return nil
}

// has reports whether the node sets attribute name.
func (c *ctx) has(name string) bool { return c.a[name] != nil }

// attrInt is an integer attribute, def when the node does not set it.
func (c *ctx) attrInt(name string, def int64) int64 {
	if a, ok := c.a[name]; ok {
		return a.i
	}
	return def
}

// attrFloat is a float attribute, def when the node does not set it.
func (c *ctx) attrFloat(name string, def float64) float64 {
	if a, ok := c.a[name]; ok {
		return float64(a.f)
	}
	return def
}

// attrString is a string attribute, def when the node does not set it.
func (c *ctx) attrString(name, def string) string {
	if a, ok := c.a[name]; ok {
		return string(a.s)
	}
	return def
}

// axis normalizes an axis for a rank-r value (ir.NormAxis).
func (c *ctx) axis(ax int64, r int) (int, error) {
	q, err := ir.NormAxis(ax, r)
	if err != nil {
		return 0, c.errorf("%w", err)
	}
	return q, nil
}

// ints reads operand k as constant integers (a shape, axes).
func (c *ctx) ints(k int) ([]int64, error) { return c.im.ints(c.in(k)) }

// constant reads operand k's import-time value.
func (c *ctx) constant(k int) (*Tensor, error) { return c.im.constant(c.in(k)) }

// typeOf is operand k's type, from its import-time value when it has one
// (so that an op that reads only the type does not materialise it).
func (c *ctx) typeOf(k int) (ir.Type, error) {
	if t, ok := c.im.consts[c.in(k)]; ok {
		return t.Type(), nil
	}
	v, err := c.x(k)
	if err != nil {
		return ir.Type{}, err
	}
	return c.b.Type(v), nil
}
