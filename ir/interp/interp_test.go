package interp

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// Expected numbers in these tests are worked out by hand (or by a closed-form
// formula written next to them), never by running the interpreter.

func f64(shape []int, v ...float64) *Tensor { return FromFloats(ir.T(ir.F64, shape...), v) }
func f32(shape []int, v ...float64) *Tensor { return FromFloats(ir.T(ir.F32, shape...), v) }
func i64(shape []int, v ...int64) *Tensor   { return FromInts(ir.T(ir.I64, shape...), v) }
func sh(d ...int) []int                     { return d }

// try1 builds a graph applying op to data inputs x0, x1, … and runs it.
func try1(op string, attrs ir.Attrs, ins ...*Tensor) (*Tensor, error) {
	b := ir.NewBuilder("t")
	names := make([]string, len(ins))
	feed := map[string]*Tensor{}
	for i, x := range ins {
		names[i] = fmt.Sprintf("x%d", i)
		b.AddInput(names[i], x.Type, ir.Data, nil)
		feed[names[i]] = x
	}
	b.Output("y", b.Op(op, attrs, names...))
	if err := b.Err(); err != nil {
		return nil, err
	}
	out, err := Run(b.G, feed)
	if err != nil {
		return nil, err
	}
	return out["y"], nil
}

func run1(t *testing.T, op string, attrs ir.Attrs, ins ...*Tensor) *Tensor {
	t.Helper()
	y, err := try1(op, attrs, ins...)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// near reports whether got has the wanted shape and values within tol
// (relative to max(1, |want|)); -Inf/+Inf/NaN must match exactly.
func near(got *Tensor, shape []int, want []float64, tol float64) error {
	if !ir.ShapeEqual(got.Type.Shape, shape) {
		return fmt.Errorf("shape %v, want %v", got.Type.Shape, shape)
	}
	if len(got.F) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got.F), len(want))
	}
	for i, w := range want {
		g := got.F[i]
		switch {
		case math.IsNaN(w) || math.IsInf(w, 0):
			if !(math.IsNaN(w) && math.IsNaN(g)) && g != w {
				return fmt.Errorf("[%d] = %v, want %v (all: %v)", i, g, w, got.F)
			}
		case math.Abs(g-w) > tol*math.Max(1, math.Abs(w)):
			return fmt.Errorf("[%d] = %v, want %v (all: %v)", i, g, w, got.F)
		}
	}
	return nil
}

func TestEveryOpHasAKernel(t *testing.T) {
	for _, op := range ir.OpNames() {
		if kernels[op] == nil {
			t.Errorf("op %s is registered in ir but the interpreter does not implement it", op)
		}
	}
	for op := range kernels {
		if ir.Lookup(op) == nil {
			t.Errorf("the interpreter implements %s, which ir does not register", op)
		}
	}
}

