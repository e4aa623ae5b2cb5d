package cpu

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Elem is the element type of a GEMM operand in memory.
type Elem uint8

const (
	// F32 is float32, the zero value.
	F32 Elem = iota
	// BF16 is bfloat16, stored as its 16-bit pattern (the top half of the
	// float32 it stands for; a uint16 in Go).
	BF16
)

// String names the type as PyTorch does: "float32" or "bfloat16".
func (e Elem) String() string {
	switch e {
	case F32:
		return "float32"
	case BF16:
		return "bfloat16"
	}
	return "Elem(" + strconv.Itoa(int(e)) + ")"
}

// Size is the element's size in bytes.
func (e Elem) Size() int {
	if e == BF16 {
		return 2
	}
	return 4
}

// GEMM specifies one matrix multiply with static shapes; see the package
// doc for the computation and the ABI of the generated function.
type GEMM struct {
	Name    string // the C symbol of the kernel
	M, N, K int    // C is [M,N], the inner dimension is K
	TransA  bool   // A is stored as [K,M] rather than [M,K]
	TransB  bool   // B is stored as [N,K] rather than [K,N]
	// Batch is the number of independent products (0 means 1).
	Batch int
	// StrideA, StrideB and StrideC are the distances in elements (of each
	// operand's type) between consecutive batch items; they matter only
	// when Batch > 1. A zero
	// StrideA or StrideB shares that operand among all items; StrideC must
	// be at least M·N so that items do not overlap.
	StrideA, StrideB, StrideC int64
	// Alpha scales the product. It must be finite and non-zero (0 is
	// refused so that a forgotten field is caught; use 1 for no scaling).
	Alpha float32
	// Accumulate adds the scaled product to C (beta = 1) instead of
	// overwriting C (beta = 0).
	Accumulate bool
	// ElemA, ElemB and ElemC are the element types of A, B and C; the zero
	// value F32 is float32 throughout. Products always accumulate in
	// float32. With ElemC BF16 the final value — alpha·op(A)·op(B), plus
	// the old C widened to float32 when Accumulate — is rounded once to
	// bf16 (nearest, ties to even; NaN stays NaN; see the package doc).
	// BF16 A and B with an F32 C is the mixed-precision mode. Any mix is
	// allowed: a bf16 operand multiplied with a float32 one is widened
	// exactly, never the float32 one narrowed.
	ElemA, ElemB, ElemC Elem
}

// maxDim bounds every dimension and element count so that the kernel's i64
// index arithmetic cannot overflow.
const maxDim = 1 << 40

// normalized returns s with Batch ≥ 1, or an error naming the bad field.
func (s GEMM) normalized() (GEMM, error) {
	if !validSymbol(s.Name) {
		return s, fmt.Errorf("cpu: GEMM name %q is not a C identifier", s.Name)
	}
	if s.M < 1 || s.N < 1 || s.K < 1 {
		return s, fmt.Errorf("cpu: GEMM %s: M, N, K = %d, %d, %d must all be ≥ 1", s.Name, s.M, s.N, s.K)
	}
	if s.Batch < 0 {
		return s, fmt.Errorf("cpu: GEMM %s: batch %d < 0", s.Name, s.Batch)
	}
	if s.Batch == 0 {
		s.Batch = 1
	}
	for _, e := range []Elem{s.ElemA, s.ElemB, s.ElemC} {
		if e != F32 && e != BF16 {
			return s, fmt.Errorf("cpu: GEMM %s: unknown element type %v", s.Name, e)
		}
	}
	if a := float64(s.Alpha); a == 0 || math.IsNaN(a) || math.IsInf(a, 0) {
		return s, fmt.Errorf("cpu: GEMM %s: alpha %v must be finite and non-zero", s.Name, s.Alpha)
	}
	m, n, k := int64(s.M), int64(s.N), int64(s.K)
	if m*n > maxDim || m*k > maxDim || k*n > maxDim || int64(s.Batch) > maxDim {
		return s, fmt.Errorf("cpu: GEMM %s: %d×%d×%d (batch %d) is too large", s.Name, m, n, k, s.Batch)
	}
	if s.Batch > 1 {
		if s.StrideA < 0 || s.StrideB < 0 {
			return s, fmt.Errorf("cpu: GEMM %s: negative batch stride", s.Name)
		}
		if s.StrideC < m*n {
			return s, fmt.Errorf("cpu: GEMM %s: StrideC %d < M·N = %d: batch items of C would overlap", s.Name, s.StrideC, m*n)
		}
		for _, st := range []int64{s.StrideA, s.StrideB, s.StrideC} {
			if st > maxDim || (st > 0 && int64(s.Batch-1) > maxDim/st) {
				return s, fmt.Errorf("cpu: GEMM %s: batch stride %d is too large", s.Name, st)
			}
		}
	} else {
		s.StrideA, s.StrideB, s.StrideC = 0, 0, 0
	}
	return s, nil
}

