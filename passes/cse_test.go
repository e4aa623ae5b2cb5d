package passes

import (
	"slices"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

func TestCSE(t *testing.T) {
	f3 := ir.T(ir.F32, 2, 3)
	for _, c := range []struct {
		name  string
		build func(b *ir.Builder)
		want  []string // ops after cse + dce
	}{
		{"equal consts", func(b *ir.Builder) {
			x := b.AddInput("x", f3, ir.Data, nil)
			b.Output("y", b.Add(b.Mul(x, b.Scalar(2, x)), b.Scalar(2, x)))
		}, []string{"Const", "Mul", "Add"}},
		{"chain of duplicates", func(b *ir.Builder) {
			x := b.AddInput("x", f3, ir.Data, nil)
			y1 := b.Mul(x, b.Scalar(3, x))
			y2 := b.Mul(x, b.Scalar(3, x)) // equal once the Consts merge
			b.Output("y", b.Sub(b.Unary("Exp", y1), b.Unary("Exp", y2)))
		}, []string{"Const", "Mul", "Exp", "Sub"}},
		{"different attributes", func(b *ir.Builder) {
			x := b.AddInput("x", f3, ir.Data, nil)
			b.Output("a", b.Reduce("ReduceSum", x, false, 0))
			b.Output("b", b.Reduce("ReduceSum", x, false, 1))
			b.Output("c", b.Reduce("ReduceSum", x, true, 1))
		}, []string{"ReduceSum", "ReduceSum", "ReduceSum"}},
		{"different consts", func(b *ir.Builder) {
			x := b.AddInput("x", f3, ir.Data, nil)
			b.Output("y", b.Add(b.Mul(x, b.Scalar(2, x)), b.Const(2, f3)))
			b.Output("z", b.Add(x, b.Const(2, f3)))
		}, []string{"Const", "Mul", "Const", "Add", "Add"}},
		{"operand order matters", func(b *ir.Builder) {
			x := b.AddInput("x", f3, ir.Data, nil)
			y := b.AddInput("y", f3, ir.Data, nil)
			b.Output("a", b.Sub(x, y))
			b.Output("b", b.Sub(y, x))
		}, []string{"Sub", "Sub"}},
		{"duplicate graph outputs", func(b *ir.Builder) {
			x := b.AddInput("x", f3, ir.Data, nil)
			b.Output("a", b.Unary("Exp", x))
			b.Output("b", b.Unary("Exp", x))
		}, []string{"Exp"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := ir.NewBuilder("g")
			c.build(b)
			g := built(t, b)
			after := simplifyOne(t, g, "cse,dce")
			if got := opsOf(after); !slices.Equal(got, c.want) {
				t.Fatalf("ops %v, want %v", got, c.want)
			}
			requireSameResults(t, g, after, 2)
		})
	}
}
