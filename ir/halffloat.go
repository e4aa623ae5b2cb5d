package ir

import "math"

// The 16-bit float formats, for everything that stores bf16 or f16 values:
// the runtime's state, safetensors files and exports.

// BF16FromFloat32 rounds f to bfloat16 bits, ties to even; NaN stays a
// (quiet) NaN, overflow goes to ±Inf.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + ((b >> 16) & 1)
	return uint16(b >> 16)
}

// BF16ToFloat32 widens bfloat16 bits to float32, exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F16FromFloat64 rounds x to IEEE half-precision bits, ties to even.
func F16FromFloat64(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
	}
	a := math.Abs(x)
	switch {
	case math.IsNaN(x):
		return 0x7e00
	case a >= 65520: // halfway between 65504 (the largest half) and 2^16, and Inf
		return sign | 0x7c00
	case a < 0x1p-14: // subnormal or zero: quantum 2^-24 (1024 quanta make the smallest normal)
		return sign | uint16(math.RoundToEven(a*0x1p24))
	}
	_, e := math.Frexp(a) // a = f·2^e, f in [0.5, 1)
	exp := e - 1
	mant := math.RoundToEven((math.Ldexp(a, -exp) - 1) * 1024)
	if mant == 1024 {
		exp, mant = exp+1, 0
	}
	return sign | uint16(exp+15)<<10 | uint16(mant)
}

// F16ToFloat64 widens IEEE half-precision bits to float64, exactly.
func F16ToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(mant, -24)
	case 31:
		if mant != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * math.Ldexp(1+mant/1024, exp-15)
}
