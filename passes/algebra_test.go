package passes

import (
	"slices"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

func TestAlgebra(t *testing.T) {
	f23 := ir.T(ir.F32, 2, 3)
	for _, c := range []struct {
		name  string
		build func(b *ir.Builder, x string) string // x: an f32[2,3] data input
		ops   []string                             // ops left after algebra + dce
		attr  string                               // the last node's attribute to check
		want  []int64
	}{
		{"x·1", func(b *ir.Builder, x string) string { return b.Mul(x, b.Scalar(1, x)) }, []string{}, "", nil},
		{"1·x", func(b *ir.Builder, x string) string { return b.Mul(b.Const(1, f23), x) }, []string{}, "", nil},
		{"x+0", func(b *ir.Builder, x string) string { return b.Add(x, b.Scalar(0, x)) }, []string{}, "", nil},
		{"0+x", func(b *ir.Builder, x string) string { return b.Add(b.Scalar(0, x), x) }, []string{}, "", nil},
		{"x−0", func(b *ir.Builder, x string) string { return b.Sub(x, b.Scalar(0, x)) }, []string{}, "", nil},
		{"x/1", func(b *ir.Builder, x string) string { return b.Div(x, b.Scalar(1, x)) }, []string{}, "", nil},
		{"x^1", func(b *ir.Builder, x string) string { return b.Op("Pow", nil, x, b.Scalar(1, x)) }, []string{}, "", nil},
		{"0−x stays", func(b *ir.Builder, x string) string { return b.Sub(b.Scalar(0, x), x) }, []string{"Const", "Sub"}, "", nil},
		{"x·2 stays", func(b *ir.Builder, x string) string { return b.Mul(x, b.Scalar(2, x)) }, []string{"Const", "Mul"}, "", nil},
		{"broadcasting x·1 stays", func(b *ir.Builder, x string) string { return b.Mul(x, b.Const(1, ir.T(ir.F32, 4, 2, 3))) },
			[]string{"Const", "Mul"}, "", nil},
		{"nested", func(b *ir.Builder, x string) string { return b.Mul(b.Add(x, b.Scalar(0, x)), b.Scalar(1, x)) }, []string{}, "", nil},
		{"identity", func(b *ir.Builder, x string) string { return b.Unary("Identity", x) }, []string{}, "", nil},
		{"cast to the same dtype", func(b *ir.Builder, x string) string { return b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, x) },
			[]string{}, "", nil},
		{"cast to another dtype stays", func(b *ir.Builder, x string) string {
			return b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, b.Op("Cast", ir.Attrs{"to": ir.String("f64")}, x))
		}, []string{"Cast", "Cast"}, "", nil},
		{"transpose of its inverse", func(b *ir.Builder, x string) string { return b.Transpose(b.Transpose(x, 1, 0), 1, 0) },
			[]string{}, "", nil},
		{"identity transpose", func(b *ir.Builder, x string) string { return b.Transpose(x, 0, 1) }, []string{}, "", nil},
		{"transpose of transpose", func(b *ir.Builder, x string) string {
			y := b.Reshape(x, 1, 2, 3)
			return b.Transpose(b.Transpose(y, 0, 2, 1), 1, 0, 2) // y.shape[p1[p2[k]]]: [3, 1, 2]
		}, []string{"Reshape", "Transpose"}, "perm", []int64{2, 0, 1}},
		{"three transposes", func(b *ir.Builder, x string) string {
			y := b.Reshape(x, 1, 2, 3)
			return b.Transpose(b.Transpose(b.Transpose(y, 0, 2, 1), 1, 0, 2), 1, 2, 0)
		}, []string{"Reshape"}, "", nil}, // composes to the identity
		{"reshape of reshape", func(b *ir.Builder, x string) string { return b.Reshape(b.Reshape(x, 6), 3, -1) },
			[]string{"Reshape"}, "shape", []int64{3, 2}},
		{"reshape back", func(b *ir.Builder, x string) string { return b.Reshape(b.Reshape(x, 6), 2, 3) }, []string{}, "", nil},
		{"reshape to the same shape", func(b *ir.Builder, x string) string { return b.Reshape(x, 2, -1) }, []string{}, "", nil},
		{"expand to the same shape", func(b *ir.Builder, x string) string { return b.Op("Expand", ir.Attrs{"shape": ir.Ints(2, 3)}, x) },
			[]string{}, "", nil},
		{"expand of expand", func(b *ir.Builder, x string) string {
			e := b.Op("Expand", ir.Attrs{"shape": ir.Ints(4, 2, 3)}, x)
			return b.Op("Expand", ir.Attrs{"shape": ir.Ints(5, 4, 2, 3)}, e)
		}, []string{"Expand"}, "shape", []int64{5, 4, 2, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := ir.NewBuilder("g")
			x := b.AddInput("x", f23, ir.Data, nil)
			b.Output("y", c.build(b, x))
			g := built(t, b)
			after := simplifyOne(t, g, "algebra,dce")
			if got := opsOf(after); !slices.Equal(got, c.ops) {
				t.Fatalf("ops %v, want %v", got, c.ops)
			}
			if len(c.ops) == 0 && after.Outputs[0].Value != x {
				t.Fatalf("output reads %q, want the input %q", after.Outputs[0].Value, x)
			}
			if c.attr != "" {
				if got := after.Nodes[len(after.Nodes)-1].Attrs.GetInts(c.attr); !slices.Equal(got, c.want) {
					t.Fatalf("%s = %v, want %v", c.attr, got, c.want)
				}
			}
			requireSameResults(t, g, after, 4)
		})
	}
}

// TestSimplificationKeepsLlamaResults runs the tiny LLaMA's programs (full and
// SLTrain) through the interpreter before and after the simplification passes
// and the fusion grouping (which adds Const copies): outputs are bit-identical.
func TestSimplificationKeepsLlamaResults(t *testing.T) {
	for _, peft := range []string{"full", "sltrain"} {
		t.Run(peft, func(t *testing.T) {
			s := llamaState(t, "llama_tiny", peft, 2, 8)
			runPasses(t, s, "sltrain-fuse,autodiff,optimizer,programs")
			before := s.Module.Clone()
			runPasses(t, s, "fold,algebra,cse,dce,fuse-groups")
			for i, g := range s.Module.Graphs {
				requireSameResults(t, before.Graphs[i], g, uint64(10+i))
			}
		})
	}
}
