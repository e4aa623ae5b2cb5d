package codegen

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// TestTinyLlamaIndexI64 is TestTinyLlama with the i32 index limit lowered,
// so that the MLP layers keep an int64 sparse_index beside the attention
// layers' i32: both dtypes through every program, against the interpreter.
func TestTinyLlamaIndexI64(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a model")
	}
	limit := passes.SparseIndexI32Total
	passes.SparseIndexI32Total = 300 // attention 16×16 fits, MLP 16×24 does not
	s := pipeline(t, "llama_tiny.json", 2, 8, 4)
	passes.SparseIndexI32Total = limit
	seen := map[ir.DType]int{}
	for _, in := range s.Module.Graph("train_step").Inputs {
		if strings.HasSuffix(in.Name, ".sparse_index") {
			seen[in.Type.DType]++
		}
	}
	if seen[ir.I32] == 0 || seen[ir.I64] == 0 {
		t.Fatalf("index dtypes %v, want both i32 and i64", seen)
	}
	for _, mode := range []string{"auto", "merged"} {
		t.Run(mode, func(t *testing.T) { tinyLlama(t, s, mode) })
	}
}
