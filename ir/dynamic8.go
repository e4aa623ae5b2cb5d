package ir

import (
	"sort"
	"sync"
)

// The 8-bit dynamic tree code of block-wise 8-bit optimizers (Dettmers et
// al., "8-bit Optimizers via Block-wise Quantization", 2022; bitsandbytes'
// Adam8bit): 256 values in [−1, 1], sorted. A code value is a decimal
// exponent and a linear fraction: for e = 0…6 there are K(e) values
// 10^(e−6)·(0.1 + 0.9·(k + ½)/K(e)), k < K(e) — the midpoints of K(e) equal
// steps of [0.1, 1] — with K(e) = 2^e for the signed code (each also
// negated, for the first moment) and 2^(e+1) for the unsigned one (the
// second moment); both add 0 and 1. That is 2·127 + 2 and 254 + 2 values.
// Values are rounded to f32, as the optimizer's fp32 arithmetic sees them.

var (
	dynOnce  sync.Once
	dynCodes [2][256]float64 // [0]: unsigned, [1]: signed
	dynMids  [2][255]float64
)

func initDynamic() {
	for s, signed := range []bool{false, true} {
		vals := []float64{0, 1}
		for e := 0; e < 7; e++ {
			k := 1 << (e + 1)
			if signed {
				k = 1 << e
			}
			for j := 0; j < k; j++ {
				v := DynamicValue(e, j, k)
				vals = append(vals, v)
				if signed {
					vals = append(vals, -v)
				}
			}
		}
		sort.Float64s(vals)
		copy(dynCodes[s][:], vals)
		for i := range dynMids[s] {
			dynMids[s][i] = (vals[i] + vals[i+1]) / 2 // exact: f32 values in f64
		}
	}
}

// DynamicPow10 are the code's decimal scales 10^(e−6), e = 0…6, as
// literals (the kernels use the same constants).
var DynamicPow10 = [7]float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1}

// DynamicValue is the code value k of K in decade e, computed in float64
// in this order, without fused multiply-adds, and rounded to f32:
// 10^(e−6)·(0.1 + 0.9·((k + ½)/K)). The GPU kernels compute it the same way.
func DynamicValue(e, k, K int) float64 {
	f := float64((float64(k) + 0.5) / float64(K))
	g := float64(0.9 * f) // explicit conversions: no fused multiply-add
	h := float64(0.1 + g)
	return float64(float32(DynamicPow10[e] * h))
}

func signIndex(signed bool) int {
	if signed {
		return 1
	}
	return 0
}

// DynamicCode returns the 256 values of the signed or unsigned dynamic
// code, ascending.
func DynamicCode(signed bool) [256]float64 {
	dynOnce.Do(initDynamic)
	return dynCodes[signIndex(signed)]
}

// DynamicMidpoints returns the 255 midpoints between neighbouring code
// values, ascending: the decision boundaries of QuantizeDynamic.
func DynamicMidpoints(signed bool) [255]float64 {
	dynOnce.Do(initDynamic)
	return dynMids[signIndex(signed)]
}

// QuantizeDynamic returns the index of the code value nearest to x: the
// number of midpoints below x (a tie goes to the lower value; NaN to 0).
func QuantizeDynamic(x float64, signed bool) int {
	dynOnce.Do(initDynamic)
	m := &dynMids[signIndex(signed)]
	lo := 0
	for step := 128; step >= 1; step /= 2 {
		if m[lo+step-1] < x {
			lo += step
		}
	}
	return lo
}

// DequantizeDynamic returns code value i (i truncated and clamped to
// 0…255; NaN reads 0).
func DequantizeDynamic(i float64, signed bool) float64 {
	dynOnce.Do(initDynamic)
	j := 0
	switch {
	case i >= 255:
		j = 255
	case i >= 1:
		j = int(i)
	}
	return dynCodes[signIndex(signed)][j]
}
