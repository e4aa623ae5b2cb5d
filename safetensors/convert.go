package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// Element conversions. The rounding rules are those of the runtime and the
// reference interpreter (and of PyTorch): BF16 is the upper half of an F32
// rounded to nearest even (from an F64 through its F32 rounding, as
// torch.Tensor.to(torch.bfloat16) does), F16 is IEEE half rounded to nearest
// even; NaN stays NaN.

var le = binary.LittleEndian

// Float32s returns the elements of a float tensor as float32: F32 as stored,
// BF16 and F16 widened exactly, F64 rounded to nearest.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.checkRead(true); err != nil {
		return nil, err
	}
	out := make([]float32, len(t.Data)/t.DType.Size())
	switch t.DType {
	case ir.F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(t.Data[4*i:]))
		}
	case ir.BF16:
		for i := range out {
			out[i] = ir.BF16ToFloat32(le.Uint16(t.Data[2*i:]))
		}
	default:
		for i := range out {
			out[i] = float32(t.float(i))
		}
	}
	return out, nil
}

// Float64s returns the elements of a float tensor as float64 (exact for every
// float dtype).
func (t *Tensor) Float64s() ([]float64, error) {
	if err := t.checkRead(true); err != nil {
		return nil, err
	}
	out := make([]float64, len(t.Data)/t.DType.Size())
	for i := range out {
		out[i] = t.float(i)
	}
	return out, nil
}

// Int64s returns the elements of an integer tensor (I64 or I32).
func (t *Tensor) Int64s() ([]int64, error) {
	if err := t.checkRead(false); err != nil {
		return nil, err
	}
	out := make([]int64, len(t.Data)/t.DType.Size())
	for i := range out {
		if t.DType == ir.I64 {
			out[i] = int64(le.Uint64(t.Data[8*i:]))
		} else {
			out[i] = int64(int32(le.Uint32(t.Data[4*i:])))
		}
	}
	return out, nil
}

// checkRead reports a tensor of the wrong kind or whose Data does not match
// its shape (one built by hand; Parse's are always consistent).
func (t *Tensor) checkRead(float bool) error {
	if float && !t.DType.IsFloat() {
		return fmt.Errorf("tensor %q is %v, not a float type", t.Name, t.DType)
	}
	if !float && !t.DType.IsInt() {
		return fmt.Errorf("tensor %q is %v, not an integer type", t.Name, t.DType)
	}
	if want := t.NumElements() * int64(t.DType.Size()); int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: %v%v needs %d bytes, has %d", t.Name, t.DType, shapeString(t.Shape), want, len(t.Data))
	}
	return nil
}

// float reads element i of a float tensor.
func (t *Tensor) float(i int) float64 {
	switch t.DType {
	case ir.F32:
		return float64(math.Float32frombits(le.Uint32(t.Data[4*i:])))
	case ir.F64:
		return math.Float64frombits(le.Uint64(t.Data[8*i:]))
	case ir.BF16:
		return float64(ir.BF16ToFloat32(le.Uint16(t.Data[2*i:])))
	case ir.F16:
		return ir.F16ToFloat64(le.Uint16(t.Data[2*i:]))
	}
	return math.NaN()
}

// FromFloat32s builds a tensor of float dtype dt (F32, BF16, F16 or F64) from
// values in row-major order, rounding to nearest even. When dt is not a float
// type or len(v) is not the shape's element count, the result has nil Data, so
// that Write and Encode reject it (naming the tensor).
func FromFloat32s(name string, dt ir.DType, shape []int, v []float32) Tensor {
	t := Tensor{Name: name, DType: dt, Shape: cloneShape(shape)}
	if !dt.IsFloat() || int64(len(v)) != t.NumElements() {
		return t
	}
	t.Data = make([]byte, len(v)*dt.Size())
	for i, x := range v {
		switch dt {
		case ir.F32:
			le.PutUint32(t.Data[4*i:], math.Float32bits(x))
		case ir.BF16:
			le.PutUint16(t.Data[2*i:], ir.BF16FromFloat32(x))
		case ir.F16:
			le.PutUint16(t.Data[2*i:], ir.F16FromFloat64(float64(x)))
		case ir.F64:
			le.PutUint64(t.Data[8*i:], math.Float64bits(float64(x)))
		}
	}
	return t
}

