package interp

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// Tensor holds a value: float dtypes in F (float64), integer dtypes in I (int64).
// Elements are in row-major order. A float tensor's values are representable in
// its dtype (the interpreter rounds after every node); an I32 tensor's values fit
// in int32.
type Tensor struct {
	Type ir.Type
	F    []float64
	I    []int64
}

// NewTensor returns a zero-filled tensor of type t.
func NewTensor(t ir.Type) *Tensor {
	n := t.NumElements()
	r := &Tensor{Type: cloneType(t)}
	switch {
	case t.DType.IsFloat():
		r.F = make([]float64, n)
	case t.DType.IsInt():
		r.I = make([]int64, n)
	}
	return r
}

// FromFloats returns a float tensor holding a copy of v rounded to t's dtype
// (so an F32 tensor holds exactly what an f32 buffer would). For an integer dtype
// the values are stored in F unconverted, and Run rejects the tensor: integer
// tensors are built with FromInts so that no silent float→int rounding happens.
func FromFloats(t ir.Type, v []float64) *Tensor {
	f := append([]float64(nil), v...)
	if t.DType.IsFloat() {
		roundSlice(t.DType, f)
	}
	return &Tensor{Type: cloneType(t), F: f}
}

// FromInts returns an integer tensor holding a copy of v (wrapped to int32 for
// I32). For a float dtype the values are converted to floats and rounded to the
// dtype, which is convenient for small hand-written test values.
func FromInts(t ir.Type, v []int64) *Tensor {
	if t.DType.IsFloat() {
		f := make([]float64, len(v))
		for i, x := range v {
			f[i] = float64(x)
		}
		roundSlice(t.DType, f)
		return &Tensor{Type: cloneType(t), F: f}
	}
	r := &Tensor{Type: cloneType(t), I: append([]int64(nil), v...)}
	if t.DType == ir.I32 {
		wrapI32(r.I)
	}
	if t.DType == ir.U8 {
		wrapU8(r.I)
	}
	return r
}

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{Type: cloneType(t.Type)}
	if t.F != nil {
		c.F = append([]float64(nil), t.F...)
	}
	if t.I != nil {
		c.I = append([]int64(nil), t.I...)
	}
	return c
}

// String prints the type and, for small tensors, the values (for test failures).
func (t *Tensor) String() string {
	const show = 16
	if t.Type.DType.IsInt() {
		if len(t.I) > show {
			return fmt.Sprintf("%v%v…", t.Type, t.I[:show])
		}
		return fmt.Sprintf("%v%v", t.Type, t.I)
	}
	if len(t.F) > show {
		return fmt.Sprintf("%v%v…", t.Type, t.F[:show])
	}
	return fmt.Sprintf("%v%v", t.Type, t.F)
}

// check reports whether the tensor holds as many elements as its type says, in
// the field its dtype uses.
func (t *Tensor) check() error {
	n := t.Type.NumElements()
	switch {
	case t.Type.DType.IsFloat():
		if int64(len(t.F)) != n {
			return fmt.Errorf("%v holds %d float values, want %d", t.Type, len(t.F), n)
		}
	case t.Type.DType.IsInt():
		if int64(len(t.I)) != n {
			if t.I == nil && t.F != nil {
				return fmt.Errorf("%v holds its values in F; integer tensors keep them in I (use FromInts)", t.Type)
			}
			return fmt.Errorf("%v holds %d integer values, want %d", t.Type, len(t.I), n)
		}
	default:
		return fmt.Errorf("invalid dtype %v", t.Type.DType)
	}
	return nil
}

func cloneType(t ir.Type) ir.Type {
	if len(t.Shape) == 0 {
		return ir.Type{DType: t.DType}
	}
	return ir.Type{DType: t.DType, Shape: append([]int(nil), t.Shape...)}
}

// RoundTo rounds a float64 to the nearest value of a float dtype (round to
// nearest even): F32 and F16 directly from the float64, BF16 from the value's
// f32 rounding (as a bf16 conversion of an f32 buffer does). F64 and integer
// dtypes return x unchanged.
func RoundTo(d ir.DType, x float64) float64 {
	switch d {
	case ir.F32:
		return float64(float32(x))
	case ir.BF16:
		return roundBF16(x)
	case ir.F16:
		return roundF16(x)
	}
	return x
}

func roundSlice(d ir.DType, f []float64) {
	switch d {
	case ir.F32, ir.BF16, ir.F16:
		for i, x := range f {
			f[i] = RoundTo(d, x)
		}
	}
}

// wrapU8 wraps integers to uint8.
func wrapU8(v []int64) {
	for i, x := range v {
		v[i] = int64(uint8(x))
	}
}

func wrapI32(v []int64) {
	for i, x := range v {
		v[i] = int64(int32(x))
	}
}

// roundBF16 rounds x to f32, then the f32 bits to their upper 16 bits with ties
// to even. Overflow goes to ±Inf through the carry into the exponent; NaN stays NaN.
func roundBF16(x float64) float64 {
	f := float32(x)
	if f != f {
		return x
	}
	b := math.Float32bits(f)
	b += 0x7fff + ((b >> 16) & 1)
	return float64(math.Float32frombits(b &^ 0xffff))
}

// roundF16 rounds x to IEEE half precision (10 mantissa bits, exponents -14..15,
// subnormals down to 2^-24) with ties to even, directly from the float64.
func roundF16(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	a := math.Abs(x)
	if a >= 65520 { // halfway between 65504 (the largest half) and 2^16
		return math.Copysign(math.Inf(1), x)
	}
	_, e := math.Frexp(a) // a = f·2^e with f in [0.5, 1): the leading bit is 2^(e-1)
	exp := e - 1
	if exp < -14 {
		exp = -14 // subnormal: fixed quantum 2^-24
	}
	q := math.Ldexp(1, exp-10)
	return math.Copysign(math.RoundToEven(a/q)*q, x)
}

// toInt converts a float to an integer of dtype d by truncation toward zero
// (I32 wraps to int32); NaN, ±Inf and values outside int64 are errors.
func toInt(x float64, d ir.DType) (int64, error) {
	t := math.Trunc(x)
	if math.IsNaN(t) || t < -(1<<63) || t >= 1<<63 {
		return 0, fmt.Errorf("cannot convert %v to %v", x, d)
	}
	v := int64(t)
	if d == ir.I32 {
		v = int64(int32(v))
	}
	if d == ir.U8 { // saturates, as the kernels' fptoui.sat
		v = max(0, min(255, v))
	}
	return v, nil
}
