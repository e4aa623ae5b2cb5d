package lower

import (
	"math"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Row reductions of softmax and cross-entropy. A contiguous f32 row is
// processed in vectors of the target's width W: the maximum is exact in any
// order, and the sum of exponentials is accumulated in f64 per lane (element
// l goes to lane l mod W), the lanes added in lane order and then the tail in
// element order. The order depends only on W and the row, never on the
// thread count, so results stay bit-identical from run to run. Other rows
// (strided, or not f32) use scalar loops in element order.

// vectorRow reports whether a row of n elements of type t with the given
// stride takes the vector path, and the vector type.
func (k *kfn) vectorRow(t llvm.Type, n, stride int64) (llvm.Type, int64, bool) {
	w := int64(k.e.arch.VectorWidth)
	if stride != 1 || (t.Kind() != llvm.FloatTypeKind && t.Kind() != llvm.BFloatTypeKind) || w < 2 || n < w {
		return llvm.Type{}, 0, false
	}
	return llvm.VectorType(t, int(w)), w, true
}

// loadVec loads a vector of type vt from p (element alignment); a vector
// of bf16 (storage) arrives widened to f32.
func (k *kfn) loadVec(vt llvm.Type, p llvm.Value) llvm.Value {
	if k.e.IsBF16(vt) {
		return k.Load(vt, p)
	}
	v := k.B.Load(vt, p, "")
	v.SetAlignment(k.e.SizeOf(vt.ElementType()))
	return v
}

// storeVec stores vector v to p (element alignment).
func (k *kfn) storeVec(v, p llvm.Value) {
	k.B.Store(v, p).SetAlignment(k.e.SizeOf(v.Type().ElementType()))
}

// lane extracts lane i of vector v.
func (k *kfn) lane(v llvm.Value, i int) llvm.Value {
	return k.B.ExtractElement(v, llvm.ConstInt(k.e.I32, int64(i)), "")
}

// rowMax is max over l < n of row[l·stride] (NaN-propagating, +0 above −0,
// as the interpreter's math.Max), from −Inf.
func (k *kfn) rowMax(t llvm.Type, n int64, row llvm.Value, stride int64) (llvm.Value, error) {
	maxOf := func(ty llvm.Type, a, b llvm.Value) (llvm.Value, error) {
		return k.callIntrinsic("llvm.maximum", ty, a, b)
	}
	var ferr error
	st, t := t, k.e.ComputeOf(t) // st: the row's storage type (bf16 rows compute in f32)
	m := k.Variable(t, llvm.ConstFloat(t, math.Inf(-1)))
	from := int64(0)
	if svt, w, ok := k.vectorRow(st, n, stride); ok {
		vt := k.e.ComputeOf(svt)
		acc := k.Variable(vt, k.Splat(vt, math.Inf(-1)))
		k.LoopN(n/w, func(c llvm.Value) {
			v, err := maxOf(vt, k.Load(vt, acc), k.loadVec(svt, k.At(st, row, k.Mulc(c, w))))
			if err != nil {
				ferr = err
				return
			}
			k.Store(v, vt, acc)
		})
		a := k.Load(vt, acc)
		r := k.lane(a, 0)
		for i := 1; i < int(w); i++ {
			var err error
			if r, err = maxOf(t, r, k.lane(a, i)); err != nil {
				return r, err
			}
		}
		k.Store(r, t, m)
		from = n / w * w
	}
	k.Loop(k.C64(from), k.C64(n), func(l llvm.Value) {
		v, err := maxOf(t, k.Load(t, m), k.LoadAt(st, row, k.Mulc(l, stride)))
		if err != nil {
			ferr = err
			return
		}
		k.Store(v, t, m)
	})
	return k.Load(t, m), ferr
}

// rowExpSum computes e_l = exp(row[l·stride] − m) for l < n, stores e_l to
// out[l·stride] unless out is the zero Value, and returns Σ e_l in f64.
func (k *kfn) rowExpSum(t, ot llvm.Type, n int64, row, out llvm.Value, stride int64, m llvm.Value) (llvm.Value, error) {
	f64 := k.e.F64
	var ferr error
	sum := k.Variable(f64, llvm.ConstFloat(f64, 0))
	from := int64(0)
	if vt, w, ok := k.vectorRow(t, n, stride); ok {
		dt := llvm.VectorType(f64, int(w))
		ovt := llvm.VectorType(ot, int(w))
		acc := k.Variable(dt, k.Splat(dt, 0))
		mv := k.B.VectorSplat(int(w), m, "")
		k.LoopN(n/w, func(c llvm.Value) {
			l := k.Mulc(c, w)
			e := k.expf(k.B.FSub(k.loadVec(vt, k.At(t, row, l)), mv, ""))
			if !out.IsNil() {
				k.Store(e, ovt, k.At(ot, out, l)) // a bf16 out rounds here
			}
			k.Store(k.B.FAdd(k.Load(dt, acc), k.B.FPExt(e, dt, ""), ""), dt, acc)
		})
		a := k.Load(dt, acc)
		s := k.lane(a, 0)
		for i := 1; i < int(w); i++ {
			s = k.B.FAdd(s, k.lane(a, i), "")
		}
		k.Store(s, f64, sum)
		from = n / w * w
	}
	k.Loop(k.C64(from), k.C64(n), func(l llvm.Value) {
		off := k.Mulc(l, stride)
		e, err := k.exp(k.B.FSub(k.LoadAt(t, row, off), m, ""))
		if err != nil {
			ferr = err
			return
		}
		if !out.IsNil() {
			k.StoreAt(e, ot, out, off)
		}
		k.Store(k.B.FAdd(k.Load(f64, sum), k.Widen(e), ""), f64, sum)
	})
	return k.Load(f64, sum), ferr
}