// FromFloat64s is FromFloat32s for float64 values: F64 exact, F32 and F16
// rounded to nearest even directly, BF16 through the value's F32 rounding.
func FromFloat64s(name string, dt ir.DType, shape []int, v []float64) Tensor {
	t := Tensor{Name: name, DType: dt, Shape: cloneShape(shape)}
	if !dt.IsFloat() || int64(len(v)) != t.NumElements() {
		return t
	}
	t.Data = make([]byte, len(v)*dt.Size())
	for i, x := range v {
		switch dt {
		case ir.F32:
			le.PutUint32(t.Data[4*i:], math.Float32bits(float32(x)))
		case ir.BF16:
			le.PutUint16(t.Data[2*i:], ir.BF16FromFloat32(float32(x)))
		case ir.F16:
			le.PutUint16(t.Data[2*i:], ir.F16FromFloat64(x))
		case ir.F64:
			le.PutUint64(t.Data[8*i:], math.Float64bits(x))
		}
	}
	return t
}

// FromInt64s builds an integer tensor (I64, or I32 when every value fits).
// Like FromFloat32s, a wrong dtype, count or an out-of-range value gives nil
// Data.
func FromInt64s(name string, dt ir.DType, shape []int, v []int64) Tensor {
	t := Tensor{Name: name, DType: dt, Shape: cloneShape(shape)}
	if !dt.IsInt() || int64(len(v)) != t.NumElements() {
		return t
	}
	data := make([]byte, len(v)*dt.Size())
	for i, x := range v {
		if dt == ir.I64 {
			le.PutUint64(data[8*i:], uint64(x))
			continue
		}
		if x != int64(int32(x)) {
			return t
		}
		le.PutUint32(data[4*i:], uint32(int32(x)))
	}
	t.Data = data
	return t
}

// Convert returns the tensor in float dtype dt: its own bytes (copied) when it
// already is dt, else every element rounded as FromFloat64s does. Integer
// tensors cannot be converted.
func (t *Tensor) Convert(dt ir.DType) (Tensor, error) {
	if t.DType == dt {
		if err := t.checkRead(dt.IsFloat()); err != nil {
			return Tensor{}, err
		}
		return Tensor{Name: t.Name, DType: dt, Shape: cloneShape(t.Shape), Data: append([]byte(nil), t.Data...)}, nil
	}
	if !dt.IsFloat() {
		return Tensor{}, fmt.Errorf("tensor %q: cannot convert %v to %v", t.Name, t.DType, dt)
	}
	v, err := t.Float64s()
	if err != nil {
		return Tensor{}, err
	}
	return FromFloat64s(t.Name, dt, t.Shape, v), nil
}

// ConvertInt returns the integer tensor in dtype dt, I32 or I64: its own
// bytes (copied) when it already is dt, else every element converted, with an
// error naming the first value that does not fit dt. It widens and narrows
// SLTrain's sparse_index, which slc stores as i32 where the seed's is int64.
func (t *Tensor) ConvertInt(dt ir.DType) (Tensor, error) {
	if (t.DType != ir.I32 && t.DType != ir.I64) || (dt != ir.I32 && dt != ir.I64) {
		return Tensor{}, fmt.Errorf("tensor %q: cannot convert %v to %v (only i32 and i64 convert)", t.Name, t.DType, dt)
	}
	if err := t.checkRead(false); err != nil {
		return Tensor{}, err
	}
	out := Tensor{Name: t.Name, DType: dt, Shape: cloneShape(t.Shape)}
	if t.DType == dt {
		out.Data = append([]byte(nil), t.Data...)
		return out, nil
	}
	n := int(t.NumElements())
	out.Data = make([]byte, n*dt.Size())
	if dt == ir.I64 {
		for i := range n {
			le.PutUint64(out.Data[8*i:], uint64(int64(int32(le.Uint32(t.Data[4*i:])))))
		}
		return out, nil
	}
	for i := range n {
		x := int64(le.Uint64(t.Data[8*i:]))
		if x != int64(int32(x)) {
			return Tensor{}, fmt.Errorf("tensor %q: value %d at position %d does not fit i32", t.Name, x, i)
		}
		le.PutUint32(out.Data[4*i:], uint32(int32(x)))
	}
	return out, nil
}

func cloneShape(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	return append([]int(nil), s...)
}
