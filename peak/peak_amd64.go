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

// amxBuf is the memory of loopAMXBF16: the tile configuration, one A and
// one B tile (each loaded into two tile registers) and the four C tiles.
type amxBuf struct {
	cfg  [64]byte
	a, b [256]uint32
	c    [4][16][16]float32
}

// loopAMXBF16 is n ≥ 1 iterations of the four tdpbf16ps of the 2×2 tile
// blocking on buf (see peak_amd64.s).
//
//go:noescape
func loopAMXBF16(n int, buf *amxBuf)

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
	case PathAMXBF16:
		return hostcpu.Supported("amx-tile") && hostcpu.Supported("amx-bf16") && hostcpu.RequestAMX() == nil
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
	case PathAMXBF16:
		runAMX(n, acc, x, y)
	}
}

// runAMX runs loopAMXBF16 with A tiles of the pair (x, x) and B tiles of
// (y, y), bf16, and C tile j's rows all acc[j]; acc[j] gets its last row.
func runAMX(n int, acc *Accumulators, x, y float32) {
	var buf amxBuf
	buf.cfg[0] = 1 // palette 1; start_row 0
	for t := 0; t < 8; t++ {
		buf.cfg[16+2*t] = 64 // colsb, little-endian 16 bits
		buf.cfg[48+t] = 16   // rows
	}
	bx, by := uint32(bf16(x)), uint32(bf16(y))
	for i := range buf.a {
		buf.a[i], buf.b[i] = bx|bx<<16, by|by<<16
	}
	for j := range buf.c {
		for r := range buf.c[j] {
			buf.c[j][r] = acc[j]
		}
	}
	loopAMXBF16(n, &buf)
	for j := range buf.c {
		acc[j] = buf.c[j][15]
	}
}