// validSymbol reports whether name is a C identifier.
func validSymbol(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Lens returns how many elements (of each operand's type) the kernel reads
// from A and B and writes to C, counting every batch item: the lengths the
// caller's buffers need.
func (s GEMM) Lens() (a, b, c int64) {
	batch := int64(max(s.Batch, 1))
	m, n, k := int64(s.M), int64(s.N), int64(s.K)
	a, b, c = m*k, k*n, m*n
	if batch > 1 {
		a += (batch - 1) * s.StrideA
		b += (batch - 1) * s.StrideB
		c += (batch - 1) * s.StrideC
	}
	return a, b, c
}

// FLOPs is the number of floating-point operations of one call over all
// threads: 2·Batch·M·N·K.
func (s GEMM) FLOPs() int64 {
	return 2 * int64(max(s.Batch, 1)) * int64(s.M) * int64(s.N) * int64(s.K)
}

// Kernel describes a generated GEMM function.
type Kernel struct {
	GEMM // the specification, with Batch ≥ 1
	// Blocking is the blocking actually used: MC, KC and NC fitted to the
	// shape.
	Blocking Blocking
	// DotBF16 says that the kernel multiplies with vdpbf16ps on bf16 pairs
	// (AVX512-BF16, BF16 A and B); otherwise it converts bf16 operands to
	// float32 while packing and uses vfmadd.
	DotBF16 bool
	// AMX says that the kernel multiplies 16×16 tiles of C with tdpbf16ps
	// (Arch.AMX, BF16 A and B; see the package doc, "AMX").
	AMX bool
	// SplitN says that threads split C into ranges of NR-column tiles;
	// otherwise into ranges of MR-row tiles. Batch items are part of the
	// range: thread parts run over (batch item, tile) in order.
	SplitN bool
	// ScratchBytes is the size of the per-thread scratch buffer.
	ScratchBytes int64
}

// Generator adds GEMM kernels for one target to LLVM modules. Set Blocking
// (and BlockingBF16, BlockingAMX) before calling Add to override the
// default tuning.
type Generator struct {
	Arch     Arch
	Blocking Blocking // kernels with the float32 micro-kernel
	// BlockingBF16 is used by kernels that multiply bf16 pairs with
	// vdpbf16ps (Arch.BF16, BF16 A and B); its KC counts k, not pairs, and
	// should be even. The zero value means DefaultBlockingBF16.
	BlockingBF16 Blocking
	// BlockingAMX is used by the AMX kernels (Arch.AMX, BF16 A and B); the
	// zero value means DefaultBlockingAMX.
	BlockingAMX Blocking
	// emulateTiles generates the AMX kernels with every tile instruction
	// replaced by plain IR over a tile-register file in scratch (amx.go),
	// so that the tests run them on hosts without AMX. Internal: never a
	// user's choice.
	emulateTiles bool
	// wBudget overrides defaultWBudget when positive (tests).
	wBudget int
}

// NewGenerator returns a generator for tm's CPU with DefaultBlocking,
// DefaultBlockingBF16 and DefaultBlockingAMX.
func NewGenerator(tm llvm.TargetMachine) *Generator {
	a := ArchOf(tm)
	return &Generator{Arch: a, Blocking: DefaultBlocking(a.VectorWidth), BlockingBF16: DefaultBlockingBF16(),
		BlockingAMX: DefaultBlockingAMX()}
}

// amxBF16 reports whether g multiplies s on AMX tiles.
func (g *Generator) amxBF16(s GEMM) bool {
	return g.Arch.AMX && g.Arch.VectorWidth == 16 && s.ElemA == BF16 && s.ElemB == BF16
}

// dotBF16 reports whether g multiplies s with vdpbf16ps.
func (g *Generator) dotBF16(s GEMM) bool {
	return g.Arch.BF16 && g.Arch.VectorWidth == 16 && s.ElemA == BF16 && s.ElemB == BF16
}

// Add defines the kernel s.Name in m, plus internal helpers named
// s.Name + ".…". m should be configured for the generator's target machine
// (llvm.Module.ConfigureFor) and optimized afterwards (Optimize).
func (g *Generator) Add(m llvm.Module, s GEMM) (Kernel, error) {
	s, err := s.normalized()
	if err != nil {
		return Kernel{}, err
	}
	if g.Arch.VectorWidth != 4 && g.Arch.VectorWidth != 8 && g.Arch.VectorWidth != 16 {
		return Kernel{}, fmt.Errorf("cpu: vector width %d is not 4, 8 or 16", g.Arch.VectorWidth)
	}
	amx := g.amxBF16(s)
	dot, blk := g.dotBF16(s) || amx, g.Blocking
	if amx {
		if blk = g.BlockingAMX; blk == (Blocking{}) {
			blk = DefaultBlockingAMX()
		}
		if err := blk.checkAMX(); err != nil {
			return Kernel{}, err
		}
	} else if dot {
		if blk = g.BlockingBF16; blk == (Blocking{}) {
			blk = DefaultBlockingBF16()
		}
		if blk.KC < 2 {
			return Kernel{}, fmt.Errorf("cpu: bf16 blocking KC=%d: must be ≥ 2 (k pairs)", blk.KC)
		}
	}
	if err := blk.check(g.Arch.VectorWidth); err != nil {
		return Kernel{}, err
	}
	if _, ok := m.NamedFunction(s.Name); ok {
		return Kernel{}, fmt.Errorf("cpu: module already defines %q", s.Name)
	}
	wb := defaultWBudget
	if g.wBudget > 0 {
		wb = g.wBudget
	}
	p := planFor(s, blk, dot, amx, g.emulateTiles, wb)
	e, err := newEmitter(m, g.Arch)
	if err != nil {
		return Kernel{}, err
	}
	defer e.close()
	gg := &gemmGen{emitter: e, p: p, mk: map[mkKey]llvm.Function{}}
	if amx {
		if gg.tiles, err = newTileOps(e, s.Name, g.emulateTiles); err != nil {
			return Kernel{}, err
		}
	}
	if err := gg.emit(); err != nil {
		return Kernel{}, err
	}
	return p.kernel(), nil
}

// Optimize runs LLVM's default<O3> pipeline over m for tm, the optimization
// the kernels are written for.
func Optimize(m llvm.Module, tm llvm.TargetMachine) error {
	if err := m.Verify(); err != nil {
		return err
	}
	if err := m.RunPasses("default<O3>", tm, llvm.DefaultPassOptions()); err != nil {
		return err
	}
	return nil
}

// plan is the static schedule of one kernel.
type plan struct {
	s GEMM
	b Blocking // effective: MC multiple of MR, NC of NR, KC fitted to K
	// dot: panels hold bf16 pairs along k (zero-padded to an even depth)
	// and the micro-kernel uses vdpbf16ps; otherwise panels hold floats.
	dot bool
	// amx: the micro-kernel multiplies tiles with tdpbf16ps (dot is set
	// too: B panels keep the pair layout); panels are kcp = kc rounded up
	// to 32 deep, zero-padded, and A panels are row-major (see pack_amx.go).
	amx    bool
	kcLast int // depth of the last K block (≤ b.KC)
	// viaW: C is bf16 and K has several blocks, so the partial sums of an
	// MW×NC block live in a float32 workspace in scratch until the last K
	// block rounds them once into C (loops jc, iw, pc, ic rather than jc,
	// pc, ic; MW is a multiple of MC).
	viaW         bool
	mw           int
	splitN       bool
	apBytes      int // packed A block: MC×KC elements
	bpBytes      int // packed B block: KC×NC elements
	wBytes       int // workspace: MW×NC floats when viaW
	tBytes       int // AMX tile area: config, C staging, emulated tiles
	scratchBytes int64
	tiles        int // tiles along the split dimension per batch item
	mEdge, nEdge int // M mod MR, N mod NR
}

// defaultWBudget bounds the workspace of kernels with a bf16 C and several
// K blocks (it lives in L2/L3: about 2 MB).
const defaultWBudget = 2 << 20

// newPlan fits blocking b to s; dot selects the bf16-pair layout (KC
// even, so that only the last K block can have an odd depth).
func newPlan(s GEMM, b Blocking, dot bool) *plan { return newPlanW(s, b, dot, defaultWBudget) }

// newPlanW is newPlan with a workspace of at most wBudget bytes (but at
// least one MC×NC block).
func newPlanW(s GEMM, b Blocking, dot bool, wBudget int) *plan {
	return planFor(s, b, dot, false, false, wBudget)
}

// planFor is newPlanW for any kernel family: amx selects the AMX kernels
// (with dot set), emu their emulated tiles.
func planFor(s GEMM, b Blocking, dot, amx, emu bool, wBudget int) *plan {
	p := &plan{s: s, b: b, dot: dot, amx: amx}
	p.b.MC = min(roundUp(b.MC, b.MR), roundUp(s.M, b.MR))
	p.b.NC = min(roundUp(b.NC, b.NR), roundUp(s.N, b.NR))
	kcMax, step := b.KC, 1
	if dot {
		kcMax, step = b.KC&^1, 2
	}
	if amx {
		kcMax, step = b.KC&^31, 32
	}
	// Split K into equal blocks, rounded to the unroll factor when that
	// still leaves a non-empty last block.
	nk := ceilDiv(s.K, kcMax)
	kc := ceilDiv(s.K, nk)
	if nk > 1 {
		kc = roundUp(kc, step)
		if r := roundUp(kc, b.Unroll*step); r <= kcMax && (nk-1)*r < s.K {
			kc = r
		}
	}
	p.b.KC = kc
	nk = ceilDiv(s.K, kc)
	p.kcLast = s.K - (nk-1)*kc
	p.viaW = s.ElemC == BF16 && nk > 1
	// Threads split the longer side of C: each thread packs all of the
	// other operand, so that keeps the duplicated packing small.
	p.splitN = s.N > s.M
	if p.splitN {
		p.tiles = ceilDiv(s.N, b.NR)
	} else {
		p.tiles = ceilDiv(s.M, b.MR)
	}
	p.mEdge, p.nEdge = s.M%b.MR, s.N%b.NR
	size := 4
	if dot {
		size = 2
	}
	kcp := roundUp(kc, step)
	p.apBytes = size * p.b.MC * kcp
	p.bpBytes = size * kcp * p.b.NC
	if p.viaW {
		// As many MC blocks as fit in wBudget, at least one: B is packed
		// once per MW rows.
		p.mw = p.b.MC * max(1, min(wBudget/(4*p.b.NC*p.b.MC), ceilDiv(s.M, p.b.MC)))
		p.wBytes = 4 * p.mw * p.b.NC
	}
	if amx {
		p.tBytes = tileAreaBytes(emu)
	}
	p.scratchBytes = 64 + int64(roundUp(p.apBytes, 64)) + int64(roundUp(p.bpBytes, 64)) + int64(roundUp(p.wBytes, 64)) + int64(p.tBytes)
	return p
}

func (p *plan) kernel() Kernel {
	return Kernel{GEMM: p.s, Blocking: p.b, DotBF16: p.dot && !p.amx, AMX: p.amx, SplitN: p.splitN, ScratchBytes: p.scratchBytes}
}

// packElem is the element type of the packed panels.
func (p *plan) packElem() Elem {
	if p.dot {
		return BF16
	}
	return F32
}

// mkKey names one micro-kernel variant: depth kc, valid rows and columns.
type mkKey struct{ kc, rows, cols int }

// gemmGen emits one kernel.
type gemmGen struct {
	*emitter
	p            *plan
	mk           map[mkKey]llvm.Function
	packA, packB llvm.Function
	tiles        tileOps    // the AMX kernels' tile instructions (plan.amx)
	tr           llvm.Value // the driver's tile area (plan.amx)
	err          error      // first error met while emitting nested loops
}

// errNoVariant reports an internal inconsistency of the dispatch tree.
var errNoVariant = errors.New("cpu: internal error: missing micro-kernel variant")

// variants lists the values one tile property can take: the full size,
// and the edge size when the dimension does not divide evenly.
func variants(n, tile int) []int {
	var v []int
	if n >= tile {
		v = append(v, tile)
	}
	if n%tile != 0 {
		v = append(v, n%tile)
	}
	return v
}

// emit defines the micro-kernels, the packing routines and the kernel.
func (g *gemmGen) emit() error {
	p := g.p
	kcs := []int{p.b.KC}
	if p.kcLast != p.b.KC {
		kcs = append(kcs, p.kcLast)
	}
	for _, kc := range kcs {
		for _, r := range variants(p.s.M, p.b.MR) {
			for _, c := range variants(p.s.N, p.b.NR) {
				f, err := g.microKernel(kc, r, c)
				if err != nil {
					return err
				}
				g.mk[mkKey{kc, r, c}] = f
			}
		}
	}
	var err error
	switch {
	case g.p.amx:
		g.packA, err = g.emitPackAAMX()
	case g.p.dot:
		g.packA, err = g.emitPackADot()
	default:
		g.packA, err = g.emitPackA()
	}
	if err != nil {
		return err
	}
	if g.p.dot {
		g.packB, err = g.emitPackBDot()
	} else {
		g.packB, err = g.emitPackB()
	}
	if err != nil {
		return err
	}
	return g.emitDriver()
}

// emitDriver defines the exported kernel: thread partition, batch loop and
// the five BLIS loops around the micro-kernel.
func (g *gemmGen) emitDriver() error {
	p, s := g.p, g.p.s
	fn, err := g.newFunction(s.Name, []llvm.Type{g.Ptr, g.Ptr, g.Ptr, g.Ptr, g.I64, g.I64}, false)
	if err != nil {
		return err
	}
	for i, ro := range []bool{false, true, true, false} {
		if err := g.markPointer(fn, i, ro); err != nil {
			return err
		}
	}
	// A and B may be the same buffer: noalias only forbids overlap with
	// memory that is written, and both are read-only.
	cArg, aArg, bArg, scratch, tid, nthreads := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	for i, n := range []string{"C", "A", "B", "scratch", "tid", "nthreads"} {
		fn.Param(i).SetName(n)
	}
	b := g.B
	zero := g.C64(0)

	// Refuse tid/nthreads out of range by doing nothing.
	ok := b.And(b.ICmp(llvm.IntSGE, tid, zero, ""), b.ICmp(llvm.IntSLT, tid, nthreads, ""), "")
	run := fn.AppendBasicBlock("run")
	done := fn.AppendBasicBlock("done")
	b.CondBr(ok, run, done)
	b.SetInsertPointAtEnd(done)
	b.RetVoid()
	b.SetInsertPointAtEnd(run)

	// Align scratch to 64 bytes; the A block comes first, then the B block,
	// then the workspace.
	i8 := g.Ctx.Int8Type()
	off := b.And(b.Sub(zero, b.PtrToInt(scratch, g.I64, ""), ""), g.C64(63), "")
	ap := b.InBoundsGEP(i8, scratch, []llvm.Value{off}, "ap")
	bp := b.InBoundsGEP(i8, ap, []llvm.Value{g.C64(int64(roundUp(p.apBytes, 64)))}, "bp")
	ws := b.InBoundsGEP(i8, bp, []llvm.Value{g.C64(int64(roundUp(p.bpBytes, 64)))}, "w")
	if p.amx {
		// The tile area follows the workspace. The tile configuration is
		// per thread: set it on entry, release it on exit.
		g.tr = b.InBoundsGEP(i8, ws, []llvm.Value{g.C64(int64(roundUp(p.wBytes, 64)))}, "tiles")
		g.configTiles()
	}

	// This thread's part: units [u0, u1) of batch·tiles, where thread t
	// starts at t·q + min(t, r) with q, r = total / nthreads, total mod
	// nthreads (balanced, and free of overflow for any nthreads).
	total := g.C64(int64(s.Batch) * int64(p.tiles))
	q := b.UDiv(total, nthreads, "q")
	r := b.URem(total, nthreads, "r")
	start := func(t llvm.Value) llvm.Value { return g.Add(g.Mul(t, q), g.Min(t, r)) }
	u0 := start(tid)
	u1 := start(g.Add(tid, g.C64(1)))
	tiles := g.C64(int64(p.tiles))

	body := func(bi, lo, hi llvm.Value) {
		ab, bb, cb := aArg, bArg, cArg
		if s.Batch > 1 {
			ab = g.elemAt(s.ElemA, aArg, g.Mul(bi, g.C64(s.StrideA)))
			bb = g.elemAt(s.ElemB, bArg, g.Mul(bi, g.C64(s.StrideB)))
			cb = g.elemAt(s.ElemC, cArg, g.Mul(bi, g.C64(s.StrideC)))
		}
		m0, m1, n0, n1 := zero, g.C64(int64(s.M)), zero, g.C64(int64(s.N))
		if p.splitN {
			n0 = g.Mul(lo, g.C64(int64(p.b.NR)))
			n1 = g.Min(g.Mul(hi, g.C64(int64(p.b.NR))), n1)
		} else {
			m0 = g.Mul(lo, g.C64(int64(p.b.MR)))
			m1 = g.Min(g.Mul(hi, g.C64(int64(p.b.MR))), m1)
		}
		g.ifElse("part", b.ICmp(llvm.IntSLT, lo, hi, ""), func() {
			g.emitBlocks(ab, bb, cb, ap, bp, ws, m0, m1, n0, n1)
		}, nil)
	}
	if s.Batch == 1 {
		body(zero, u0, u1)
	} else {
		first := b.UDiv(u0, tiles, "b0")
		last := b.UDiv(g.Add(u1, g.C64(int64(p.tiles-1))), tiles, "b1")
		g.forLoop("batch", first, last, 1, func(bi llvm.Value) {
			base := g.Mul(bi, tiles)
			lo := g.Max(g.Sub(u0, base), zero)
			hi := g.Min(g.Sub(u1, base), tiles)
			body(bi, lo, hi)
		})
	}
	if p.amx {
		g.tiles.release(g.tr)
	}
	b.Br(done)
	return g.err
}

// emitBlocks emits the five loops over C[m0:m1, n0:n1] of one batch item:
// jc, pc, ic, jr, ir, or jc, iw, pc, ic, jr, ir when the partial sums go
// through the workspace ws (plan.viaW), so that they only need an MW×NC
// block of it.
func (g *gemmGen) emitBlocks(a, bm, c, ap, bp, ws, m0, m1, n0, n1 llvm.Value) {
	p, s, b := g.p, g.p.s, g.B
	mr, nr := int64(p.b.MR), int64(p.b.NR)
	bigK, bigM, bigN := g.C64(int64(s.K)), g.C64(int64(s.M)), g.C64(int64(s.N))
	pe := p.packElem()
	// The panels of a block are kcp deep: kc rounded up to even for pairs.
	depth := func(kc llvm.Value) llvm.Value {
		switch {
		case p.amx:
			return b.And(g.Add(kc, g.C64(31)), g.C64(-32), "kcp")
		case p.dot:
			return b.And(g.Add(kc, g.C64(1)), g.C64(-2), "kcp")
		}
		return kc
	}
	// tiles runs the micro-kernels over the packed blocks at (ic, jc);
	// iw is the first row of the workspace block.
	tiles := func(iw, ic, mc, jc, nc, kc, first, last llvm.Value) {
		kcp := depth(kc)
		g.forLoop("jr", g.C64(0), nc, nr, func(jr llvm.Value) {
			col := g.Add(jc, jr)
			bpan := g.elemAt(pe, bp, g.Mul(jr, kcp))
			colFull := b.ICmp(llvm.IntSLE, g.Add(col, g.C64(nr)), bigN, "")
			g.forLoop("ir", g.C64(0), mc, mr, func(ir llvm.Value) {
				row := g.Add(ic, ir)
				apan := g.elemAt(pe, ap, g.Mul(ir, kcp))
				ct := g.elemAt(s.ElemC, c, g.Add(g.Mul(row, bigN), col))
				rowFull := b.ICmp(llvm.IntSLE, g.Add(row, g.C64(mr)), bigM, "")
				kFull := b.ICmp(llvm.IntEQ, kc, g.C64(int64(p.b.KC)), "")
				args := []llvm.Value{apan, bpan, ct, first}
				if p.viaW {
					// The tile of the workspace: MR×NR floats, contiguous,
					// MW/MR of them per NR-column panel.
					wrow := g.Add(g.Sub(ic, iw), ir)
					wt := g.at(ws, g.Add(g.Mul(jr, g.C64(int64(p.mw))), g.Mul(wrow, g.C64(nr))))
					args = append(args, wt, last)
				}
				if p.amx {
					args = append(args, g.tr)
				}
				g.dispatch(mkKey{}, 0, [3]llvm.Value{kFull, rowFull, colFull}, args)
			})
		})
	}
	g.forLoop("jc", n0, n1, int64(p.b.NC), func(jc llvm.Value) {
		nc := g.Min(g.C64(int64(p.b.NC)), g.Sub(n1, jc))
		if p.viaW {
			g.forLoop("iw", m0, m1, int64(p.mw), func(iw llvm.Value) {
				mwEnd := g.Min(g.Add(iw, g.C64(int64(p.mw))), m1)
				g.forLoop("pc", g.C64(0), bigK, int64(p.b.KC), func(pc llvm.Value) {
					kc := g.Min(g.C64(int64(p.b.KC)), g.Sub(bigK, pc))
					first := b.ICmp(llvm.IntEQ, pc, g.C64(0), "first")
					last := b.ICmp(llvm.IntEQ, g.Add(pc, kc), bigK, "last")
					b.Call(g.packB, []llvm.Value{bm, bp, pc, kc, jc, nc}, "")
					g.forLoop("ic", iw, mwEnd, int64(p.b.MC), func(ic llvm.Value) {
						mc := g.Min(g.C64(int64(p.b.MC)), g.Sub(mwEnd, ic))
						b.Call(g.packA, []llvm.Value{a, ap, ic, mc, pc, kc}, "")
						tiles(iw, ic, mc, jc, nc, kc, first, last)
					})
				})
			})
			return
		}
		g.forLoop("pc", g.C64(0), bigK, int64(p.b.KC), func(pc llvm.Value) {
			kc := g.Min(g.C64(int64(p.b.KC)), g.Sub(bigK, pc))
			first := b.ICmp(llvm.IntEQ, pc, g.C64(0), "first")
			b.Call(g.packB, []llvm.Value{bm, bp, pc, kc, jc, nc}, "")
			g.forLoop("ic", m0, m1, int64(p.b.MC), func(ic llvm.Value) {
				mc := g.Min(g.C64(int64(p.b.MC)), g.Sub(m1, ic))
				b.Call(g.packA, []llvm.Value{a, ap, ic, mc, pc, kc}, "")
				tiles(ic, ic, mc, jc, nc, kc, first, llvm.Value{})
			})
		})
	})
}

// dispatch emits the choice among micro-kernel variants: level 0 picks the
// depth, 1 the rows, 2 the columns; conds[level] is true for the full size.
func (g *gemmGen) dispatch(k mkKey, level int, conds [3]llvm.Value, args []llvm.Value) {
	p := g.p
	if level == 3 {
		f, ok := g.mk[k]
		if !ok {
			g.err = errNoVariant // unreachable by construction
			return
		}
		g.B.Call(f, args, "")
		return
	}
	var opts []int
	switch level {
	case 0:
		opts = []int{p.b.KC}
		if p.kcLast != p.b.KC {
			opts = append(opts, p.kcLast)
		}
	case 1:
		opts = variants(p.s.M, p.b.MR)
	case 2:
		opts = variants(p.s.N, p.b.NR)
	}
	set := func(v int) mkKey {
		switch level {
		case 0:
			k.kc = v
		case 1:
			k.rows = v
		default:
			k.cols = v
		}
		return k
	}
	if len(opts) == 1 {
		g.dispatch(set(opts[0]), level+1, conds, args)
		return
	}
	g.ifElse("v"+strconv.Itoa(level), conds[level],
		func() { g.dispatch(set(opts[0]), level+1, conds, args) },
		func() { g.dispatch(set(opts[1]), level+1, conds, args) })
}
