package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// DType is the element type of a tensor.
type DType uint8

// The element types slc knows. Floating types are stored as their IEEE bits;
// BF16 is the upper half of an F32.
const (
	InvalidDType DType = iota
	F32
	F64
	BF16
	F16
	I32
	I64
	U8 // 8-bit codes of block-wise quantized optimizer states
)

var dtypeNames = [...]string{InvalidDType: "invalid", F32: "f32", F64: "f64", BF16: "bf16", F16: "f16", I32: "i32", I64: "i64", U8: "u8"}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case F64, I64:
		return 8
	case BF16, F16:
		return 2
	case U8:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == F32 || d == F64 || d == BF16 || d == F16 }

// IsInt reports whether d is an integer type.
func (d DType) IsInt() bool { return d == I32 || d == I64 || d == U8 }

// ParseDType reads a dtype name ("f32", "bf16", …). It also accepts the long
// spellings used by PyTorch and safetensors ("float32", "bfloat16", "int64", …).
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "f32", "float32", "float":
		return F32, nil
	case "f64", "float64", "double":
		return F64, nil
	case "bf16", "bfloat16":
		return BF16, nil
	case "f16", "float16", "half":
		return F16, nil
	case "i32", "int32":
		return I32, nil
	case "i64", "int64", "long":
		return I64, nil
	case "u8", "uint8":
		return U8, nil
	}
	return InvalidDType, fmt.Errorf("unknown dtype %q (want f32, f64, bf16, f16, i32, i64 or u8)", s)
}

// Type is the static type of a value: its element type and shape. A scalar has
// an empty (nil) shape.
type Type struct {
	DType DType
	Shape []int
}

// T is shorthand for Type{d, shape}.
func T(d DType, shape ...int) Type {
	if len(shape) == 0 {
		shape = nil
	}
	return Type{DType: d, Shape: shape}
}

// Rank is the number of dimensions.
func (t Type) Rank() int { return len(t.Shape) }

// NumElements is the product of the dimensions (1 for a scalar).
func (t Type) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Bytes is the storage size of a value of this type.
func (t Type) Bytes() int64 { return t.NumElements() * int64(t.DType.Size()) }

// Equal reports whether two types are identical.
func (t Type) Equal(u Type) bool {
	return t.DType == u.DType && ShapeEqual(t.Shape, u.Shape)
}

// ShapeEqual reports whether two shapes are identical (nil equals empty).
func ShapeEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// String prints the type as "f32[2,3]" ("f32[]" for a scalar).
func (t Type) String() string {
	var sb strings.Builder
	sb.WriteString(t.DType.String())
	sb.WriteByte('[')
	for i, d := range t.Shape {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(d))
	}
	sb.WriteByte(']')
	return sb.String()
}

// ParseType reads the form printed by Type.String.
func ParseType(s string) (Type, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 || !strings.HasSuffix(s, "]") {
		return Type{}, fmt.Errorf("bad type %q (want e.g. f32[2,3])", s)
	}
	dt, err := ParseDType(s[:open])
	if err != nil {
		return Type{}, err
	}
	body := s[open+1 : len(s)-1]
	var shape []int
	if body != "" {
		for _, f := range strings.Split(body, ",") {
			d, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || d < 0 {
				return Type{}, fmt.Errorf("bad dimension %q in type %q", f, s)
			}
			shape = append(shape, d)
		}
	}
	return Type{DType: dt, Shape: shape}, nil
}
