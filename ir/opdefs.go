package ir

import "fmt"

// The op set. It is small on purpose: RMSNorm, SwiGLU, attention and AdamW are
// compositions of these; the fusion pass groups element-wise chains back into
// single kernels. Semantics are written next to each definition; the reference
// interpreter (package ir/interp) is their executable form.

// Element-wise unary ops: y = f(x), same type as x.
var unaryOps = []struct{ name, doc string }{
	{"Identity", "y = x"},
	{"Neg", "y = -x"},
	{"Exp", "y = exp(x)"},
	{"Log", "y = ln(x)"},
	{"Sqrt", "y = √x"},
	{"Rsqrt", "y = 1/√x"},
	{"Recip", "y = 1/x"},
	{"Sigmoid", "y = 1/(1+exp(-x))"},
	{"Silu", "y = x·sigmoid(x)"},
	{"Quant8Signed", "y = index (0…255, as a float) of the signed 8-bit dynamic code value nearest to x (ir.QuantizeDynamic)"},
	{"Quant8Unsigned", "y = index (0…255, as a float) of the unsigned 8-bit dynamic code value nearest to x (ir.QuantizeDynamic)"},
	{"Dequant8Signed", "y = signed 8-bit dynamic code value number x (x truncated, clamped to 0…255; ir.DequantizeDynamic)"},
	{"Dequant8Unsigned", "y = unsigned 8-bit dynamic code value number x (x truncated, clamped to 0…255; ir.DequantizeDynamic)"},
}

// Element-wise binary ops with NumPy broadcasting; both inputs have one dtype.
var binaryOps = []struct{ name, doc string }{
	{"Add", "z = x + y"},
	{"Sub", "z = x - y"},
	{"Mul", "z = x · y"},
	{"Div", "z = x / y"},
	{"Pow", "z = x^y"},
	{"Max", "z = max(x, y)"},
	{"Min", "z = min(x, y)"},
	{"Greater", "z = 1 if x > y else 0 (in the inputs' dtype)"},
}

// UnaryOps and BinaryOps list the element-wise op names, for passes and codegen.
var UnaryOps, BinaryOps []string

// outDTypeDoc says what a matrix product's out_dtype attribute means.
const outDTypeDoc = "the f32 sums rounded once to it; bf16 operands with an f32 out_dtype is bf16-mixed's product"

// productDType is a matrix product's result dtype: its out_dtype attribute
// (a float dtype) when given, else its first operand's.
func productDType(operand DType, a Attrs) (DType, error) {
	s := a.GetString("out_dtype", "")
	if s == "" {
		return operand, nil
	}
	dt, err := ParseDType(s)
	if err != nil {
		return InvalidDType, fmt.Errorf("out_dtype: %w", err)
	}
	if !dt.IsFloat() {
		return InvalidDType, fmt.Errorf("out_dtype %v is not floating point", dt)
	}
	return dt, nil
}

