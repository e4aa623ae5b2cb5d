package passes

import (
	"math"
	"slices"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

func TestFold(t *testing.T) {
	f32 := ir.T(ir.F32)
	for _, c := range []struct {
		name  string
		build func(b *ir.Builder) string // returns the value to inspect (output "y")
		ops   []string                   // ops after fold + dce
		value float64                    // the folded Const's value, when ops is ["Const"]
		typ   string                     // its type
	}{
		{"mul", func(b *ir.Builder) string { return b.Mul(b.Const(2, f32), b.Const(3, f32)) },
			[]string{"Const"}, 6, "f32[]"},
		{"f32 rounding", func(b *ir.Builder) string { return b.Mul(b.Const(0.1, f32), b.Const(3, f32)) },
			[]string{"Const"}, float64(float32(float64(float32(0.1)) * 3)), "f32[]"},
		{"broadcast", func(b *ir.Builder) string { return b.Add(b.Const(1, ir.T(ir.F32, 2, 1)), b.Const(2, ir.T(ir.F32, 3))) },
			[]string{"Const"}, 3, "f32[2,3]"},
		{"chain", func(b *ir.Builder) string { return b.Unary("Exp", b.Unary("Neg", b.Const(1, f32))) },
			[]string{"Const"}, float64(float32(math.Exp(-1))), "f32[]"},
		{"cast to int truncates", func(b *ir.Builder) string {
			return b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, b.Const(-2.7, ir.T(ir.F32, 4)))
		}, []string{"Const"}, -2, "i64[4]"},
		{"cast to bf16", func(b *ir.Builder) string {
			return b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, b.Const(1.0/3, f32))
		}, []string{"Const"}, 0.333984375, "bf16[]"},
		{"reshape", func(b *ir.Builder) string { return b.Reshape(b.Const(5, ir.T(ir.F32, 2, 3)), 3, -1) },
			[]string{"Const"}, 5, "f32[3,2]"},
		{"expand", func(b *ir.Builder) string {
			return b.Op("Expand", ir.Attrs{"shape": ir.Ints(4, 3)}, b.Const(5, ir.T(ir.F32, 3)))
		}, []string{"Const"}, 5, "f32[4,3]"},
		{"transpose and slice", func(b *ir.Builder) string {
			return b.Slice(b.Transpose(b.Const(7, ir.T(ir.F32, 2, 3)), 1, 0), 0, 1, 3)
		}, []string{"Const"}, 7, "f32[2,2]"},
		{"concat of equal consts", func(b *ir.Builder) string {
			return b.Op("Concat", ir.Attrs{"axis": ir.Int(0)}, b.Const(7, ir.T(ir.F32, 2)), b.Const(7, ir.T(ir.F32, 3)))
		}, []string{"Const"}, 7, "f32[5]"},
		{"concat of different consts", func(b *ir.Builder) string {
			return b.Op("Concat", ir.Attrs{"axis": ir.Int(0)}, b.Const(7, ir.T(ir.F32, 2)), b.Const(8, ir.T(ir.F32, 3)))
		}, []string{"Const", "Const", "Concat"}, 0, ""},
		{"reductions stay", func(b *ir.Builder) string { return b.Reduce("ReduceSum", b.Const(0.1, ir.T(ir.F32, 7)), false, 0) },
			[]string{"Const", "ReduceSum"}, 0, ""},
		{"integer division by zero stays", func(b *ir.Builder) string {
			return b.Div(b.Const(1, ir.T(ir.I64)), b.Const(0, ir.T(ir.I64)))
		}, []string{"Const", "Const", "Div"}, 0, ""},
		{"non-constant operand", func(b *ir.Builder) string {
			x := b.AddInput("x", ir.T(ir.F32, 3), ir.Data, nil)
			return b.Mul(x, b.Mul(b.Const(2, f32), b.Const(4, f32)))
		}, []string{"Const", "Mul"}, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := ir.NewBuilder("g")
			b.Output("y", c.build(b))
			g := built(t, b)
			after := simplifyOne(t, g, "fold,dce")
			if got := opsOf(after); !slices.Equal(got, c.ops) {
				t.Fatalf("ops %v, want %v", got, c.ops)
			}
			if c.typ != "" {
				n := after.Nodes[0]
				if v := n.Attrs.GetFloat("value", math.NaN()); v != c.value || n.Outputs[0].Type.String() != c.typ {
					t.Fatalf("got Const %v %v, want %v %s", v, n.Outputs[0].Type, c.value, c.typ)
				}
			}
			if c.name != "integer division by zero stays" {
				requireSameResults(t, g, after, 3)
			}
		})
	}
}
