package cpu

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// The AMX kernels' tile instructions go through tileOps, which has two
// back ends emitting the same kernel structure:
//
//   - amxTiles, the real one: LLVM 19's intrinsics with immediate tile
//     numbers (llvm.x86.ldtilecfg, tilezero, tileloadd64, tdpbf16ps,
//     tilestored64, tilerelease), for targets with AMX-TILE and AMX-BF16;
//   - emuTiles, internal to the tests (Generator.emulateTiles): every tile
//     instruction is a call to a function in plain IR over an emulated
//     tile-register file in the thread's scratch, following the SDM's
//     definitions (the configuration's rows and colsb, strides, zeroing of
//     the bytes and rows past them, tdpbf16ps's arithmetic and the
//     conditions under which the hardware faults, here a trap), so that
//     the kernels run, and are checked, on hosts without AMX.
//
// The tile area, 64-byte aligned in scratch after the workspace, holds the
// 64-byte configuration the driver loads (palette 1) at tileCfgOff, the C
// staging tiles (4 × 1 KB: tilestored64 writes the 16×16 float tiles of C
// there and the vector epilogue reads them) at tileStageOff, and for the
// emulation the loaded configuration (tileStateOff) and the eight tile
// registers of 16 rows × 64 bytes (tileDataOff).
const (
	tileCfgOff   = 0
	tileStageOff = 64
	tileStateOff = tileStageOff + 4*1024
	tileDataOff  = tileStateOff + 64
)

// tileAreaBytes is the size of the tile area (a multiple of 64).
func tileAreaBytes(emu bool) int {
	if emu {
		return tileDataOff + 8*1024
	}
	return tileStateOff
}

// Tile registers of the 2×2 register blocking: C tiles 0–3 (row block i,
// column block j at 2i+j), A tiles 4–5 (16 rows × 32 k each), B tiles 6–7
// (32 k as 16 pair rows × 16 columns each).
func tileC(i, j int) int { return 2*i + j }
func tileA(i int) int    { return 4 + i }
func tileB(j int) int    { return 6 + j }

// tileOps emits tile instructions; tr is the kernel's tile area, tile
// numbers are constants.
type tileOps interface {
	config(tr, cfg llvm.Value) // ldtilecfg [cfg]
	release(tr llvm.Value)     // tilerelease
	zero(tr llvm.Value, t int)
	load(tr llvm.Value, t int, base, stride llvm.Value)  // tileloadd t, [base + stride·row]
	store(tr llvm.Value, t int, base, stride llvm.Value) // tilestored [base + stride·row], t
	dot(tr llvm.Value, c, a, b int)                      // tdpbf16ps c, a, b
}

// newTileOps returns the tile back end: the intrinsics, or the emulation
// (whose functions, named name.tile.*, it adds to e's module now).
func newTileOps(e *emitter, name string, emulate bool) (tileOps, error) {
	if emulate {
		return newEmuTiles(e, name)
	}
	t := &amxTiles{e: e}
	for _, x := range []struct {
		f    *llvm.Function
		name string
	}{
		{&t.ldcfg, "llvm.x86.ldtilecfg"}, {&t.rel, "llvm.x86.tilerelease"}, {&t.zero_, "llvm.x86.tilezero"},
		{&t.ld, "llvm.x86.tileloadd64"}, {&t.st, "llvm.x86.tilestored64"}, {&t.dp, "llvm.x86.tdpbf16ps"},
	} {
		f, err := e.Mod.Intrinsic(x.name)
		if err != nil {
			return nil, err
		}
		*x.f = f
	}
	return t, nil
}

// amxTiles emits the AMX instructions themselves.
type amxTiles struct {
	e                             *emitter
	ldcfg, rel, zero_, ld, st, dp llvm.Function
}

func (t *amxTiles) imm(n int) llvm.Value { return llvm.ConstInt(t.e.Ctx.Int8Type(), int64(n)) }

func (t *amxTiles) config(_, cfg llvm.Value) { t.e.B.Call(t.ldcfg, []llvm.Value{cfg}, "") }
func (t *amxTiles) release(llvm.Value)       { t.e.B.Call(t.rel, nil, "") }
func (t *amxTiles) zero(_ llvm.Value, n int) { t.e.B.Call(t.zero_, []llvm.Value{t.imm(n)}, "") }
func (t *amxTiles) load(_ llvm.Value, n int, base, stride llvm.Value) {
	t.e.B.Call(t.ld, []llvm.Value{t.imm(n), base, stride}, "")
}
func (t *amxTiles) store(_ llvm.Value, n int, base, stride llvm.Value) {
	t.e.B.Call(t.st, []llvm.Value{t.imm(n), base, stride}, "")
}
func (t *amxTiles) dot(_ llvm.Value, c, a, b int) {
	t.e.B.Call(t.dp, []llvm.Value{t.imm(c), t.imm(a), t.imm(b)}, "")
}