func init() {
	for _, u := range unaryOps {
		UnaryOps = append(UnaryOps, u.name)
		Register(&OpDef{Name: u.name, Doc: u.doc, Category: CatUnary, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
			Infer: func(in []Type, _ Attrs) ([]Type, error) { return one(in[0]), nil }})
	}
	for _, b := range binaryOps {
		BinaryOps = append(BinaryOps, b.name)
		Register(&OpDef{Name: b.name, Doc: b.doc, Category: CatBinary, MinInputs: 2, MaxInputs: 2, NumOutputs: 1,
			Infer: func(in []Type, _ Attrs) ([]Type, error) {
				if err := sameDType("", in); err != nil {
					return nil, err
				}
				s, err := Broadcast(in[0].Shape, in[1].Shape)
				if err != nil {
					return nil, err
				}
				return one(Type{in[0].DType, s}), nil
			}})
	}

	Register(&OpDef{Name: "Const", Doc: "y = value everywhere, with the given dtype and shape",
		Category: CatOther, MinInputs: 0, MaxInputs: 0, NumOutputs: 1,
		Attrs: []AttrSpec{{"value", AttrFloat, true}, {"dtype", AttrString, true}, {"shape", AttrInts, false}},
		Infer: func(_ []Type, a Attrs) ([]Type, error) {
			dt, err := ParseDType(a.GetString("dtype", ""))
			if err != nil {
				return nil, err
			}
			s, err := dims(a.GetInts("shape"))
			if err != nil {
				return nil, err
			}
			return one(Type{dt, s}), nil
		}})

	Register(&OpDef{Name: "Cast", Doc: "y = x converted to dtype `to` (round to nearest even; float→int truncates)",
		Category: CatUnary, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"to", AttrString, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			dt, err := ParseDType(a.GetString("to", ""))
			if err != nil {
				return nil, err
			}
			return one(Type{dt, in[0].Shape}), nil
		}})

	Register(&OpDef{Name: "MatMul",
		Doc: "c[..., m, n] = Σ_k a[..., m, k]·b[..., k, n]; transpose_a/transpose_b swap the last two axes of a/b first; batch axes broadcast; " +
			"out_dtype, when given, is c's dtype (" + outDTypeDoc + ")",
		Category: CatOther, MinInputs: 2, MaxInputs: 2, NumOutputs: 1,
		Attrs: []AttrSpec{{"transpose_a", AttrInt, false}, {"transpose_b", AttrInt, false}, {"out_dtype", AttrString, false}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			if err := sameDType("", in); err != nil {
				return nil, err
			}
			if err := needFloat(0, in[0]); err != nil {
				return nil, err
			}
			for i := range in {
				if err := needRank(i, in[i], 2); err != nil {
					return nil, err
				}
			}
			m, k := MatDims(in[0].Shape, a.GetInt("transpose_a", 0) != 0)
			k2, n := MatDims(in[1].Shape, a.GetInt("transpose_b", 0) != 0)
			if k != k2 {
				return nil, fmt.Errorf("inner dimensions differ: %v (k=%d) and %v (k=%d)", in[0], k, in[1], k2)
			}
			batch, err := Broadcast(in[0].Shape[:in[0].Rank()-2], in[1].Shape[:in[1].Rank()-2])
			if err != nil {
				return nil, fmt.Errorf("batch axes: %w", err)
			}
			dt, err := productDType(in[0].DType, a)
			if err != nil {
				return nil, err
			}
			return one(Type{dt, append(batch, m, n)}), nil
		}})

	Register(&OpDef{Name: "Linear", Doc: "y[..., o] = Σ_i x[..., i]·w[o, i]  (y = x·wᵀ, no bias); out_dtype, when given, is y's dtype (" + outDTypeDoc + ")",
		Category: CatOther, MinInputs: 2, MaxInputs: 2, NumOutputs: 1,
		Attrs: []AttrSpec{{"out_dtype", AttrString, false}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			if err := sameDType("", in); err != nil {
				return nil, err
			}
			if err := needFloat(0, in[0]); err != nil {
				return nil, err
			}
			x, w := in[0], in[1]
			if x.Rank() < 1 || w.Rank() != 2 {
				return nil, fmt.Errorf("want x[..., in] and w[out, in], got %v and %v", x, w)
			}
			if x.Shape[x.Rank()-1] != w.Shape[1] {
				return nil, fmt.Errorf("x has %d features but w is %v (w[out, in])", x.Shape[x.Rank()-1], w)
			}
			dt, err := productDType(x.DType, a)
			if err != nil {
				return nil, err
			}
			return one(Type{dt, append(append([]int(nil), x.Shape[:x.Rank()-1]...), w.Shape[0])}), nil
		}})

	Register(&OpDef{Name: "LowRankSparseAdd",
		Doc: "SLTrain's linear layer: y = x·Wᵀ with W[out, in] = B[out, r]·(A[r, in]·scale) + S, " +
			"S zero except S.flat[index[j]] = values[j]; out_dtype, when given, is y's dtype (" + outDTypeDoc + "). " +
			"Mixed form (bf16-mixed): x bf16 with B, A, values f32: B and A·scale are rounded to bf16 for their product, " +
			"W = that f32 product + S is rounded to bf16 for x·Wᵀ",
		Category: CatOther, MinInputs: 5, MaxInputs: 5, NumOutputs: 1,
		Attrs: []AttrSpec{{"scale", AttrFloat, true}, {"out_dtype", AttrString, false}},
		Infer: func(in []Type, attrs Attrs) ([]Type, error) {
			x, b, a, v, idx := in[0], in[1], in[2], in[3], in[4]
			if err := sameDType("", in[1:4]); err != nil {
				return nil, err
			}
			if x.DType != b.DType && !(x.DType == BF16 && b.DType == F32) {
				return nil, fmt.Errorf("x is %v but B is %v (no implicit casts; only bf16 x with f32 factors, the mixed form)", x.DType, b.DType)
			}
			if err := needFloat(0, x); err != nil {
				return nil, err
			}
			if err := needInt(4, idx); err != nil {
				return nil, err
			}
			if x.Rank() < 1 || b.Rank() != 2 || a.Rank() != 2 || v.Rank() != 1 || idx.Rank() != 1 {
				return nil, fmt.Errorf("want x[..., in], B[out, r], A[r, in], values[nnz], index[nnz]; got %v, %v, %v, %v, %v", x, b, a, v, idx)
			}
			out, r, in2 := b.Shape[0], b.Shape[1], a.Shape[1]
			if a.Shape[0] != r {
				return nil, fmt.Errorf("B is %v but A is %v: ranks differ", b, a)
			}
			if x.Shape[x.Rank()-1] != in2 {
				return nil, fmt.Errorf("x has %d features but A is %v (A[r, in])", x.Shape[x.Rank()-1], a)
			}
			if v.Shape[0] != idx.Shape[0] {
				return nil, fmt.Errorf("values has %d entries but index has %d", v.Shape[0], idx.Shape[0])
			}
			if int64(v.Shape[0]) > int64(out)*int64(in2) {
				return nil, fmt.Errorf("%d sparse values do not fit in a %dx%d weight", v.Shape[0], out, in2)
			}
			dt, err := productDType(x.DType, attrs)
			if err != nil {
				return nil, err
			}
			return one(Type{dt, append(append([]int(nil), x.Shape[:x.Rank()-1]...), out)}), nil
		}})

	for _, r := range []struct{ name, doc string }{
		{"ReduceSum", "y = Σ x over axes (keepdims keeps them as size 1)"},
		{"ReduceMean", "y = mean of x over axes (keepdims keeps them as size 1)"},
	} {
		Register(&OpDef{Name: r.name, Doc: r.doc, Category: CatReduce, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
			Attrs: []AttrSpec{{"axes", AttrInts, true}, {"keepdims", AttrInt, false}},
			Infer: func(in []Type, a Attrs) ([]Type, error) {
				if err := needFloat(0, in[0]); err != nil {
					return nil, err
				}
				axes, err := ReduceAxes(a.GetInts("axes"), in[0].Rank())
				if err != nil {
					return nil, err
				}
				return one(Type{in[0].DType, ReducedShape(in[0].Shape, axes, a.GetInt("keepdims", 0) != 0)}), nil
			}})
	}

	Register(&OpDef{Name: "Reshape", Doc: "y = x with a new shape of the same element count (one -1 is inferred)",
		Category: CatShape, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"shape", AttrInts, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			s, err := ResolveReshape(in[0].Shape, a.GetInts("shape"))
			if err != nil {
				return nil, err
			}
			return one(Type{in[0].DType, s}), nil
		}})

	Register(&OpDef{Name: "Expand", Doc: "y = x broadcast (NumPy rules) to shape",
		Category: CatShape, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"shape", AttrInts, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			s, err := dims(a.GetInts("shape"))
			if err != nil {
				return nil, err
			}
			b, err := Broadcast(in[0].Shape, s)
			if err != nil || !ShapeEqual(b, s) {
				return nil, fmt.Errorf("cannot expand %v to %v", in[0], s)
			}
			return one(Type{in[0].DType, s}), nil
		}})

	Register(&OpDef{Name: "Transpose", Doc: "y[i_perm[0], …] = x[i_0, …]: y.shape[k] = x.shape[perm[k]]",
		Category: CatShape, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"perm", AttrInts, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			perm := a.GetInts("perm")
			if err := checkPerm(perm, in[0].Rank()); err != nil {
				return nil, err
			}
			s := make([]int, len(perm))
			for k, p := range perm {
				s[k] = in[0].Shape[p]
			}
			return one(Type{in[0].DType, nilIfEmpty(s)}), nil
		}})

	Register(&OpDef{Name: "Slice", Doc: "y = x[..., start:end, ...] along axis (step 1)",
		Category: CatShape, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"axis", AttrInt, true}, {"start", AttrInt, true}, {"end", AttrInt, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			ax, err := NormAxis(a.GetInt("axis", 0), in[0].Rank())
			if err != nil {
				return nil, err
			}
			st, en := a.GetInt("start", 0), a.GetInt("end", 0)
			if st < 0 || en < st || en > int64(in[0].Shape[ax]) {
				return nil, fmt.Errorf("slice [%d:%d] out of range for axis %d of %v", st, en, ax, in[0])
			}
			s := append([]int(nil), in[0].Shape...)
			s[ax] = int(en - st)
			return one(Type{in[0].DType, s}), nil
		}})

	Register(&OpDef{Name: "Concat", Doc: "y = inputs joined along axis",
		Category: CatShape, MinInputs: 1, MaxInputs: -1, NumOutputs: 1,
		Attrs: []AttrSpec{{"axis", AttrInt, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			if err := sameDType("", in); err != nil {
				return nil, err
			}
			ax, err := NormAxis(a.GetInt("axis", 0), in[0].Rank())
			if err != nil {
				return nil, err
			}
			s := append([]int(nil), in[0].Shape...)
			for i := 1; i < len(in); i++ {
				if in[i].Rank() != len(s) {
					return nil, fmt.Errorf("input %d is %v but input 0 is %v", i, in[i], in[0])
				}
				for k := range s {
					if k != ax && in[i].Shape[k] != s[k] {
						return nil, fmt.Errorf("input %d is %v but input 0 is %v (only axis %d may differ)", i, in[i], in[0], ax)
					}
				}
				s[ax] += in[i].Shape[ax]
			}
			return one(Type{in[0].DType, s}), nil
		}})

	Register(&OpDef{Name: "Gather", Doc: "y[j..., :] = table[indices[j...], :] (embedding lookup along axis 0)",
		Category: CatOther, MinInputs: 2, MaxInputs: 2, NumOutputs: 1,
		Infer: func(in []Type, _ Attrs) ([]Type, error) {
			if err := needRank(0, in[0], 1); err != nil {
				return nil, err
			}
			if err := needInt(1, in[1]); err != nil {
				return nil, err
			}
			s := append(append([]int(nil), in[1].Shape...), in[0].Shape[1:]...)
			return one(Type{in[0].DType, nilIfEmpty(s)}), nil
		}})

	Register(&OpDef{Name: "ScatterAdd", Doc: "y = zeros[num_rows, ...]; y[indices[j...], :] += updates[j..., :] (the adjoint of Gather)",
		Category: CatOther, MinInputs: 2, MaxInputs: 2, NumOutputs: 1,
		Attrs: []AttrSpec{{"num_rows", AttrInt, true}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			u, idx := in[0], in[1]
			if err := needInt(1, idx); err != nil {
				return nil, err
			}
			if u.Rank() < idx.Rank() || !ShapeEqual(u.Shape[:idx.Rank()], idx.Shape) {
				return nil, fmt.Errorf("updates %v must start with the index shape %v", u, idx)
			}
			rows := a.GetInt("num_rows", 0)
			if rows < 1 {
				return nil, fmt.Errorf("num_rows must be >= 1, got %d", rows)
			}
			return one(Type{u.DType, append([]int{int(rows)}, u.Shape[idx.Rank():]...)}), nil
		}})

	Register(&OpDef{Name: "AbsMaxLast", Doc: "y[..., 0] = max_j |x[..., j]| over the last axis (kept as size 1); NaNs are skipped, an empty or all-NaN row gives 0: block-wise 8-bit quantization's absmax",
		Category: CatOther, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			if err := needFloat(0, in[0]); err != nil {
				return nil, err
			}
			if in[0].Rank() < 1 {
				return nil, fmt.Errorf("AbsMaxLast needs rank >= 1, got %v", in[0])
			}
			s := append([]int(nil), in[0].Shape...)
			s[len(s)-1] = 1
			return one(Type{in[0].DType, s}), nil
		}})

	Register(&OpDef{Name: "Softmax", Doc: "y = exp(x - max x) / Σ exp(x - max x) along axis",
		Category: CatOther, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"axis", AttrInt, false}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			if err := needFloat(0, in[0]); err != nil {
				return nil, err
			}
			if _, err := NormAxis(a.GetInt("axis", -1), in[0].Rank()); err != nil {
				return nil, err
			}
			return one(in[0]), nil
		}})

	Register(&OpDef{Name: "SoftmaxCrossEntropy",
		Doc:      "loss[j...] = logsumexp(logits[j..., :]) - logits[j..., labels[j...]]",
		Category: CatOther, MinInputs: 2, MaxInputs: 2, NumOutputs: 1,
		Infer: func(in []Type, _ Attrs) ([]Type, error) {
			if err := checkCE(in[0], in[1]); err != nil {
				return nil, err
			}
			return one(Type{in[0].DType, nilIfEmpty(append([]int(nil), in[1].Shape...))}), nil
		}})

	Register(&OpDef{Name: "SoftmaxCrossEntropyGrad",
		Doc: "dlogits[j..., v] = (softmax(logits[j..., :])[v] - [v = labels[j...]])·dloss[j...]; dlogits has dloss's dtype, " +
			"which is logits' or, for bf16 logits, f32 (bf16-mixed reads its saved bf16 logits)",
		Category: CatOther, MinInputs: 3, MaxInputs: 3, NumOutputs: 1,
		Infer: func(in []Type, _ Attrs) ([]Type, error) {
			if err := checkCE(in[0], in[1]); err != nil {
				return nil, err
			}
			dt := in[2].DType
			if dt != in[0].DType && !(in[0].DType == BF16 && dt == F32) {
				dt = in[0].DType
			}
			if !in[2].Equal(Type{dt, nilIfEmpty(in[1].Shape)}) {
				return nil, fmt.Errorf("dloss is %v, want %v", in[2], Type{in[0].DType, in[1].Shape})
			}
			return one(Type{dt, in[0].Shape}), nil
		}})

	Register(&OpDef{Name: "RoPE",
		Doc: "rotary embedding (HF rotate_half): with h = D/2, p the position along seq_axis, θ_i = p·base^(-2i/D): " +
			"y[i] = x[i]·cos θ_i - x[i+h]·sin θ_i, y[i+h] = x[i+h]·cos θ_i + x[i]·sin θ_i; inverse=1 rotates by -θ (the gradient)",
		Category: CatOther, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"base", AttrFloat, false}, {"inverse", AttrInt, false}, {"seq_axis", AttrInt, false}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			x := in[0]
			if err := needFloat(0, x); err != nil {
				return nil, err
			}
			if err := needRank(0, x, 2); err != nil {
				return nil, err
			}
			ax, err := NormAxis(a.GetInt("seq_axis", -2), x.Rank())
			if err != nil {
				return nil, err
			}
			if ax == x.Rank()-1 {
				return nil, fmt.Errorf("seq_axis must not be the last (feature) axis")
			}
			if x.Shape[x.Rank()-1]%2 != 0 {
				return nil, fmt.Errorf("last axis must be even, got %v", x)
			}
			return one(x), nil
		}})

	Register(&OpDef{Name: "CausalMask",
		Doc:      "y[..., i, j] = x[..., i, j] if j <= i else fill (fill \"neg_inf\" by default, or \"zero\" for the gradient)",
		Category: CatOther, MinInputs: 1, MaxInputs: 1, NumOutputs: 1,
		Attrs: []AttrSpec{{"fill", AttrString, false}},
		Infer: func(in []Type, a Attrs) ([]Type, error) {
			x := in[0]
			if err := needFloat(0, x); err != nil {
				return nil, err
			}
			if err := needRank(0, x, 2); err != nil {
				return nil, err
			}
			if f := a.GetString("fill", "neg_inf"); f != "neg_inf" && f != "zero" {
				return nil, fmt.Errorf("fill must be \"neg_inf\" or \"zero\", got %q", f)
			}
			return one(x), nil
		}})
}

