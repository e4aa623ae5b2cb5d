package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// Tensor is a decoded ONNX TensorProto: floats in F, integers in I (one of the
// two, by DType), row-major.
type Tensor struct {
	Name  string
	DType ir.DType
	Shape []int
	F     []float64
	I     []int64
	// Bool marks a bool tensor, held as 0/1 in I (DType I64).
	Bool bool
}

// Type is the tensor's ir.Type.
func (t *Tensor) Type() ir.Type { return ir.Type{DType: t.DType, Shape: t.Shape} }

func (t *Tensor) len() int {
	if t.DType.IsFloat() {
		return len(t.F)
	}
	return len(t.I)
}

// at returns element k as a float64.
func (t *Tensor) at(k int) float64 {
	if t.DType.IsFloat() {
		return t.F[k]
	}
	return float64(t.I[k])
}

// irDType maps an ONNX element type to slc's, or fails naming it.
func irDType(t int64) (ir.DType, error) {
	switch t {
	case dtFloat:
		return ir.F32, nil
	case dtDouble:
		return ir.F64, nil
	case dtInt32:
		return ir.I32, nil
	case dtInt64:
		return ir.I64, nil
	}
	return ir.InvalidDType, &Unsupported{What: "dtype", Detail: dtName(t)}
}

// ParseTensor decodes a serialized TensorProto (an input_N.pb or output_N.pb of
// ONNX's backend tests).
func ParseTensor(b []byte) (*Tensor, error) {
	p, err := decodeTensor(b)
	if err != nil {
		return nil, err
	}
	return tensorOf(p)
}

// tensorOf reads the values of a TensorProto from raw_data or the typed field.
func tensorOf(p *tensorProto) (*Tensor, error) {
	if p.external {
		return nil, &Unsupported{What: "external tensor data", Detail: p.name}
	}
	if p.segment {
		return nil, &Unsupported{What: "segmented tensor", Detail: p.name}
	}
	if p.dataType == dtBool {
		return boolTensor(p)
	}
	dt, err := irDType(p.dataType)
	if err != nil {
		return nil, err
	}
	t := &Tensor{Name: p.name, DType: dt}
	n := 1
	for _, d := range p.dims {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("tensor %q: dim %d out of range", p.name, d)
		}
		t.Shape = append(t.Shape, int(d))
		n *= int(d)
	}
	if p.hasRaw {
		if len(p.rawData) != n*dt.Size() {
			return nil, fmt.Errorf("tensor %q: raw_data has %d bytes for %d %v elements", p.name, len(p.rawData), n, dt)
		}
		r := p.rawData
		switch dt {
		case ir.F32:
			t.F = make([]float64, n)
			for k := range t.F {
				t.F[k] = float64(math.Float32frombits(binary.LittleEndian.Uint32(r[4*k:])))
			}
		case ir.F64:
			t.F = make([]float64, n)
			for k := range t.F {
				t.F[k] = math.Float64frombits(binary.LittleEndian.Uint64(r[8*k:]))
			}
		case ir.I32:
			t.I = make([]int64, n)
			for k := range t.I {
				t.I[k] = int64(int32(binary.LittleEndian.Uint32(r[4*k:])))
			}
		case ir.I64:
			t.I = make([]int64, n)
			for k := range t.I {
				t.I[k] = int64(binary.LittleEndian.Uint64(r[8*k:]))
			}
		}
		return t, nil
	}
	switch dt {
	case ir.F32:
		for _, v := range p.floatData {
			t.F = append(t.F, float64(v))
		}
	case ir.F64:
		t.F = append(t.F, p.doubleData...)
	case ir.I32:
		for _, v := range p.int32Data {
			t.I = append(t.I, int64(int32(v)))
		}
	case ir.I64:
		t.I = append(t.I, p.int64Data...)
	}
	if t.len() != n {
		return nil, fmt.Errorf("tensor %q: %d values for shape %v", p.name, t.len(), t.Shape)
	}
	if dt.IsFloat() && t.F == nil {
		t.F = []float64{}
	}
	if !dt.IsFloat() && t.I == nil {
		t.I = []int64{}
	}
	return t, nil
}

// boolTensor decodes a bool TensorProto (one byte per element in raw_data,
// or int32_data) as 0/1 I64 values.
func boolTensor(p *tensorProto) (*Tensor, error) {
	t := &Tensor{Name: p.name, DType: ir.I64, Bool: true, I: []int64{}}
	n := 1
	for _, d := range p.dims {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("tensor %q: dim %d out of range", p.name, d)
		}
		t.Shape = append(t.Shape, int(d))
		n *= int(d)
	}
	vals := p.int32Data
	if p.hasRaw {
		vals = nil
		for _, c := range p.rawData {
			vals = append(vals, int64(c))
		}
	}
	if len(vals) != n {
		return nil, fmt.Errorf("tensor %q: %d values for shape %v", p.name, len(vals), t.Shape)
	}
	for _, v := range vals {
		t.I = append(t.I, min(v&0xff, 1))
	}
	return t, nil
}
