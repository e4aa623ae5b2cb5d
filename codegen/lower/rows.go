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
	if k.e.isBF16(vt) {
		return k.load(vt, p)
	}
	v := k.b.Load(vt, p, "")
	v.SetAlignment(k.e.sizeOf(vt.ElementType()))
	return v
}

// storeVec stores vector v to p (element alignment).
func (k *kfn) storeVec(v, p llvm.Value) {
	k.b.Store(v, p).SetAlignment(k.e.sizeOf(v.Type().ElementType()))
}

// lane extracts lane i of vector v.
func (k *kfn) lane(v llvm.Value, i int) llvm.Value {
	return k.b.ExtractElement(v, llvm.ConstInt(k.e.i32, int64(i)), "")
}

// rowMax is max over l < n of row[l·stride] (NaN-propagating, +0 above −0,
// as the interpreter's math.Max), from −Inf.
func (k *kfn) rowMax(t llvm.Type, n int64, row llvm.Value, stride int64) (llvm.Value, error) {
	maxOf := func(ty llvm.Type, a, b llvm.Value) (llvm.Value, error) {
		return k.callIntrinsic("llvm.maximum", ty, a, b)
	}
	var ferr error
	st, t := t, k.e.computeOf(t) // st: the row's storage type (bf16 rows compute in f32)
	m := k.variable(t, llvm.ConstFloat(t, math.Inf(-1)))
	from := int64(0)
	if svt, w, ok := k.vectorRow(st, n, stride); ok {
		vt := k.e.computeOf(svt)
		acc := k.variable(vt, k.splat(vt, math.Inf(-1)))
		k.loopN(n/w, func(c llvm.Value) {
			v, err := maxOf(vt, k.load(vt, acc), k.loadVec(svt, k.at(st, row, k.mulc(c, w))))
			if err != nil {
				ferr = err
				return
			}
			k.store(v, vt, acc)
		})
		a := k.load(vt, acc)
		r := k.lane(a, 0)
		for i := 1; i < int(w); i++ {
			var err error
			if r, err = maxOf(t, r, k.lane(a, i)); err != nil {
				return r, err
			}
		}
		k.store(r, t, m)
		from = n / w * w
	}
	k.loop(k.c64(from), k.c64(n), func(l llvm.Value) {
		v, err := maxOf(t, k.load(t, m), k.loadAt(st, row, k.mulc(l, stride)))
		if err != nil {
			ferr = err
			return
		}
		k.store(v, t, m)
	})
	return k.load(t, m), ferr
}

// rowExpSum computes e_l = exp(row[l·stride] − m) for l < n, stores e_l to
// out[l·stride] unless out is the zero Value, and returns Σ e_l in f64.
func (k *kfn) rowExpSum(t, ot llvm.Type, n int64, row, out llvm.Value, stride int64, m llvm.Value) (llvm.Value, error) {
	f64 := k.e.f64
	var ferr error
	sum := k.variable(f64, llvm.ConstFloat(f64, 0))
	from := int64(0)
	if vt, w, ok := k.vectorRow(t, n, stride); ok {
		dt := llvm.VectorType(f64, int(w))
		ovt := llvm.VectorType(ot, int(w))
		acc := k.variable(dt, k.splat(dt, 0))
		mv := k.b.VectorSplat(int(w), m, "")
		k.loopN(n/w, func(c llvm.Value) {
			l := k.mulc(c, w)
			e := k.expf(k.b.FSub(k.loadVec(vt, k.at(t, row, l)), mv, ""))
			if !out.IsNil() {
				k.store(e, ovt, k.at(ot, out, l)) // a bf16 out rounds here
			}
			k.store(k.b.FAdd(k.load(dt, acc), k.b.FPExt(e, dt, ""), ""), dt, acc)
		})
		a := k.load(dt, acc)
		s := k.lane(a, 0)
		for i := 1; i < int(w); i++ {
			s = k.b.FAdd(s, k.lane(a, i), "")
		}
		k.store(s, f64, sum)
		from = n / w * w
	}
	k.loop(k.c64(from), k.c64(n), func(l llvm.Value) {
		off := k.mulc(l, stride)
		e, err := k.exp(k.b.FSub(k.loadAt(t, row, off), m, ""))
		if err != nil {
			ferr = err
			return
		}
		if !out.IsNil() {
			k.storeAt(e, ot, out, off)
		}
		k.store(k.b.FAdd(k.load(f64, sum), k.widen(e), ""), f64, sum)
	})
	return k.load(f64, sum), ferr
}
