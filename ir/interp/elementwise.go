package interp

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// unaryFloat gives the float64 formula of each element-wise unary op (the Doc
// strings in ir/opdefs.go).
var unaryFloat = map[string]func(float64) float64{
	"Identity":         func(x float64) float64 { return x },
	"Neg":              func(x float64) float64 { return -x },
	"Exp":              math.Exp,
	"Log":              math.Log,
	"Sqrt":             math.Sqrt,
	"Rsqrt":            func(x float64) float64 { return 1 / math.Sqrt(x) },
	"Recip":            func(x float64) float64 { return 1 / x },
	"Sigmoid":          sigmoid,
	"Silu":             func(x float64) float64 { return x * sigmoid(x) },
	"Quant8Signed":     func(x float64) float64 { return float64(ir.QuantizeDynamic(x, true)) },
	"Quant8Unsigned":   func(x float64) float64 { return float64(ir.QuantizeDynamic(x, false)) },
	"Dequant8Signed":   func(x float64) float64 { return ir.DequantizeDynamic(x, true) },
	"Dequant8Unsigned": func(x float64) float64 { return ir.DequantizeDynamic(x, false) },
}

// absMaxLastKernel is AbsMaxLast: max |x| over the last axis, NaNs
// skipped, from 0.
func absMaxLastKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x, y := in[0], NewTensor(t)
	c := x.Type.Shape[x.Type.Rank()-1]
	for r := range y.F {
		m := 0.0
		for _, v := range x.F[r*c : (r+1)*c] {
			if a := math.Abs(v); a > m {
				m = a
			}
		}
		y.F[r] = m
	}
	return y, nil
}

// unaryInt gives the exact integer form of the unary ops that have one. The
// others, applied to an integer tensor, are computed in float64 and truncated
// toward zero like Cast (a non-finite result is an error).
var unaryInt = map[string]func(int64) int64{
	"Identity": func(x int64) int64 { return x },
	"Neg":      func(x int64) int64 { return -x },
}

// sigmoid is 1/(1+e^-x), written so that neither branch overflows.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

func unaryKernel(op string) kernel {
	f, fi := unaryFloat[op], unaryInt[op]
	return func(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
		x, y := in[0], NewTensor(t)
		if t.DType.IsFloat() {
			for i, v := range x.F {
				y.F[i] = f(v)
			}
			return y, nil
		}
		for i, v := range x.I {
			if fi != nil {
				y.I[i] = fi(v)
				continue
			}
			r, err := toInt(f(float64(v)), t.DType)
			if err != nil {
				return nil, fmt.Errorf("element %d: %s(%d): %v", i, op, v, err)
			}
			y.I[i] = r
		}
		return y, nil
	}
}

// binaryFloat gives the float64 formula of each element-wise binary op.
var binaryFloat = map[string]func(a, b float64) float64{
	"Add": func(a, b float64) float64 { return a + b },
	"Sub": func(a, b float64) float64 { return a - b },
	"Mul": func(a, b float64) float64 { return a * b },
	"Div": func(a, b float64) float64 { return a / b },
	"Pow": math.Pow,
	"Max": math.Max,
	"Min": math.Min,
	"Greater": func(a, b float64) float64 {
		if a > b {
			return 1
		}
		return 0
	},
}

// binaryInt gives the integer form of each binary op: wrapping two's-complement
// arithmetic, division truncated toward zero (division by zero is an error), and
// Pow exact for exponents >= 0 (negative exponents: x^-n truncated, so only
// ±1 survive and 0^-n is an error).
var binaryInt = map[string]func(a, b int64) (int64, error){
	"Add": func(a, b int64) (int64, error) { return a + b, nil },
	"Sub": func(a, b int64) (int64, error) { return a - b, nil },
	"Mul": func(a, b int64) (int64, error) { return a * b, nil },
	"Div": func(a, b int64) (int64, error) {
		if b == 0 {
			return 0, fmt.Errorf("integer division by zero")
		}
		return a / b, nil
	},
	"Pow": intPow,
	"Max": func(a, b int64) (int64, error) { return max(a, b), nil },
	"Min": func(a, b int64) (int64, error) { return min(a, b), nil },
	"Greater": func(a, b int64) (int64, error) {
		if a > b {
			return 1, nil
		}
		return 0, nil
	},
}

func intPow(x, n int64) (int64, error) {
	if n < 0 {
		switch {
		case x == 0:
			return 0, fmt.Errorf("0 to the negative power %d", n)
		case x == 1:
			return 1, nil
		case x == -1:
			if n%2 == 0 {
				return 1, nil
			}
			return -1, nil
		}
		return 0, nil
	}
	r := int64(1)
	for n > 0 {
		if n&1 == 1 {
			r *= x
		}
		x *= x
		n >>= 1
	}
	return r, nil
}

func binaryKernel(op string) kernel {
	f, fi := binaryFloat[op], binaryInt[op]
	return func(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
		a, b, y := in[0], in[1], NewTensor(t)
		ia := offsets(t.Shape, broadcastStrides(a.Type.Shape, t.Shape), 0)
		ib := offsets(t.Shape, broadcastStrides(b.Type.Shape, t.Shape), 0)
		if t.DType.IsFloat() {
			for i := range y.F {
				y.F[i] = f(a.F[ia[i]], b.F[ib[i]])
			}
			return y, nil
		}
		for i := range y.I {
			r, err := fi(a.I[ia[i]], b.I[ib[i]])
			if err != nil {
				return nil, fmt.Errorf("element %d: %v", i, err)
			}
			y.I[i] = r
		}
		return y, nil
	}
}

// constKernel fills the output with the "value" attribute; for an integer
// dtype the value must be finite and is truncated toward zero.
func constKernel(n *ir.Node, _ []*Tensor, t ir.Type) (*Tensor, error) {
	v := n.Attrs.GetFloat("value", 0)
	y := NewTensor(t)
	if t.DType.IsFloat() {
		for i := range y.F {
			y.F[i] = v
		}
		return y, nil
	}
	iv, err := toInt(v, t.DType)
	if err != nil {
		return nil, err
	}
	for i := range y.I {
		y.I[i] = iv
	}
	return y, nil
}

// castKernel converts between dtypes: float→float rounds (after the node),
// int→float converts then rounds, float→int truncates toward zero (NaN, ±Inf
// and out-of-range values are errors), int→int wraps to I32 when needed.
func castKernel(_ *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error) {
	x, y := in[0], NewTensor(t)
	switch {
	case x.Type.DType.IsFloat() && t.DType.IsFloat():
		copy(y.F, x.F)
	case x.Type.DType.IsInt() && t.DType.IsFloat():
		for i, v := range x.I {
			y.F[i] = float64(v)
		}
	case x.Type.DType.IsFloat() && t.DType.IsInt():
		for i, v := range x.F {
			r, err := toInt(v, t.DType)
			if err != nil {
				return nil, fmt.Errorf("element %d: %v", i, err)
			}
			y.I[i] = r
		}
	default:
		copy(y.I, x.I) // wrapped to int32 after the node for I32
	}
	return y, nil
}