func TestOps(t *testing.T) {
	e := math.E
	ln2, ln3 := math.Log(2), math.Log(3)
	a23 := f64(sh(2, 3), 1, 2, 3, 4, 5, 6)
	cases := []struct {
		name  string
		op    string
		attrs ir.Attrs
		in    []*Tensor
		shape []int
		want  []float64
	}{
		// Element-wise unary.
		{"identity", "Identity", nil, []*Tensor{f64(sh(2), 1.5, -2)}, sh(2), []float64{1.5, -2}},
		{"neg", "Neg", nil, []*Tensor{f64(sh(2), 1.5, -2)}, sh(2), []float64{-1.5, 2}},
		{"exp", "Exp", nil, []*Tensor{f64(sh(3), 0, 1, -1)}, sh(3), []float64{1, e, 1 / e}},
		{"log", "Log", nil, []*Tensor{f64(sh(3), 1, e, 0)}, sh(3), []float64{0, 1, math.Inf(-1)}},
		{"sqrt", "Sqrt", nil, []*Tensor{f64(sh(2), 4, 2.25)}, sh(2), []float64{2, 1.5}},
		{"rsqrt", "Rsqrt", nil, []*Tensor{f64(sh(2), 4, 0.25)}, sh(2), []float64{0.5, 2}},
		{"recip", "Recip", nil, []*Tensor{f64(sh(2), 4, -0.5)}, sh(2), []float64{0.25, -2}},
		{"sigmoid", "Sigmoid", nil, []*Tensor{f64(sh(4), 0, 1, -1, -800)}, sh(4), []float64{0.5, e / (e + 1), 1 / (1 + e), 0}},
		{"silu", "Silu", nil, []*Tensor{f64(sh(3), 0, 1, -1)}, sh(3), []float64{0, e / (e + 1), -1 / (1 + e)}},
		// Element-wise binary with broadcasting.
		{"add row", "Add", nil, []*Tensor{a23, f64(sh(3), 10, 20, 30)}, sh(2, 3), []float64{11, 22, 33, 14, 25, 36}},
		{"add scalar", "Add", nil, []*Tensor{f64(nil, 0.5), a23}, sh(2, 3), []float64{1.5, 2.5, 3.5, 4.5, 5.5, 6.5}},
		{"add 3d", "Add", nil, []*Tensor{f64(sh(2, 1, 2), 1, 2, 3, 4), f64(sh(3, 1), 10, 20, 30)}, sh(2, 3, 2),
			[]float64{11, 12, 21, 22, 31, 32, 13, 14, 23, 24, 33, 34}},
		{"mul outer", "Mul", nil, []*Tensor{f64(sh(2, 1), 1, 2), f64(sh(1, 3), 1, 2, 3)}, sh(2, 3), []float64{1, 2, 3, 2, 4, 6}},
		{"mul col", "Mul", nil, []*Tensor{a23, f64(sh(2, 1), 10, -1)}, sh(2, 3), []float64{10, 20, 30, -4, -5, -6}},
		{"sub", "Sub", nil, []*Tensor{f64(sh(2), 5, 1), f64(nil, 2)}, sh(2), []float64{3, -1}},
		{"div", "Div", nil, []*Tensor{f64(sh(3), 1, -3, 1), f64(sh(3), 4, 2, 0)}, sh(3), []float64{0.25, -1.5, math.Inf(1)}},
		{"pow", "Pow", nil, []*Tensor{f64(sh(3), 2, 9, 2), f64(sh(3), 3, 0.5, -1)}, sh(3), []float64{8, 3, 0.5}},
		{"max", "Max", nil, []*Tensor{f64(sh(3), 1, 5, -1), f64(sh(3), 2, 3, math.Inf(-1))}, sh(3), []float64{2, 5, -1}},
		{"min", "Min", nil, []*Tensor{f64(sh(3), 1, 5, -1), f64(nil, 2)}, sh(3), []float64{1, 2, -1}},
		{"greater", "Greater", nil, []*Tensor{f64(sh(3), 1, 2, 3), f64(nil, 2)}, sh(3), []float64{0, 0, 1}},
		// Const.
		{"const", "Const", ir.Attrs{"value": ir.Float(2.5), "dtype": ir.String("f64"), "shape": ir.Ints(2, 2)}, nil, sh(2, 2), []float64{2.5, 2.5, 2.5, 2.5}},
		{"const scalar", "Const", ir.Attrs{"value": ir.Float(math.Inf(-1)), "dtype": ir.String("f32")}, nil, nil, []float64{math.Inf(-1)}},
		// MatMul: [[1,2,3],[4,5,6]]·[[7,8],[9,10],[11,12]] = [[58,64],[139,154]], stored in every layout.
		{"matmul", "MatMul", nil, []*Tensor{a23, f64(sh(3, 2), 7, 8, 9, 10, 11, 12)}, sh(2, 2), []float64{58, 64, 139, 154}},
		{"matmul ta", "MatMul", ir.Attrs{"transpose_a": ir.Int(1)},
			[]*Tensor{f64(sh(3, 2), 1, 4, 2, 5, 3, 6), f64(sh(3, 2), 7, 8, 9, 10, 11, 12)}, sh(2, 2), []float64{58, 64, 139, 154}},
		{"matmul tb", "MatMul", ir.Attrs{"transpose_b": ir.Int(1)},
			[]*Tensor{a23, f64(sh(2, 3), 7, 9, 11, 8, 10, 12)}, sh(2, 2), []float64{58, 64, 139, 154}},
		{"matmul ta tb", "MatMul", ir.Attrs{"transpose_a": ir.Int(1), "transpose_b": ir.Int(1)},
			[]*Tensor{f64(sh(3, 2), 1, 4, 2, 5, 3, 6), f64(sh(2, 3), 7, 9, 11, 8, 10, 12)}, sh(2, 2), []float64{58, 64, 139, 154}},
		{"matmul batch x matrix", "MatMul", nil,
			[]*Tensor{f64(sh(2, 2, 3), 1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12), f64(sh(3, 2), 7, 8, 9, 10, 11, 12)},
			sh(2, 2, 2), []float64{58, 64, 139, 154, 116, 128, 278, 308}},
		// a[2,1,2,3] (batches A0, A1) times b[3,3,2] (B0 picks columns 1,2; B1 columns 2,3; B2 column 1 twice).
		{"matmul batch broadcast", "MatMul", nil,
			[]*Tensor{f64(sh(2, 1, 2, 3), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12),
				f64(sh(3, 3, 2), 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0)},
			sh(2, 3, 2, 2), []float64{1, 2, 4, 5, 2, 3, 5, 6, 1, 1, 4, 4, 7, 8, 10, 11, 8, 9, 11, 12, 7, 7, 10, 10}},
		// Linear: w = [[1,0,-1],[2,1,0]].
		{"linear", "Linear", nil, []*Tensor{a23, f64(sh(2, 3), 1, 0, -1, 2, 1, 0)}, sh(2, 2), []float64{-2, 4, -2, 13}},
		{"linear 3d", "Linear", nil, []*Tensor{f64(sh(1, 2, 3), 1, 2, 3, 4, 5, 6), f64(sh(1, 3), 1, 1, 1)}, sh(1, 2, 1), []float64{6, 15}},
		// Reductions of [[1,2,3],[4,5,6]] and of 1..8 as [2,2,2].
		{"sum axis0", "ReduceSum", ir.Attrs{"axes": ir.Ints(0)}, []*Tensor{a23}, sh(3), []float64{5, 7, 9}},
		{"sum axis1 keep", "ReduceSum", ir.Attrs{"axes": ir.Ints(1), "keepdims": ir.Int(1)}, []*Tensor{a23}, sh(2, 1), []float64{6, 15}},
		{"sum all", "ReduceSum", ir.Attrs{"axes": ir.Ints(0, 1)}, []*Tensor{a23}, nil, []float64{21}},
		{"mean last", "ReduceMean", ir.Attrs{"axes": ir.Ints(-1)}, []*Tensor{a23}, sh(2), []float64{2, 5}},
		{"sum 0,2 keep", "ReduceSum", ir.Attrs{"axes": ir.Ints(0, 2), "keepdims": ir.Int(1)},
			[]*Tensor{f64(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)}, sh(1, 2, 1), []float64{14, 22}},
		{"mean 0,2", "ReduceMean", ir.Attrs{"axes": ir.Ints(2, 0)},
			[]*Tensor{f64(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)}, sh(2), []float64{3.5, 5.5}},
		// Shape ops.
		{"reshape", "Reshape", ir.Attrs{"shape": ir.Ints(3, -1)}, []*Tensor{a23}, sh(3, 2), []float64{1, 2, 3, 4, 5, 6}},
		{"transpose", "Transpose", ir.Attrs{"perm": ir.Ints(1, 0)}, []*Tensor{a23}, sh(3, 2), []float64{1, 4, 2, 5, 3, 6}},
		{"slice cols", "Slice", ir.Attrs{"axis": ir.Int(1), "start": ir.Int(1), "end": ir.Int(3)}, []*Tensor{a23}, sh(2, 2), []float64{2, 3, 5, 6}},
		{"slice rows", "Slice", ir.Attrs{"axis": ir.Int(-2), "start": ir.Int(1), "end": ir.Int(2)}, []*Tensor{a23}, sh(1, 3), []float64{4, 5, 6}},
		{"concat axis1", "Concat", ir.Attrs{"axis": ir.Int(1)}, []*Tensor{f64(sh(2, 1), 1, 2), f64(sh(2, 2), 3, 4, 5, 6)}, sh(2, 3), []float64{1, 3, 4, 2, 5, 6}},
		{"concat axis0", "Concat", ir.Attrs{"axis": ir.Int(0)}, []*Tensor{f64(sh(1, 2), 1, 2), f64(sh(2, 2), 3, 4, 5, 6), f64(sh(1, 2), 7, 8)},
			sh(4, 2), []float64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"expand row", "Expand", ir.Attrs{"shape": ir.Ints(2, 3)}, []*Tensor{f64(sh(3), 1, 2, 3)}, sh(2, 3), []float64{1, 2, 3, 1, 2, 3}},
		{"expand col", "Expand", ir.Attrs{"shape": ir.Ints(2, 3)}, []*Tensor{f64(sh(2, 1), 1, 2)}, sh(2, 3), []float64{1, 1, 1, 2, 2, 2}},
		// Gather/ScatterAdd: table rows r are [10r, 10r+1].
		{"gather", "Gather", nil, []*Tensor{f64(sh(4, 2), 0, 1, 10, 11, 20, 21, 30, 31), i64(sh(2, 2), 3, 0, 1, 3)},
			sh(2, 2, 2), []float64{30, 31, 0, 1, 10, 11, 30, 31}},
		{"gather 1d", "Gather", nil, []*Tensor{f64(sh(4), 5, 6, 7, 8), i64(sh(3), 2, 2, 0)}, sh(3), []float64{7, 7, 5}},
		{"scatteradd dup", "ScatterAdd", ir.Attrs{"num_rows": ir.Int(3)}, []*Tensor{f64(sh(3, 2), 1, 2, 3, 4, 5, 6), i64(sh(3), 0, 2, 0)},
			sh(3, 2), []float64{6, 8, 0, 0, 3, 4}},
		// Softmax of [0, ln2, ln3] is [1,2,3]/6; of [1000, 1001, 1002] (no overflow) [1, e, e²]/(1+e+e²); also along axis 0.
		{"softmax", "Softmax", nil, []*Tensor{f64(sh(2, 3), 0, ln2, ln3, 1000, 1001, 1002)}, sh(2, 3),
			[]float64{1.0 / 6, 2.0 / 6, 3.0 / 6, 1 / (1 + e + e*e), e / (1 + e + e*e), e * e / (1 + e + e*e)}},
		{"softmax axis0", "Softmax", ir.Attrs{"axis": ir.Int(0)}, []*Tensor{f64(sh(2, 2), 0, 5, ln3, 5)}, sh(2, 2), []float64{0.25, 0.5, 0.75, 0.5}},
		// Cross-entropy of [0, ln3]: logsumexp = ln4.
		{"ce", "SoftmaxCrossEntropy", nil, []*Tensor{f64(sh(2, 2), 0, ln3, 0, ln3), i64(sh(2), 0, 1)}, sh(2), []float64{math.Log(4), math.Log(4.0 / 3)}},
		{"ce uniform", "SoftmaxCrossEntropy", nil, []*Tensor{f64(sh(1, 2, 5), 3, 3, 3, 3, 3, 0, 0, 0, 0, 0), i64(sh(1, 2), 4, 0)}, sh(1, 2),
			[]float64{math.Log(5), math.Log(5)}},
		// softmax [0.25, 0.75]; minus onehot(1) = [0.25, -0.25]; times dloss 2.
		{"ce grad", "SoftmaxCrossEntropyGrad", nil, []*Tensor{f64(sh(1, 2), 0, ln3), i64(sh(1), 1), f64(sh(1), 2)}, sh(1, 2), []float64{0.5, -0.5}},
		// Causal mask.
		{"causal", "CausalMask", nil, []*Tensor{f64(sh(3, 3), 1, 2, 3, 4, 5, 6, 7, 8, 9)}, sh(3, 3),
			[]float64{1, math.Inf(-1), math.Inf(-1), 4, 5, math.Inf(-1), 7, 8, 9}},
		{"causal zero batch", "CausalMask", ir.Attrs{"fill": ir.String("zero")}, []*Tensor{f64(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)}, sh(2, 2, 2),
			[]float64{1, 0, 3, 4, 5, 0, 7, 8}},
		{"causal wide", "CausalMask", ir.Attrs{"fill": ir.String("zero")}, []*Tensor{f64(sh(2, 3), 1, 2, 3, 4, 5, 6)}, sh(2, 3),
			[]float64{1, 0, 0, 4, 5, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := run1(t, c.op, c.attrs, c.in...)
			if err := near(y, c.shape, c.want, 1e-14); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTransposeRank3(t *testing.T) {
	// x[i][j][k] = 100i + 10j + k; perm (2,0,1) gives y[a][b][c] = x[b][c][a].
	var v []float64
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 4; k++ {
				v = append(v, float64(100*i+10*j+k))
			}
		}
	}
	y := run1(t, "Transpose", ir.Attrs{"perm": ir.Ints(2, 0, 1)}, f64(sh(2, 3, 4), v...))
	var want []float64
	for a := 0; a < 4; a++ {
		for b := 0; b < 2; b++ {
			for c := 0; c < 3; c++ {
				want = append(want, float64(100*b+10*c+a))
			}
		}
	}
	if err := near(y, sh(4, 2, 3), want, 0); err != nil {
		t.Fatal(err)
	}
}

func TestIntegerOps(t *testing.T) {
	for _, c := range []struct {
		name  string
		op    string
		attrs ir.Attrs
		in    []*Tensor
		want  *Tensor
	}{
		{"i32 add wraps", "Add", nil, []*Tensor{FromInts(ir.T(ir.I32, 2), []int64{math.MaxInt32, -5}), FromInts(ir.T(ir.I32), []int64{1})},
			FromInts(ir.T(ir.I32, 2), []int64{math.MinInt32, -4})},
		{"i64 add does not", "Add", nil, []*Tensor{i64(sh(1), math.MaxInt32), i64(nil, 1)}, i64(sh(1), math.MaxInt32+1)},
		{"i32 mul wraps", "Mul", nil, []*Tensor{FromInts(ir.T(ir.I32, 1), []int64{1 << 20}), FromInts(ir.T(ir.I32, 1), []int64{1 << 12})},
			FromInts(ir.T(ir.I32, 1), []int64{0})},
		{"div truncates", "Div", nil, []*Tensor{i64(sh(3), 7, -7, 6), i64(nil, 2)}, i64(sh(3), 3, -3, 3)},
		{"pow", "Pow", nil, []*Tensor{i64(sh(4), 3, -2, 1, 5), i64(sh(4), 4, 3, -2, -1)}, i64(sh(4), 81, -8, 1, 0)},
		{"max min greater neg", "Neg", nil, []*Tensor{i64(sh(2), 3, -4)}, i64(sh(2), -3, 4)},
		{"greater", "Greater", nil, []*Tensor{i64(sh(3), 1, 2, 3), i64(nil, 2)}, i64(sh(3), 0, 0, 1)},
		{"gather ints", "Gather", nil, []*Tensor{i64(sh(3), 7, 8, 9), i64(sh(2), 2, 0)}, i64(sh(2), 9, 7)},
		{"cast trunc", "Cast", ir.Attrs{"to": ir.String("i64")}, []*Tensor{f64(sh(4), -2.7, 2.7, 0.5, -0.5)}, i64(sh(4), -2, 2, 0, 0)},
		{"cast to i32 wraps", "Cast", ir.Attrs{"to": ir.String("i32")}, []*Tensor{i64(sh(2), 1<<31, 1<<32+5)},
			FromInts(ir.T(ir.I32, 2), []int64{math.MinInt32, 5})},
		{"const int", "Const", ir.Attrs{"value": ir.Float(-3.9), "dtype": ir.String("i64"), "shape": ir.Ints(2)}, nil, i64(sh(2), -3, -3)},
		{"exp int truncates", "Exp", nil, []*Tensor{i64(sh(2), 0, 1)}, i64(sh(2), 1, 2)},
		{"pow -1 base", "Pow", nil, []*Tensor{i64(sh(2), -1, -1), i64(sh(2), -3, -4)}, i64(sh(2), -1, 1)},
		{"concat ints", "Concat", ir.Attrs{"axis": ir.Int(0)}, []*Tensor{i64(sh(1), 4), i64(sh(2), 5, 6)}, i64(sh(3), 4, 5, 6)},
		{"transpose ints", "Transpose", ir.Attrs{"perm": ir.Ints(1, 0)}, []*Tensor{i64(sh(2, 2), 1, 2, 3, 4)}, i64(sh(2, 2), 1, 3, 2, 4)},
		{"scatteradd ints", "ScatterAdd", ir.Attrs{"num_rows": ir.Int(2)}, []*Tensor{i64(sh(3), 1, 2, 3), i64(sh(3), 1, 1, 0)}, i64(sh(2), 3, 3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := run1(t, c.op, c.attrs, c.in...)
			if !y.Type.Equal(c.want.Type) || fmt.Sprint(y.I) != fmt.Sprint(c.want.I) {
				t.Fatalf("got %v, want %v", y, c.want)
			}
		})
	}
}

func TestRounding(t *testing.T) {
	p := math.Pow
	for _, c := range []struct {
		name string
		to   string
		x    float64
		want float64
	}{
		{"bf16 1+2^-9 rounds down", "bf16", 1 + p(2, -9), 1},
		{"bf16 tie to even (down)", "bf16", 1 + p(2, -8), 1},
		{"bf16 tie to even (up)", "bf16", 1 + 3*p(2, -8), 1 + p(2, -6)},
		{"bf16 above tie", "bf16", 1 + p(2, -8) + p(2, -12), 1 + p(2, -7)},
		{"bf16 exact", "bf16", -1.5, -1.5},
		{"bf16 overflow", "bf16", 3.4e38, math.Inf(1)},
		{"f32 1+2^-30", "f32", 1 + p(2, -30), 1},
		{"f32 third", "f32", 1.0 / 3, 0.3333333432674408}, // 11184811·2^-25
		{"f16 tie to even (down)", "f16", 1 + p(2, -11), 1},
		{"f16 tie to even (up)", "f16", 1 + 3*p(2, -11), 1 + p(2, -9)},
		{"f16 max", "f16", 65504, 65504},
		{"f16 below overflow", "f16", 65519, 65504},
		{"f16 overflow", "f16", 65520, math.Inf(1)},
		{"f16 smallest subnormal", "f16", p(2, -24), p(2, -24)},
		{"f16 half subnormal ties to 0", "f16", -p(2, -25), math.Copysign(0, -1)},
		{"f16 1.5 subnormals", "f16", 3 * p(2, -25), p(2, -23)},
		{"f16 subnormal grid", "f16", 5.2 * p(2, -24), 5 * p(2, -24)},
		{"f64 exact", "f64", 1 + p(2, -52), 1 + p(2, -52)},
		{"bf16 nan", "bf16", math.NaN(), math.NaN()},
		{"f16 -inf", "f16", math.Inf(-1), math.Inf(-1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := run1(t, "Cast", ir.Attrs{"to": ir.String(c.to)}, f64(sh(1), c.x))
			if math.Float64bits(y.F[0]) != math.Float64bits(c.want) && !(math.IsNaN(c.want) && math.IsNaN(y.F[0])) {
				t.Fatalf("Cast(%v) to %s = %v, want %v", c.x, c.to, y.F[0], c.want)
			}
		})
	}
}

func TestResultsAreRoundedToTheirDType(t *testing.T) {
	tiny := math.Pow(2, -30)
	y := run1(t, "Add", nil, f32(sh(1), 1), f32(sh(1), tiny))
	if y.F[0] != 1 {
		t.Errorf("f32 1 + 2^-30 = %v, want 1", y.F[0])
	}
	y = run1(t, "Add", nil, f64(sh(1), 1), f64(sh(1), tiny))
	if y.F[0] != 1+tiny {
		t.Errorf("f64 1 + 2^-30 = %v, want exact", y.F[0])
	}
	y = run1(t, "Div", nil, f32(sh(1), 1), f32(sh(1), 3))
	if y.F[0] != float64(float32(1.0/3)) {
		t.Errorf("f32 1/3 = %v", y.F[0])
	}
	bf := ir.T(ir.BF16, 1)
	y = run1(t, "Add", nil, FromFloats(bf, []float64{1}), FromFloats(bf, []float64{math.Pow(2, -8)}))
	if y.F[0] != 1 {
		t.Errorf("bf16 1 + 2^-8 = %v, want 1 (tie to even)", y.F[0])
	}
	// Accumulation inside one node is float64: 1 + 2^-30 - 1 in one f32 MatMul
	// keeps the 2^-30 (f32 accumulation would lose it), then rounds once.
	y = run1(t, "MatMul", nil, f32(sh(1, 3), 1, 1, 1), f32(sh(3, 1), 1, tiny, -1))
	if y.F[0] != float64(float32(tiny)) {
		t.Errorf("f32 matmul accumulates in float64: got %v, want 2^-30", y.F[0])
	}
	// Inputs are rounded to their dtype when bound, even if built by hand.
	raw := &Tensor{Type: ir.T(ir.F32, 1), F: []float64{1 + tiny}}
	y = run1(t, "Identity", nil, raw)
	if y.F[0] != 1 || raw.F[0] != 1+tiny {
		t.Errorf("bound f32 input: got %v (caller's copy %v)", y.F[0], raw.F[0])
	}
}

func TestSoftmaxRowsSumToOne(t *testing.T) {
	x := f64(sh(3, 4), 0.1, -2, 3, 0.5, 100, 90, -50, 0, -1e3, -1e3, -1e3, -1e3)
	y := run1(t, "Softmax", nil, x)
	for r := 0; r < 3; r++ {
		var s float64
		for c := 0; c < 4; c++ {
			v := y.F[r*4+c]
			if v < 0 || v > 1 || math.IsNaN(v) {
				t.Fatalf("row %d: %v", r, y.F[r*4:r*4+4])
			}
			s += v
		}
		if math.Abs(s-1) > 1e-15 {
			t.Errorf("row %d sums to %v", r, s)
		}
	}
}

func TestCrossEntropyGradIsSoftmaxMinusOneHot(t *testing.T) {
	logits := f64(sh(2, 3), 0.3, -1.2, 2.0, 0.0, 0.5, -0.5)
	labels := i64(sh(2), 2, 0)
	ones := f64(sh(2), 1, 1)
	g := run1(t, "SoftmaxCrossEntropyGrad", nil, logits, labels, ones)
	for r := 0; r < 2; r++ {
		row := logits.F[r*3 : r*3+3]
		z := math.Exp(row[0]) + math.Exp(row[1]) + math.Exp(row[2])
		for v := 0; v < 3; v++ {
			want := math.Exp(row[v]) / z
			if int64(v) == labels.I[r] {
				want--
			}
			if math.Abs(g.F[r*3+v]-want) > 1e-15 {
				t.Errorf("grad[%d][%d] = %v, want %v", r, v, g.F[r*3+v], want)
			}
		}
	}
	// Cross-entropy itself against the direct formula -log(softmax[label]).
	ce := run1(t, "SoftmaxCrossEntropy", nil, logits, labels)
	for r := 0; r < 2; r++ {
		row := logits.F[r*3 : r*3+3]
		z := math.Exp(row[0]) + math.Exp(row[1]) + math.Exp(row[2])
		want := -math.Log(math.Exp(row[labels.I[r]]) / z)
		if math.Abs(ce.F[r]-want) > 1e-15 {
			t.Errorf("ce[%d] = %v, want %v", r, ce.F[r], want)
		}
	}
}

func TestRoPE(t *testing.T) {
	c1, s1 := math.Cos(1), math.Sin(1)
	c2, s2 := math.Cos(0.01), math.Sin(0.01) // θ_1 = p·10000^(-2/4) = p/100
	// D = 2: position p rotates (x0, x1) by angle p.
	y := run1(t, "RoPE", nil, f64(sh(2, 2), 1, 2, 1, 0))
	if err := near(y, sh(2, 2), []float64{1, 2, c1, s1}, 1e-15); err != nil {
		t.Errorf("2-D rotation: %v", err)
	}
	// D = 4 at positions 0 and 1.
	y = run1(t, "RoPE", nil, f64(sh(1, 2, 4), 1, 2, 3, 4, 1, 2, 3, 4))
	want := []float64{1, 2, 3, 4, 1*c1 - 3*s1, 2*c2 - 4*s2, 3*c1 + 1*s1, 4*c2 + 2*s2}
	if err := near(y, sh(1, 2, 4), want, 1e-15); err != nil {
		t.Errorf("D=4: %v", err)
	}
	// inverse=1 rotates by -θ.
	y = run1(t, "RoPE", ir.Attrs{"inverse": ir.Int(1)}, f64(sh(2, 2), 1, 2, 1, 0))
	if err := near(y, sh(2, 2), []float64{1, 2, c1, -s1}, 1e-15); err != nil {
		t.Errorf("inverse: %v", err)
	}
	// seq_axis 1 of [batch, seq, heads, D]: every head of position s rotates by s,
	// (1, 1) → (cos s - sin s, cos s + sin s); base 100 does not matter for D = 2.
	ones := make([]float64, 2*3*2*2)
	for i := range ones {
		ones[i] = 1
	}
	y = run1(t, "RoPE", ir.Attrs{"seq_axis": ir.Int(1), "base": ir.Float(100)}, f64(sh(2, 3, 2, 2), ones...))
	want = nil
	for b := 0; b < 2; b++ {
		for s := 0; s < 3; s++ {
			for h := 0; h < 2; h++ {
				p := float64(s)
				want = append(want, math.Cos(p)-math.Sin(p), math.Cos(p)+math.Sin(p))
			}
		}
	}
	if err := near(y, sh(2, 3, 2, 2), want, 1e-15); err != nil {
		t.Errorf("seq_axis 1: %v", err)
	}
}

func TestRoPEInverseUndoesRoPE(t *testing.T) {
	b := ir.NewBuilder("rope")
	x := b.AddInput("x", ir.T(ir.F64, 2, 2, 5, 8), ir.Data, nil)
	y := b.Op("RoPE", nil, x)
	b.Output("y", y)
	b.Output("back", b.Op("RoPE", ir.Attrs{"inverse": ir.Int(1)}, y))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	v := make([]float64, 2*2*5*8)
	for i := range v {
		v[i] = math.Sin(float64(i)*0.7) * 3
	}
	out, err := Run(b.G, map[string]*Tensor{"x": f64(sh(2, 2, 5, 8), v...)})
	if err != nil {
		t.Fatal(err)
	}
	if err := near(out["back"], sh(2, 2, 5, 8), v, 1e-14); err != nil {
		t.Error(err)
	}
	// Position 0 (the first 8 values of every [5, 8] block) is unchanged.
	for blk := 0; blk < 4; blk++ {
		for i := 0; i < 8; i++ {
			if o := blk*40 + i; out["y"].F[o] != v[o] {
				t.Fatalf("position 0 changed: %v vs %v", out["y"].F[o], v[o])
			}
		}
	}
}

func TestLowRankSparseAddEqualsLinearWithMergedW(t *testing.T) {
	// B = [[1],[2]], A = [[1,2,3]], scale 0.5: B·(A·0.5) = [[0.5,1,1.5],[1,2,3]];
	// values 10, 20 at flat indices 1 and 5 give W = [[0.5,11,1.5],[1,2,23]].
	x := f64(sh(2, 3), 1, 2, 3, 4, 5, 6)
	B, A := f64(sh(2, 1), 1, 2), f64(sh(1, 3), 1, 2, 3)
	vals, idx := f64(sh(2), 10, 20), i64(sh(2), 1, 5)
	y := run1(t, "LowRankSparseAdd", ir.Attrs{"scale": ir.Float(0.5)}, x, B, A, vals, idx)
	want := []float64{27, 74, 66, 152}
	if err := near(y, sh(2, 2), want, 1e-15); err != nil {
		t.Fatal(err)
	}
	dense := run1(t, "Linear", nil, x, f64(sh(2, 3), 0.5, 11, 1.5, 1, 2, 23))
	if err := near(dense, sh(2, 2), want, 1e-15); err != nil {
		t.Fatal(err)
	}
	_, err := try1("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(0.5)}, x, B, A, vals, i64(sh(2), 1, 6))
	if err == nil || !strings.Contains(err.Error(), "node 0 (LowRankSparseAdd -> v0") || !strings.Contains(err.Error(), "= 6") {
		t.Fatalf("index out of range: got %v", err)
	}
}

func TestDataErrorsNameTheNode(t *testing.T) {
	for _, c := range []struct {
		name string
		op   string
		in   []*Tensor
		want string
	}{
		{"gather", "Gather", []*Tensor{f64(sh(2, 2), 1, 2, 3, 4), i64(sh(3), 0, 2, 1)}, "node 0 (Gather -> v0): index 2 at position 1 is out of range [0, 2)"},
		{"gather negative", "Gather", []*Tensor{f64(sh(2), 1, 2), i64(sh(1), -1)}, "index -1"},
		{"ce label", "SoftmaxCrossEntropy", []*Tensor{f64(sh(1, 3), 1, 2, 3), i64(sh(1), 3)}, "node 0 (SoftmaxCrossEntropy -> v0): label 3"},
		{"ce grad label", "SoftmaxCrossEntropyGrad", []*Tensor{f64(sh(1, 3), 1, 2, 3), i64(sh(1), -100), f64(sh(1), 1)}, "label -100"},
		{"int div by zero", "Div", []*Tensor{i64(sh(2), 1, 2), i64(sh(2), 1, 0)}, "element 1: integer division by zero"},
		{"cast nan", "Cast", []*Tensor{f64(sh(1), math.NaN())}, "cannot convert NaN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var attrs ir.Attrs
			if c.op == "Cast" {
				attrs = ir.Attrs{"to": ir.String("i32")}
			}
			_, err := try1(c.op, attrs, c.in...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	b := ir.NewBuilder("g")
	tab := b.AddInput("tab", ir.T(ir.F32, 4, 2), ir.Param, &ir.Init{Kind: ir.InitOnes})
	ids := b.AddInput("ids", ir.T(ir.I64, 2), ir.Data, nil)
	b.Scope = "model.embed_tokens"
	e := b.Op("Gather", nil, tab, b.Op("Identity", nil, ids))
	b.Output("e", e)
	st, _ := InitState(b.G)
	st["ids"] = i64(sh(2), 1, 9)
	_, err := Run(b.G, st)
	if err == nil || !strings.Contains(err.Error(), `graph "g": node 1 (Gather -> v1 (model.embed_tokens)): index 9`) {
		t.Fatalf("got %v", err)
	}
}

func TestBindingErrors(t *testing.T) {
	b := ir.NewBuilder("g")
	x := b.AddInput("x", ir.T(ir.F32, 2, 3), ir.Data, nil)
	ids := b.AddInput("ids", ir.T(ir.I64, 2), ir.Data, nil)
	b.Output("y", b.Op("Identity", nil, x))
	b.Output("ids", ids)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	good := func() map[string]*Tensor {
		return map[string]*Tensor{"x": NewTensor(ir.T(ir.F32, 2, 3)), "ids": i64(sh(2), 1, 2)}
	}
	for _, c := range []struct {
		name string
		edit func(m map[string]*Tensor)
		want string
	}{
		{"missing", func(m map[string]*Tensor) { delete(m, "x") }, `input "x" (data f32[2,3]) is not bound`},
		{"nil", func(m map[string]*Tensor) { m["ids"] = nil }, `input "ids" (data i64[2]) is not bound`},
		{"shape", func(m map[string]*Tensor) { m["x"] = NewTensor(ir.T(ir.F32, 3, 2)) }, `input "x" is bound to a f32[3,2] tensor, want f32[2,3]`},
		{"dtype", func(m map[string]*Tensor) { m["x"] = NewTensor(ir.T(ir.F64, 2, 3)) }, `want f32[2,3]`},
		{"length", func(m map[string]*Tensor) { m["x"] = &Tensor{Type: ir.T(ir.F32, 2, 3), F: make([]float64, 5)} }, "holds 5 float values, want 6"},
		{"ints as floats", func(m map[string]*Tensor) { m["ids"] = FromFloats(ir.T(ir.I64, 2), []float64{1, 2}) }, "use FromInts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := good()
			c.edit(m)
			_, err := Run(b.G, m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// Extra entries are ignored; the good binding runs.
	m := good()
	m["unused"] = NewTensor(ir.T(ir.F32))
	if _, err := Run(b.G, m); err != nil {
		t.Fatal(err)
	}
	// An unverifiable graph is rejected before anything runs.
	bad := b.G.Clone()
	bad.Nodes[0].Outputs[0].Type = ir.T(ir.F32, 6)
	if _, err := Run(bad, good()); err == nil || !strings.Contains(err.Error(), "node 0") {
		t.Fatalf("unverified graph: got %v", err)
	}
}

func TestRunAllAndIsolation(t *testing.T) {
	b := ir.NewBuilder("g")
	x := b.AddInput("x", ir.T(ir.F64, 2), ir.Data, nil)
	h := b.Op("Exp", nil, x)
	y := b.Add(h, x)
	b.Output("y", y)
	b.Output("x_again", x)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	in := f64(sh(2), 0, 1)
	out, vals, err := RunAll(b.G, map[string]*Tensor{"x": in})
	if err != nil {
		t.Fatal(err)
	}
	if err := near(vals[h], sh(2), []float64{1, math.E}, 1e-15); err != nil {
		t.Errorf("intermediate %s: %v", h, err)
	}
	if err := near(out["y"], sh(2), []float64{1, math.E + 1}, 1e-15); err != nil {
		t.Errorf("output: %v", err)
	}
	if len(vals) != 3 || vals[x] == nil {
		t.Errorf("values should hold the input and both node results, got %d", len(vals))
	}
	out["x_again"].F[0] = 42
	if in.F[0] != 0 || vals[x].F[0] != 0 {
		t.Error("an output aliases the caller's input or the value map")
	}
}

func TestInitState(t *testing.T) {
	b := ir.NewBuilder("g")
	b.AddInput("w", ir.T(ir.F32, 3, 4), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.02, Seed: 11})
	b.AddInput("h", ir.T(ir.BF16, 5), ir.Param, &ir.Init{Kind: ir.InitUniform, Low: -1, High: 1, Seed: 3})
	b.AddInput("n", ir.T(ir.F64, 2), ir.Param, &ir.Init{Kind: ir.InitOnes})
	b.AddInput("idx", ir.T(ir.I64, 4), ir.Buffer, &ir.Init{Kind: ir.InitSupport, Total: 12, Seed: 5})
	b.AddInput("i32", ir.T(ir.I32, 2), ir.Buffer, &ir.Init{Kind: ir.InitExplicit, Data: []float64{7, -2}})
	b.AddInput("ids", ir.T(ir.I64, 2), ir.Data, nil)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	st, err := InitState(b.G)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 5 || st["ids"] != nil {
		t.Fatalf("state holds %d tensors (data inputs must not be materialised)", len(st))
	}
	w64 := make([]float64, 12)
	ir.Fill(&ir.Init{Kind: ir.InitNormal, Std: 0.02, Seed: 11}, w64)
	for i, v := range st["w"].F {
		if v != float64(float32(w64[i])) {
			t.Fatalf("w[%d] = %v, want the f32 rounding of %v", i, v, w64[i])
		}
	}
	for _, v := range st["h"].F {
		if v != roundBF16(v) || v < -1 || v > 1 {
			t.Fatalf("bf16 value %v is not representable or out of range", v)
		}
	}
	sup, _ := ir.Support(5, 12, 4)
	if fmt.Sprint(st["idx"].I) != fmt.Sprint(sup) || fmt.Sprint(st["n"].F) != "[1 1]" || fmt.Sprint(st["i32"].I) != "[7 -2]" {
		t.Fatalf("got idx %v n %v i32 %v", st["idx"].I, st["n"].F, st["i32"].I)
	}
	again, _ := InitState(b.G)
	if fmt.Sprint(again["w"].F) != fmt.Sprint(st["w"].F) {
		t.Fatal("InitState is not deterministic")
	}
}

func TestTensorHelpers(t *testing.T) {
	x := FromFloats(ir.T(ir.F32, 2), []float64{0.1, 2})
	if x.F[0] != float64(float32(0.1)) {
		t.Errorf("FromFloats does not round to f32: %v", x.F[0])
	}
	c := x.Clone()
	c.F[1] = 5
	c.Type.Shape[0] = 9
	if x.F[1] != 2 || x.Type.Shape[0] != 2 {
		t.Error("Clone shares storage")
	}
	if z := NewTensor(ir.T(ir.I32, 2, 2)); len(z.I) != 4 || z.F != nil {
		t.Errorf("NewTensor i32: %+v", z)
	}
	if f := FromInts(ir.T(ir.F64, 2), []int64{3, -1}); fmt.Sprint(f.F) != "[3 -1]" {
		t.Errorf("FromInts to float: %v", f.F)
	}
	if w := FromInts(ir.T(ir.I32, 1), []int64{1 << 31}); w.I[0] != math.MinInt32 {
		t.Errorf("FromInts i32 wrap: %v", w.I)
	}
}
