package peak

import "gitee.com/gidean/conv-linn/hostcpu"

// The loops of peak_amd64.s: n ≥ 1 iterations of acc[j] += x·y for the
// Chains accumulators (4, 8 or 16 lanes each); xy holds x then y.
//
//go:noescape
func loopSSE(n int, acc *Accumulators, xy *[2]float32)

//go:noescape
func loopFMA(n int, acc *Accumulators, xy *[2]float32)

//go:noescape
func loopAVX512(n int, acc *Accumulators, xy *[2]float32)

// loopAVX512BF16 is n ≥ 1 iterations of r[j] += x0·y0 + x1·y1 and
// s[j] += x0·y0 + x1·y1 (vdpbf16ps) from r = acc, s = 0, then acc = r + s,
// with xy holding the bf16 pairs x1:x0 and y1:y0.
//
//go:noescape
func loopAVX512BF16(n int, acc *Accumulators, xy *[2]uint32)

func supported(p Path) bool {
	switch p {
	case PathGo, PathSSE: // SSE2 is part of x86-64
		return true
	case PathFMA:
		return hostcpu.Supported("fma") && hostcpu.Supported("avx")
	case PathAVX512:
		return hostcpu.Supported("avx512f")
	case PathAVX512BF16:
		return hostcpu.Supported("avx512f") && hostcpu.Supported("avx512bf16")
	}
	return false
}

func best() Path {
	for _, p := range []Path{PathAVX512, PathFMA} {
		if supported(p) {
			return p
		}
	}
	return PathSSE
}

func runAsm(p Path, n int, acc *Accumulators, x, y float32) {
	xy := [2]float32{x, y}
	switch p {
	case PathSSE:
		loopSSE(n, acc, &xy)
	case PathFMA:
		loopFMA(n, acc, &xy)
	case PathAVX512:
		loopAVX512(n, acc, &xy)
	case PathAVX512BF16:
		bx, by := uint32(bf16(x)), uint32(bf16(y))
		pairs := [2]uint32{bx | bx<<16, by | by<<16}
		loopAVX512BF16(n, acc, &pairs)
	}
}
