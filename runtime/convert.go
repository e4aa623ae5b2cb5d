package runtime

import (
	"encoding/binary"
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// Element conversions between Go values and the bytes of a tensor. Buffers
// hold elements in the host's byte order, which for every architecture the
// runtime accepts (see parseTriple) is little-endian. The rounding rules are those of the
// reference interpreter (ir/interp): bf16 is the upper half of an f32 rounded
// to nearest even, f16 is IEEE half rounded to nearest even from the float64.

var le = binary.LittleEndian

// putFloat writes x into element i of a buffer of dtype d (a float type).
func putFloat(b []byte, d ir.DType, i int, x float64) {
	switch d {
	case ir.F32:
		le.PutUint32(b[4*i:], math.Float32bits(float32(x)))
	case ir.F64:
		le.PutUint64(b[8*i:], math.Float64bits(x))
	case ir.BF16:
		le.PutUint16(b[2*i:], ir.BF16FromFloat32(float32(x)))
	case ir.F16:
		le.PutUint16(b[2*i:], ir.F16FromFloat64(x))
	}
}

// getFloat reads element i of a buffer of float dtype d.
func getFloat(b []byte, d ir.DType, i int) float64 {
	switch d {
	case ir.F32:
		return float64(math.Float32frombits(le.Uint32(b[4*i:])))
	case ir.F64:
		return math.Float64frombits(le.Uint64(b[8*i:]))
	case ir.BF16:
		return float64(ir.BF16ToFloat32(le.Uint16(b[2*i:])))
	case ir.F16:
		return ir.F16ToFloat64(le.Uint16(b[2*i:]))
	}
	return 0
}

// putInt writes v into element i of an integer buffer, failing when v does
// not fit an i32.
func putInt(b []byte, d ir.DType, i int, v int64) error {
	switch d {
	case ir.I64:
		le.PutUint64(b[8*i:], uint64(v))
	case ir.I32:
		if v != int64(int32(v)) {
			return fmt.Errorf("value %d at index %d does not fit in i32", v, i)
		}
		le.PutUint32(b[4*i:], uint32(int32(v)))
	case ir.U8:
		if v != int64(uint8(v)) {
			return fmt.Errorf("value %d at index %d does not fit in u8", v, i)
		}
		b[i] = uint8(v)
	default:
		return fmt.Errorf("%v is not an integer type", d)
	}
	return nil
}

// scalarBytes encodes one scalar value as an element of dtype d. Integer
// slots take only integral values in range.
func scalarBytes(b []byte, d ir.DType, x float64) error {
	if d.IsFloat() {
		putFloat(b, d, 0, x)
		return nil
	}
	if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
		return fmt.Errorf("%v is not an integer, and the slot is %v", x, d)
	}
	return putInt(b, d, 0, int64(x))
}

// Tensor is a copy of a tensor's contents: its type and its elements as bytes
// (little-endian, Type.Bytes() long). Float32s, Int64s and Scalar read them
// as Go values.
type Tensor struct {
	Type ir.Type
	Data []byte
}

// Float32s returns the elements of a float tensor as float32 (bf16 and f16
// widen exactly; f64 rounds).
func (t Tensor) Float32s() ([]float32, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if !t.Type.DType.IsFloat() {
		return nil, fmt.Errorf("tensor is %v, not a float type", t.Type)
	}
	n := int(t.Type.NumElements())
	out := make([]float32, n)
	if t.Type.DType == ir.F32 {
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(t.Data[4*i:]))
		}
		return out, nil
	}
	for i := range out {
		out[i] = float32(getFloat(t.Data, t.Type.DType, i))
	}
	return out, nil
}

// Int64s returns the elements of an integer tensor.
func (t Tensor) Int64s() ([]int64, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	n := int(t.Type.NumElements())
	out := make([]int64, n)
	switch t.Type.DType {
	case ir.I64:
		for i := range out {
			out[i] = int64(le.Uint64(t.Data[8*i:]))
		}
	case ir.I32:
		for i := range out {
			out[i] = int64(int32(le.Uint32(t.Data[4*i:])))
		}
	case ir.U8:
		for i := range out {
			out[i] = int64(t.Data[i])
		}
	default:
		return nil, fmt.Errorf("tensor is %v, not an integer type", t.Type)
	}
	return out, nil
}

// Scalar returns the value of a one-element tensor (a loss, a norm) as a
// float64.
func (t Tensor) Scalar() (float64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if t.Type.NumElements() != 1 {
		return 0, fmt.Errorf("tensor is %v, not one element", t.Type)
	}
	switch t.Type.DType {
	case ir.I64:
		return float64(int64(le.Uint64(t.Data))), nil
	case ir.I32:
		return float64(int32(le.Uint32(t.Data))), nil
	case ir.U8:
		return float64(t.Data[0]), nil
	}
	return getFloat(t.Data, t.Type.DType, 0), nil
}

// check reports a Tensor whose Data does not match its Type (one built by
// hand; the runtime's own are always consistent).
func (t Tensor) check() error {
	if t.Type.DType.Size() == 0 || int64(len(t.Data)) != t.Type.Bytes() {
		return fmt.Errorf("tensor of type %v holds %d bytes, want %d", t.Type, len(t.Data), t.Type.Bytes())
	}
	return nil
}
