package passes

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestSparseIndexDType: i32 up to an index space of 2³¹ entries (every flat
// index ≤ MaxInt32), i64 above; 7B's largest layer (4096×11008) is i32.
func TestSparseIndexDType(t *testing.T) {
	for _, c := range []struct {
		total int64
		want  ir.DType
	}{{0, ir.I32}, {256, ir.I32}, {4096 * 11008, ir.I32}, {1 << 31, ir.I32}, {1<<31 + 1, ir.I64}, {65536 * 65536, ir.I64}} {
		if got := SparseIndexDType(c.total); got != c.want {
			t.Errorf("SparseIndexDType(%d) = %v, want %v", c.total, got, c.want)
		}
	}
}

// TestSLTrainFuseIndexI64 lowers the i32 limit so that llama_tiny's MLP
// layers (16×24 = 384 entries) keep an i64 index beside its attention
// layers' i32 (16×16 = 256), and checks the fused module verifies and its
// initialiser fills both dtypes with the same support.
func TestSLTrainFuseIndexI64(t *testing.T) {
	defer func(v int64) { SparseIndexI32Total = v }(SparseIndexI32Total)
	SparseIndexI32Total = 300
	m := buildLlama(t, "llama_tiny", 1, 4)
	o := DefaultOptions()
	o.Rank = 4
	if err := runFuse(t, m, o); err != nil {
		t.Fatal(err)
	}
	n32, n64 := 0, 0
	for _, in := range m.Graph("forward").Inputs {
		if !strings.HasSuffix(in.Name, ".sparse_index") {
			continue
		}
		want := ir.I32
		if strings.Contains(in.Name, ".mlp.") {
			want, n64 = ir.I64, n64+1
		} else {
			n32++
		}
		if in.Type.DType != want || in.Init.Total > 384 {
			t.Errorf("%s: %v (space %d), want %v", in.Name, in.Type, in.Init.Total, want)
		}
		a, b := make([]int32, in.Type.NumElements()), make([]int64, in.Type.NumElements())
		if err := ir.Fill(in.Init, a); err != nil {
			t.Fatal(err)
		}
		if err := ir.Fill(in.Init, b); err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if int64(a[i]) != b[i] {
				t.Fatalf("%s: i32 and i64 supports differ at %d", in.Name, i)
			}
		}
	}
	if n32 != 2*4 || n64 != 2*3 {
		t.Errorf("%d i32 and %d i64 indices, want 8 and 6", n32, n64)
	}
}