func checkCE(logits, labels Type) error {
	if err := needFloat(0, logits); err != nil {
		return err
	}
	if err := needInt(1, labels); err != nil {
		return err
	}
	if logits.Rank() != labels.Rank()+1 || !ShapeEqual(logits.Shape[:labels.Rank()], labels.Shape) {
		return fmt.Errorf("want logits[..., V] and labels[...], got %v and %v", logits, labels)
	}
	return nil
}

// MatDims returns the (rows, cols) of the last two axes of shape, transposed if t.
func MatDims(shape []int, t bool) (int, int) {
	r, c := shape[len(shape)-2], shape[len(shape)-1]
	if t {
		return c, r
	}
	return r, c
}

// ReduceAxes normalises and validates reduction axes; the result is sorted.
func ReduceAxes(axes []int64, rank int) ([]int, error) {
	if len(axes) == 0 {
		return nil, fmt.Errorf("axes must not be empty")
	}
	seen := make([]bool, rank)
	for _, a := range axes {
		ax, err := NormAxis(a, rank)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, fmt.Errorf("axis %d repeated", ax)
		}
		seen[ax] = true
	}
	var out []int
	for i, s := range seen {
		if s {
			out = append(out, i)
		}
	}
	return out, nil
}

// ReducedShape is shape with the (sorted, normalised) axes removed or set to 1.
func ReducedShape(shape []int, axes []int, keep bool) []int {
	var out []int
	j := 0
	for i, d := range shape {
		if j < len(axes) && axes[j] == i {
			j++
			if keep {
				out = append(out, 1)
			}
			continue
		}
		out = append(out, d)
	}
	return out
}

