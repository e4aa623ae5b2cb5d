package safetensors

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestConvertInt narrows an int64 index to i32 and widens it back to the same
// bytes, and refuses a value outside i32 and a non-index dtype.
func TestConvertInt(t *testing.T) {
	vals := []int64{0, 1, 7, math.MaxInt32, -5, math.MinInt32}
	wide := FromInt64s("idx", ir.I64, []int{len(vals)}, vals)
	narrow, err := wide.ConvertInt(ir.I32)
	if err != nil {
		t.Fatal(err)
	}
	if narrow.DType != ir.I32 || len(narrow.Data) != 4*len(vals) {
		t.Fatalf("narrowed to %v with %d bytes", narrow.DType, len(narrow.Data))
	}
	if got, err := narrow.Int64s(); err != nil || !slices.Equal(got, vals) {
		t.Fatalf("narrowed values %v (%v), want %v", got, err, vals)
	}
	back, err := narrow.ConvertInt(ir.I64)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Data, wide.Data) {
		t.Fatal("i64 → i32 → i64 changed the bytes")
	}
	same, err := narrow.ConvertInt(ir.I32)
	if err != nil || !bytes.Equal(same.Data, narrow.Data) || &same.Data[0] == &narrow.Data[0] {
		t.Fatalf("same-dtype conversion: %v, want a copy of the bytes", err)
	}
	big := FromInt64s("model.x.sparse_index", ir.I64, []int{3}, []int64{1, math.MaxInt32 + 1, 2})
	if _, err := big.ConvertInt(ir.I32); err == nil || !strings.Contains(err.Error(), `"model.x.sparse_index": value 2147483648 at position 1 does not fit i32`) {
		t.Fatalf("out-of-range narrowing: %v", err)
	}
	f := FromFloat32s("w", ir.F32, []int{1}, []float32{1})
	if _, err := f.ConvertInt(ir.I32); err == nil {
		t.Fatal("a float tensor converted to i32")
	}
	if _, err := wide.ConvertInt(ir.U8); err == nil {
		t.Fatal("an index converted to u8")
	}
}