// configTiles writes the kernel's tile configuration to the tile area and
// loads it: palette 1, start_row 0, all eight tiles 16 rows × 64 bytes
// (the layout: palette_id at byte 0, start_row at 1, colsb[i] as 16-bit
// values at 16+2i, rows[i] at 48+i, everything else zero). Edge tiles use
// the full shape on zero-padded panels, so one configuration serves all.
func (g *gemmGen) configTiles() {
	i8 := g.Ctx.Int8Type()
	bytes := make([]llvm.Value, 64)
	for i := range bytes {
		v := 0
		switch {
		case i == 0:
			v = 1
		case i >= 16 && i < 32 && i%2 == 0:
			v = 64
		case i >= 48 && i < 56:
			v = 16
		}
		bytes[i] = llvm.ConstInt(i8, int64(v))
	}
	cfg := g.elemAtc(BF16, g.tr, tileCfgOff/2)
	g.store(llvm.ConstVector(bytes), cfg, 64)
	g.tiles.config(g.tr, cfg)
}

// kLoopAMX computes the rows×cols corner of an MR×NR block of C over a
// packed kc-deep A micro-panel (row-major, kcp = kc rounded up to 32
// columns, zero-padded) and B micro-panel (pair rows of 2·NR bf16): C tiles
// zeroed, then for each 32-k step the ⌈rows/16⌉ A tiles and ⌈cols/16⌉ B
// tiles are loaded and multiplied into the C tiles, which are then stored
// to the staging area (stagedRows reads them back). Tiles of rows or
// columns past the corner are never touched.
func (g *gemmGen) kLoopAMX(kc, rows, cols int, ap, bp, tr llvm.Value) {
	t, nr := g.tiles, int64(g.p.b.NR)
	mt, nt := ceilDiv(rows, 16), ceilDiv(cols, 16)
	kcp := int64(roundUp(kc, 32))
	for i := 0; i < mt; i++ {
		for j := 0; j < nt; j++ {
			t.zero(tr, tileC(i, j))
		}
	}
	strideA, strideB := g.C64(2*kcp), g.C64(4*nr)
	g.forLoop("kt", g.C64(0), g.C64(kcp), 32, func(k0 llvm.Value) {
		for i := 0; i < mt; i++ {
			t.load(tr, tileA(i), g.elemAt(BF16, ap, g.Add(k0, g.C64(int64(16*i)*kcp))), strideA)
		}
		for j := 0; j < nt; j++ {
			// Pair row k0/2 starts at (k0/2)·2NR = k0·NR; columns 16j on
			// are 32j halves further.
			t.load(tr, tileB(j), g.elemAt(BF16, bp, g.Add(g.Mul(k0, g.C64(nr)), g.C64(int64(32*j)))), strideB)
		}
		for i := 0; i < mt; i++ {
			for j := 0; j < nt; j++ {
				t.dot(tr, tileC(i, j), tileA(i), tileB(j))
			}
		}
	})
	stage := g.atc(tr, tileStageOff/4)
	for i := 0; i < mt; i++ {
		for j := 0; j < nt; j++ {
			t.store(tr, tileC(i, j), g.atc(stage, int64(256*tileC(i, j))), g.C64(64))
		}
	}
}

// amxRowGroup is how many rows of staged C the AMX epilogue handles at a
// time: 8 rows of 2 vectors, 16 zmm registers.
const amxRowGroup = 8

// stagedRows loads rows [r0, r1) of the staged C block as nv float
// vectors each (column block v of row r is row r%16 of tile (r/16, v)).
func (g *gemmGen) stagedRows(tr llvm.Value, r0, r1, nv int) [][]llvm.Value {
	stage := g.atc(tr, tileStageOff/4)
	acc := make([][]llvm.Value, r1-r0)
	for i := range acc {
		r := r0 + i
		acc[i] = make([]llvm.Value, nv)
		for v := range acc[i] {
			acc[i][v] = g.load(g.vec, g.atc(stage, int64(256*tileC(r/16, v)+16*(r%16))), 64)
		}
	}
	return acc
}