// ResolveReshape resolves a target shape with at most one -1 against the element
// count of from.
func ResolveReshape(from []int, to []int64) ([]int, error) {
	var n int64 = 1
	for _, d := range from {
		n *= int64(d)
	}
	out := make([]int, len(to))
	infer := -1
	var known int64 = 1
	for i, d := range to {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			return nil, fmt.Errorf("bad target shape %v", to)
		default:
			out[i] = int(d)
			known *= d
		}
	}
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", from, to)
		}
		out[infer] = int(n / known)
		known = n
	}
	if known != n {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", from, n, to)
	}
	return nilIfEmpty(out), nil
}

func checkPerm(perm []int64, rank int) error {
	if len(perm) != rank {
		return fmt.Errorf("perm %v has %d entries for rank %d", perm, len(perm), rank)
	}
	seen := make([]bool, rank)
	for _, p := range perm {
		if p < 0 || int(p) >= rank || seen[p] {
			return fmt.Errorf("perm %v is not a permutation of 0..%d", perm, rank-1)
		}
		seen[p] = true
	}
	return nil
}

func dims(s []int64) ([]int, error) {
	out := make([]int, len(s))
	for i, d := range s {
		if d < 0 {
			return nil, fmt.Errorf("negative dimension in %v", s)
		}
		out[i] = int(d)
	}
	return nilIfEmpty(out), nil
}

func nilIfEmpty(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	return s
}
