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

func supported(p Path) bool {
	switch p {
	case PathGo, PathSSE: // SSE2 is part of x86-64
		return true
	case PathFMA:
		return hostcpu.Supported("fma") && hostcpu.Supported("avx")
	case PathAVX512:
		return hostcpu.Supported("avx512f")
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
	}
}
