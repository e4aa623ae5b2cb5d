package cpu

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/native"
)

// TestTileEmulation checks the emulated tile instructions on their own,
// on shapes the kernels never configure: partial rows and colsb, strides
// that are not the row width. A function in the GEMM ABI (C, A, B,
// scratch, tid, nthreads) runs, for tid 0, ldtilecfg from the
// configuration in scratch, tileloadd of C, A and B, tdpbf16ps and
// tilestored of C; for tid 1, tilerelease. The test checks the stored C
// against a Go model of tdpbf16ps (an exactly representable float64 fma
// per product here, so one rounding), that nothing past the configured
// bytes is written, and the emulated registers themselves: loaded bytes,
// zeros past colsb and rows, and a cleared file after tilerelease.
func TestTileEmulation(t *testing.T) {
	tm := hostMachine(t)
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("tiles")
	defer m.Dispose()
	m.ConfigureFor(tm)
	e, err := newEmitter(m, ArchOf(tm))
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	ops, err := newEmuTiles(e, "tt")
	if err != nil {
		t.Fatal(err)
	}
	const (
		cRows, cCols = 3, 3 // C: 3 rows × 12 bytes
		pairs        = 2    // A: 3 rows × 8 bytes; B: 2 rows × 12 bytes
		strideA      = 40   // bytes
		strideB      = 24
		strideC      = 20
		strideOut    = 52
		cfgOff       = tileDataOff + 8*1024
		cinOff       = cfgOff + 64
	)
	fn, err := e.newFunction("tiletest", []llvm.Type{e.Ptr, e.Ptr, e.Ptr, e.Ptr, e.I64, e.I64}, false)
	if err != nil {
		t.Fatal(err)
	}
	out, a, b, tr, tid := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4)
	at := func(p llvm.Value, off int) llvm.Value { return e.elemAtc(BF16, p, int64(off/2)) }
	e.ifElse("run", e.B.ICmp(llvm.IntEQ, tid, e.C64(0), ""), func() {
		ops.config(tr, at(tr, cfgOff))
		ops.load(tr, 0, at(tr, cinOff), e.C64(strideC))
		ops.load(tr, 1, a, e.C64(strideA))
		ops.load(tr, 2, b, e.C64(strideB))
		ops.dot(tr, 0, 1, 2)
		ops.store(tr, 0, out, e.C64(strideOut))
	}, func() { ops.release(tr) })
	e.B.RetVoid()
	if err := Optimize(m, tm); err != nil {
		t.Fatal(err)
	}
	obj, err := tm.Emit(m, llvm.ObjectFile)
	if err != nil {
		t.Fatal(err)
	}
	fns := linkLib(t, [][]byte{obj}, []Kernel{{GEMM: GEMM{Name: "tiletest"}}})

	// The tile area, 64-byte aligned inside a Go buffer, with the
	// configuration and C's input after it.
	buf := make([]float32, (cinOff+1024+64)/4)
	skip := int((64 - uintptr(unsafe.Pointer(&buf[0]))%64) % 64 / 4)
	area := buf[skip:]
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(&area[0])), 4*len(area))
	for i := range bytes {
		bytes[i] = 0xa5 // stale state: the emulation must not depend on it
	}
	cfg := bytes[cfgOff : cfgOff+64]
	for i := range cfg {
		cfg[i] = 0
	}
	cfg[0] = 1
	for n, sh := range [][2]int{{cRows, 4 * cCols}, {cRows, 4 * pairs}, {pairs, 4 * cCols}} {
		binary.LittleEndian.PutUint16(cfg[16+2*n:], uint16(sh[1]))
		cfg[48+n] = byte(sh[0])
	}
	r := rand.New(rand.NewPCG(5, 6))
	bf := func() uint16 { // ±[0.5, 2) with a random 7-bit fraction
		return uint16(0x3f00+r.IntN(0x100)) | uint16(r.IntN(2))<<15
	}
	aBuf := make([]uint16, strideA/2*cRows)
	bBuf := make([]uint16, strideB/2*pairs)
	for i := range aBuf {
		aBuf[i] = bf()
	}
	for i := range bBuf {
		bBuf[i] = bf()
	}
	cin := make([]float32, cRows*strideC/4)
	for i := range cin {
		cin[i] = float32(r.IntN(64)-32) / 8
	}
	copy(unsafe.Slice((*float32)(unsafe.Pointer(&bytes[cinOff])), len(cin)), cin)
	const sentinel = 0x7fc0dead
	outBuf := make([]float32, strideOut/4*cRows+4)
	for i := range outBuf {
		outBuf[i] = math.Float32frombits(sentinel)
	}
	af := unsafe.Slice((*float32)(unsafe.Pointer(&aBuf[0])), len(aBuf)/2)
	bfl := unsafe.Slice((*float32)(unsafe.Pointer(&bBuf[0])), len(bBuf)/2)
	native.CallGEMM(fns[0], outBuf, af, bfl, area, 0, 1)

	val := func(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }
	for m := 0; m < cRows; m++ {
		for n := 0; n < strideOut/4; n++ {
			got := outBuf[m*strideOut/4+n]
			if n >= cCols {
				if math.Float32bits(got) != sentinel {
					t.Errorf("out[%d][%d] = %v: written past colsb", m, n, got)
				}
				continue
			}
			acc := cin[m*strideC/4+n]
			for k := 0; k < pairs; k++ {
				for h := 0; h < 2; h++ {
					x := val(aBuf[m*strideA/2+2*k+h])
					y := val(bBuf[k*strideB/2+2*n+h])
					acc = float32(float64(acc) + x*y) // exact in float64: one rounding
				}
			}
			if got != acc {
				t.Errorf("C[%d][%d] = %v, want %v", m, n, got, acc)
			}
		}
	}
	for i := strideOut / 4 * cRows; i < len(outBuf); i++ {
		if math.Float32bits(outBuf[i]) != sentinel {
			t.Errorf("out[%d] written past the configured rows", i)
		}
	}
	reg := func(n, row, b int) byte { return bytes[tileDataOff+1024*n+64*row+b] }
	for row := 0; row < 16; row++ {
		for b := 0; b < 64; b++ {
			var want byte
			if row < cRows && b < 4*pairs {
				want = byte(aBuf[row*strideA/2+b/2] >> (8 * (b % 2)))
			}
			if got := reg(1, row, b); got != want {
				t.Fatalf("A register row %d byte %d = %#x, want %#x", row, b, got, want)
			}
			if row >= cRows || b >= 4*cCols {
				if reg(0, row, b) != 0 {
					t.Fatalf("C register row %d byte %d = %#x past its shape, want 0", row, b, reg(0, row, b))
				}
			}
		}
	}
	if bytes[tileStateOff] != 1 || bytes[tileStateOff+48] != cRows || bytes[tileStateOff+16] != 4*cCols {
		t.Errorf("loaded configuration: %v", bytes[tileStateOff:tileStateOff+64])
	}
	native.CallGEMM(fns[0], outBuf, af, bfl, area, 1, 2)
	for i := tileStateOff; i < tileDataOff+8*1024; i++ {
		if bytes[i] != 0 {
			t.Fatalf("after tilerelease byte %d of the tile area = %#x, want 0", i-tileStateOff, bytes[i])
		}
	}
}
