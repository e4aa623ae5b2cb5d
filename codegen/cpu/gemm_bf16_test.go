package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// The bf16 tests run every kernel on two kinds of inputs.
//
// Grid inputs are multiples of 2⁻⁴ of magnitude at most 4 (bf16 holds them
// exactly: 7 significant bits), alpha is a power of two and K ≤ 4096: every
// product is a multiple of 2⁻⁸ below 16 and every partial sum, in any order,
// a multiple of 2⁻⁸ below 2¹⁶, so float32 holds it exactly. The kernel's
// float32 result is then exact whatever its summation order, blocking or
// instruction (vdpbf16ps included), and a bf16 C must be bit for bit the
// round-to-nearest-even of the exact value: an exact test of the packing,
// the pairing, the edges and the final rounding on every path.
//
// Random inputs (magnitudes in [0.25, 1.25), the bf16 operands rounded to
// bf16 first, so the float64 reference multiplies the very values the
// kernel sees) check the arithmetic where sums do round. Both paths
// accumulate in float32 with one rounding per k: llvm.fma rounds a·b + acc
// once; vdpbf16ps computes acc + a₁b₁ + a₀b₀ with two roundings (products of
// bf16 values are exact in float32; Zen 5 behaves as Intel's pseudocode,
// measured: 1 + 2⁻²⁴ + 2⁻²⁴ gives 1), i.e. again one per k. The orders
// differ (pairs, odd k first), so the paths agree only to rounding: the
// error of a K-term float32 sum is below K·2⁻²⁴·Σ|ab| in the worst case and
// about √K·2⁻²⁴·Σ|ab| typically; 1e-5·Σ|ab| (as in TestGEMM) covers the
// K ≤ 601 used here with a wide margin. vdpbf16ps flushes denormal inputs,
// products and sums to zero (DAZ/FTZ, measured on this host too), which
// these magnitudes never produce. A bf16 C adds the final rounding, at most
// half an ulp: 2⁻⁸·|value|.

// bf16Poison is a NaN that must never leak into C; bf16Sentinel (−12288)
// fills bf16 memory around C that no kernel may write.
const (
	bf16Poison   = 0x7fc1
	bf16Sentinel = 0xc640
)

// refBF16 rounds x to bf16 to nearest, ties to even, independently of the
// kernels' bit trick: it picks the nearer of the two bf16 neighbours in
// float64. NaN gives a quiet NaN.
func refBF16(x float32) uint16 {
	if x != x {
		return 0x7fc0
	}
	u := math.Float32bits(x)
	lo := uint16(u >> 16) // toward zero
	if u&0xffff == 0 {
		return lo
	}
	hi := lo + 1 // away from zero (max finite + 1 is inf: right)
	d := func(h uint16) float64 {
		v := float64(fromBF16(h))
		if math.IsInf(v, 0) {
			// Overflow: IEEE rounds as if the exponent range went on, so
			// the neighbour past the largest finite bf16 is ±2¹²⁸.
			v = math.Copysign(0x1p128, v)
		}
		return math.Abs(v - float64(x))
	}
	switch dl, dh := d(lo), d(hi); {
	case dl < dh:
		return lo
	case dh < dl:
		return hi
	case lo&1 == 0:
		return lo
	}
	return hi
}

// fromBF16 widens bf16 bits to float32.
func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// operand is one buffer of a GEMM: floats or bf16 bit patterns.
type operand struct {
	el Elem
	f  []float32
	h  []uint16 // even length, so that view covers it exactly
}

func newOperand(el Elem, n int64) *operand {
	if el == BF16 {
		return &operand{el: el, h: make([]uint16, n+n%2)}
	}
	return &operand{el: el, f: make([]float32, n)}
}

func (o *operand) len() int64 {
	if o.el == BF16 {
		return int64(len(o.h))
	}
	return int64(len(o.f))
}

// set stores x, rounded to bf16 for a bf16 operand.
func (o *operand) set(i int64, x float32) {
	if o.el == BF16 {
		o.h[i] = refBF16(x)
	} else {
		o.f[i] = x
	}
}

func (o *operand) setBits(i int64, bits uint32) {
	if o.el == BF16 {
		o.h[i] = uint16(bits)
	} else {
		o.f[i] = math.Float32frombits(bits)
	}
}

func (o *operand) get(i int64) float32 {
	if o.el == BF16 {
		return fromBF16(o.h[i])
	}
	return o.f[i]
}

func (o *operand) bits(i int64) uint32 {
	if o.el == BF16 {
		return uint32(o.h[i])
	}
	return math.Float32bits(o.f[i])
}

// view is the buffer as the []float32 the test ABI passes.
func (o *operand) view() []float32 {
	if o.el == BF16 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&o.h[0])), len(o.h)/2)
	}
	return o.f
}

func (o *operand) clone() *operand {
	return &operand{el: o.el, f: append([]float32(nil), o.f...), h: append([]uint16(nil), o.h...)}
}

// referenceOf is reference for typed operands: the float64 sum of the
// products of the values as stored, and the error scale.
func referenceOf(s GEMM, a, b, c *operand) (want, scale []float64) {
	_, _, lc := s.Lens()
	want, scale = make([]float64, lc), make([]float64, lc)
	for bi := 0; bi < s.Batch; bi++ {
		ao, bo, co := int64(bi)*s.StrideA, int64(bi)*s.StrideB, int64(bi)*s.StrideC
		for i := 0; i < s.M; i++ {
			for j := 0; j < s.N; j++ {
				var sum, abs float64
				for k := 0; k < s.K; k++ {
					ai, bj := ao+int64(i*s.K+k), bo+int64(k*s.N+j)
					if s.TransA {
						ai = ao + int64(k*s.M+i)
					}
					if s.TransB {
						bj = bo + int64(j*s.K+k)
					}
					x, y := float64(a.get(ai)), float64(b.get(bj))
					sum += x * y
					abs += math.Abs(x * y)
				}
				idx := co + int64(i*s.N+j)
				want[idx] = float64(s.Alpha) * sum
				scale[idx] = math.Abs(float64(s.Alpha)) * abs
				if s.Accumulate {
					want[idx] += float64(c.get(idx))
					scale[idx] += math.Abs(float64(c.get(idx)))
				}
			}
		}
	}
	return want, scale
}

// checkKernelTyped runs kernel fn of k with 1, 2 and 3 threads on grid and
// random inputs (see the top of the file), comparing with the float64
// reference, and checks that nothing outside C is written and that the
// results are bit-identical across thread counts.
func checkKernelTyped(t *testing.T, fn unsafe.Pointer, k Kernel) {
	t.Helper()
	s := k.GEMM
	for _, grid := range []bool{true, false} {
		r := rand.New(rand.NewPCG(uint64(s.M*1000003+s.N*1009+s.K), 11))
		la, lb, lc := s.Lens()
		a, b := newOperand(s.ElemA, la), newOperand(s.ElemB, lb)
		value := func() float32 {
			if grid {
				return float32(r.IntN(129)-64) / 16
			}
			v := 0.25 + r.Float32()
			if r.IntN(2) == 0 {
				v = -v
			}
			return v
		}
		for i := int64(0); i < la; i++ {
			a.set(i, value())
		}
		for i := int64(0); i < lb; i++ {
			b.set(i, value())
		}
		old := newOperand(s.ElemC, lc+guard)
		for i := int64(0); i < old.len(); i++ {
			switch {
			case i >= lc || !inC(s, i):
				if s.ElemC == BF16 {
					old.setBits(i, bf16Sentinel)
				} else {
					old.set(i, sentinel)
				}
			case s.Accumulate && grid:
				old.set(i, float32(r.IntN(129)-64)/16)
			case s.Accumulate:
				old.set(i, r.Float32()*2-1)
			case s.ElemC == BF16:
				old.setBits(i, bf16Poison) // must never be read
			default:
				old.set(i, float32(math.NaN()))
			}
		}
		want, scale := referenceOf(s, a, b, old)
		var first *operand
		for nt := 1; nt <= 3; nt++ {
			c := old.clone()
			runThreads(fn, k, c.view(), a.view(), b.view(), newScratch(k, nt))
			if first == nil {
				first = c
			} else {
				for i := int64(0); i < c.len(); i++ {
					if c.bits(i) != first.bits(i) {
						t.Fatalf("%s: C[%d] = %#x with %d threads, %#x with 1", s.Name, i, c.bits(i), nt, first.bits(i))
					}
				}
			}
			bad := 0
			for i := int64(0); i < c.len(); i++ {
				got := c.get(i)
				if i >= lc || !inC(s, i) {
					if c.bits(i) != old.bits(i) {
						t.Errorf("%s, %d threads: wrote outside C at flat index %d: %v", s.Name, nt, i, got)
						bad++
					}
				} else if grid {
					// Exact: float32 holds want; a bf16 C is its rounding.
					exp := math.Float32bits(float32(want[i]))
					if s.ElemC == BF16 {
						exp = uint32(refBF16(float32(want[i])))
					}
					if c.bits(i) != exp || float64(float32(want[i])) != want[i] {
						t.Errorf("%s, %d threads, grid: C[%d] = %v (%#x), want exactly %v (%#x)", s.Name, nt, i, got, c.bits(i), want[i], exp)
						bad++
					}
				} else {
					tol := 1e-5*scale[i] + 1e-30
					if s.ElemC == BF16 {
						tol = 0x1p-8*math.Abs(want[i]) + (1+0x1p-8)*tol
					}
					if d := math.Abs(float64(got) - want[i]); !(d <= tol) {
						t.Errorf("%s, %d threads: C[%d] = %v, want %v (|err| %.3g > %.3g)", s.Name, nt, i, got, want[i], d, tol)
						bad++
					}
				}
				if bad >= 5 {
					t.FailNow()
				}
			}
		}
	}
}

// elemSets are the (A, B, C) element types the bf16 tests cover; the first
// two are the ones training uses (bf16 model, mixed precision).
var elemSets = [][3]Elem{
	{BF16, BF16, BF16}, {BF16, BF16, F32}, {F32, BF16, F32}, {BF16, F32, BF16}, {F32, F32, BF16},
}

// bf16Shapes exercise tiny and odd K (one pair, a lone half pair), full and
// edge tiles in every dimension, K split into blocks with an odd last one
// (601, 1100 with the default blocking; all but the tiniest with the small
// one) and several M and N blocks.
var bf16Shapes = [][3]int{
	{1, 1, 1}, {1, 1, 2}, {5, 17, 3}, {16, 32, 2}, {33, 65, 17}, {9, 33, 601},
	{40, 70, 1100}, {100, 3, 64}, {3, 100, 9}, {300, 40, 20},
}

// Coverage levels of testJobsBF16 (compiling the kernels is what takes the
// time).
const (
	lite = iota // a few shapes, one transpose each, Accumulate, a batch
	std         // every shape with B transposed, every transpose of two
	full        // every transpose of every shape
)

// testJobsBF16 lists the kernels of TestGEMMBF16 for generator g and the
// element types e: at level std, every shape with B transposed (the
// forward pass's x·Wᵀ), every transpose of two shapes (one over K blocks
// with an odd last one), alpha ≠ 1 with and without Accumulate (over one K
// block and over several), and batches with gaps, a shared operand and odd
// strides; more or less of it at the other levels.
func testJobsBF16(g *Generator, prefix string, e [3]Elem, level int) []job {
	var jobs []job
	add := func(s GEMM) {
		s.Name = fmt.Sprintf("%s_%d", prefix, len(jobs))
		s.ElemA, s.ElemB, s.ElemC = e[0], e[1], e[2]
		jobs = append(jobs, job{g, s})
	}
	some := func(sh [3]int) bool { return sh == [3]int{33, 65, 17} || sh == [3]int{9, 33, 601} }
	for _, sh := range bf16Shapes {
		for tr := 0; tr < 4; tr++ {
			var ok bool
			switch level {
			case full:
				ok = true
			case std:
				ok = tr == 1 || some(sh)
			default:
				ok = (tr == 1 && (sh[0] == 1 || sh[2] == 3 || sh[2] == 1100)) || (sh == [3]int{33, 65, 17} && tr != 1)
			}
			if ok {
				add(GEMM{M: sh[0], N: sh[1], K: sh[2], TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: 1})
			}
		}
	}
	for tr := 0; tr < 4; tr++ {
		if level > lite || tr == 2 {
			add(GEMM{M: 33, N: 65, K: 17, TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: -0.5, Accumulate: true})
		}
		if level == full || tr == 1 || (tr == 2 && level == std) {
			add(GEMM{M: 33, N: 65, K: 601, TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: 2, Accumulate: true})
		}
		if level == full || (tr == 1 && level == std) {
			add(GEMM{M: 33, N: 65, K: 17, TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: 0.125})
		}
	}
	if level > lite {
		add(GEMM{M: 7, N: 13, K: 5, Batch: 3, StrideA: 35, StrideB: 65, StrideC: 91, Alpha: 1})
		add(GEMM{M: 2, N: 40, K: 9, TransB: true, Batch: 5, StrideA: 19, StrideB: 361, StrideC: 81, Alpha: 1, Accumulate: true})
	}
	add(GEMM{M: 33, N: 65, K: 17, TransA: true, TransB: true, Batch: 4, StrideA: 33 * 17, StrideB: 0,
		StrideC: 33*65 + 11, Alpha: 0.5, Accumulate: true})
	return jobs
}

// cpuMachine returns an -O3 PIC machine for a named CPU, with no feature
// string: the name alone sets the instruction set.
func cpuMachine(tb testing.TB, cpu string) llvm.TargetMachine {
	tb.Helper()
	tm, err := llvm.NewTargetMachine(llvm.DefaultTargetTriple(), llvm.MachineOptions{
		CPU: cpu, OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tm.Dispose)
	return tm
}

// hostHasBF16 reports whether this host runs vdpbf16ps.
func hostHasBF16() bool {
	f := llvm.HostCPUFeatures()
	return llvm.HasFeature(f, "avx512f") && llvm.HasFeature(f, "avx512bf16")
}

func TestGEMMBF16(t *testing.T) {
	tm := hostMachine(t)
	host := NewGenerator(tm)
	if !hostRuns(host.Arch) {
		t.Skipf("host %s cannot run its own kernels?", host.Arch.CPU)
	}
	if host.Arch.BF16 != hostHasBF16() {
		t.Errorf("host arch BF16 = %v, host has avx512bf16: %v", host.Arch.BF16, hostHasBF16())
	}
	// Tiny blocks: several jc, pc, ic blocks per call, odd last K blocks,
	// the workspace path with several blocks of it.
	small := NewGenerator(tm)
	for _, b := range []*Blocking{&small.Blocking, &small.BlockingBF16} {
		b.MC, b.KC, b.NC, b.Unroll = 2*b.MR, 7, 2*b.NR, 3
	}
	small.wBudget = 2 * 4 * small.Blocking.MC * small.Blocking.NC // MW = 2·MC
	// The vdpbf16ps path (on this host) gets every transpose of every shape
	// for bf16 throughout, the fallbacks and mixed types less.
	bb, bbf, fb, bfb, ffb := elemSets[0], elemSets[1], elemSets[2], elemSets[3], elemSets[4]
	jobs := testJobsBF16(host, "host", bb, full)
	jobs = append(jobs, testJobsBF16(host, "hostmixed", bbf, std)...)
	for i, e := range [][3]Elem{fb, bfb, ffb} {
		jobs = append(jobs, testJobsBF16(host, fmt.Sprintf("hostmix%d", i), e, lite)...)
	}
	jobs = append(jobs, testJobsBF16(small, "small", bb, std)...)
	jobs = append(jobs, testJobsBF16(small, "smallmixed", bbf, lite)...)
	// The fallback: bf16 converted to float32 while packing, on AVX-512
	// without AVX512-BF16, AVX2 and SSE.
	for _, c := range []struct {
		cpu, prefix string
		w           int
		e           [3]Elem
		level       int
	}{
		{"x86-64-v4", "v4", 16, bb, std}, {"skylake-avx512", "skx", 16, bbf, lite},
		{"x86-64-v3", "v3", 8, bb, lite}, {"x86-64-v3", "v3mixed", 8, bbf, lite}, {"x86-64", "sse", 4, bb, lite},
	} {
		g := NewGenerator(cpuMachine(t, c.cpu))
		if g.Arch.VectorWidth != c.w || g.Arch.BF16 {
			t.Errorf("%s: arch %+v, want width %d without BF16", c.cpu, g.Arch, c.w)
		}
		if !hostRuns(g.Arch) {
			t.Logf("%s: host cannot run it, skipped", c.cpu)
			continue
		}
		jobs = append(jobs, testJobsBF16(g, c.prefix, c.e, c.level)...)
	}
	kernels, fns := buildLibParallel(t, jobs, runtime.NumCPU())
	dots := 0
	for i, k := range kernels {
		wantDot := jobs[i].gen.Arch.BF16 && !jobs[i].gen.Arch.AMX && k.ElemA == BF16 && k.ElemB == BF16
		if k.DotBF16 != wantDot {
			t.Errorf("%s: DotBF16 = %v, want %v", k.Name, k.DotBF16, wantDot)
		}
		if k.DotBF16 {
			dots++
		}
		t.Run(fmt.Sprintf("%s/%v,%v,%v/%dx%dx%d/tA=%v,tB=%v,alpha=%g,acc=%v,batch=%d,dot=%v",
			k.Name, k.ElemA, k.ElemB, k.ElemC, k.M, k.N, k.K, k.TransA, k.TransB, k.Alpha, k.Accumulate, k.Batch, k.DotBF16), func(t *testing.T) {
			checkKernelTyped(t, fns[i], k)
		})
	}
	if hostHasBF16() && !host.Arch.AMX && dots == 0 {
		t.Error("no kernel took the vdpbf16ps path")
	}
	t.Logf("%d kernels, %d on the vdpbf16ps path", len(kernels), dots)
}

// TestGEMMRoundBF16 checks the rounding of a bf16 C bit for bit on special
// values: C = 1·B with K = 1 and a float32 B, so C is B rounded; and with
// Accumulate, a NaN already in C stays NaN.
func TestGEMMRoundBF16(t *testing.T) {
	vals := []uint32{
		0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f817fff, // 1, ties to even, just above/below
		0xbf808000, 0xbf818000, 0x00000000, 0x80000000, // negative ties, ±0
		0x7f7fffff, 0xff7fffff, 0x7f7f7fff, 0x7f7f8000, // to ±inf, stays finite, tie to inf
		0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, // ±inf, NaNs (quiet, signalling)
		0x7fffffff, 0xffffffff, 0x7fff8000, 0xff80ffff, // NaNs that the rounding add would carry into the sign or to inf
		0x00000001, 0x00008000, 0x00018000, 0x00010000, 0x807fffff, 0x00800000, 0x0080ffff, // denormals, smallest normal
		0x4b7fffff, 0x3eaaaaab, 0xc2f6e979,
	}
	n := len(vals)
	tm := hostMachine(t)
	gens := []*Generator{NewGenerator(tm)}
	for _, cpu := range []string{"x86-64-v4", "x86-64-v3", "x86-64"} {
		if g := NewGenerator(cpuMachine(t, cpu)); hostRuns(g.Arch) {
			gens = append(gens, g)
		}
	}
	var jobs []job
	for gi, g := range gens {
		for _, acc := range []bool{false, true} {
			jobs = append(jobs, job{g, GEMM{Name: fmt.Sprintf("round_%d_%v", gi, acc), M: 3, N: n, K: 1, Alpha: 1,
				Accumulate: acc, ElemC: BF16}})
		}
	}
	kernels, fns := buildLib(t, tm, jobs)
	for i, k := range kernels {
		a := []float32{1, 1, 1}
		b := make([]float32, n)
		for j, v := range vals {
			b[j] = math.Float32frombits(v)
		}
		c := make([]uint16, 3*n+2)
		for j := range c {
			c[j] = 0 // +0: adding it changes nothing
		}
		if k.Accumulate {
			c[n+5] = bf16Poison // row 1: NaN + x is NaN
			c[2*n+6] = 0x8000   // −0 + x
		}
		old := append([]uint16(nil), c...)
		cf := unsafe.Slice((*float32)(unsafe.Pointer(&c[0])), len(c)/2)
		runThreads(fns[i], k, cf, a, b, newScratch(k, 1))
		var zero float32 // the accumulators start at +0: −0 comes out +0
		for r := 0; r < 3; r++ {
			for j, v := range vals {
				got := c[r*n+j]
				x := zero + math.Float32frombits(v)
				if k.Accumulate {
					x = fromBF16(old[r*n+j]) + x
				}
				want := refBF16(x)
				isNaN := func(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }
				if isNaN(want) {
					if !isNaN(got) {
						t.Errorf("%s: C[%d][%d] from %#08x = %#04x, want a NaN", k.Name, r, j, v, got)
					}
				} else if got != want {
					t.Errorf("%s: C[%d][%d] from %#08x (%g) = %#04x, want %#04x", k.Name, r, j, v, math.Float32frombits(v), got, want)
				}
			}
		}
	}
}

func TestRefBF16(t *testing.T) {
	// refBF16 is the test's oracle: check it against the bit trick the
	// kernels use on many random patterns, and on a few by hand.
	trick := func(u uint32) uint16 {
		if f := math.Float32frombits(u); f != f {
			return uint16(u>>16) | 0x40
		}
		return uint16((u + 0x7fff + (u>>16)&1) >> 16)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1<<20; i++ {
		u := r.Uint32()
		if i%4 == 0 {
			u = u&^0xffff | 0x8000 // ties
		}
		if f := math.Float32frombits(u); f == f && refBF16(f) != trick(u) {
			t.Fatalf("%#08x: refBF16 %#04x, trick %#04x", u, refBF16(f), trick(u))
		}
	}
	for _, c := range [][2]uint32{{0x3f808000, 0x3f80}, {0x3f818000, 0x3f82}, {0x7f7fffff, 0x7f80}, {0x00008000, 0x0000}, {0x00018000, 0x0002}} {
		if got := refBF16(math.Float32frombits(c[0])); uint32(got) != c[1] {
			t.Errorf("refBF16(%#08x) = %#04x, want %#04x", c[0], got, c[1])
		}
	}
}

func TestAddErrorsBF16(t *testing.T) {
	tm := hostMachine(t)
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("errs")
	defer m.Dispose()
	m.ConfigureFor(tm)
	g := NewGenerator(tm)
	if _, err := g.Add(m, GEMM{Name: "e1", M: 4, N: 5, K: 6, Alpha: 1, ElemB: 7}); err == nil || !strings.Contains(err.Error(), "element type") {
		t.Errorf("element type 7: err = %v", err)
	}
	if !g.Arch.BF16 {
		return
	}
	bad := *g
	bad.BlockingBF16.KC = 1
	if _, err := bad.Add(m, GEMM{Name: "e2", M: 4, N: 5, K: 6, Alpha: 1, ElemA: BF16, ElemB: BF16}); err == nil || !strings.Contains(err.Error(), "KC") {
		t.Errorf("bf16 KC 1: err = %v", err)
	}
	// The zero BlockingBF16 means the default.
	zero := Generator{Arch: g.Arch, Blocking: g.Blocking}
	k, err := zero.Add(m, GEMM{Name: "e3", M: 40, N: 50, K: 60, Alpha: 1, ElemA: BF16, ElemB: BF16})
	if err != nil || !k.DotBF16 || k.Blocking.MR != DefaultBlockingBF16().MR {
		t.Errorf("zero BlockingBF16: %+v, %v", k, err)
	}
	if err := m.Verify(); err != nil {
		t.Fatalf("failed Adds left a broken module: %v", err)
	}
}

func TestPlanBF16(t *testing.T) {
	b := DefaultBlockingBF16()
	for _, c := range []struct {
		m, n, k    int
		ec         Elem
		kc, kcLast int
		viaW       bool
	}{
		{2048, 512, 512, BF16, 512, 512, false},
		{2048, 512, 1376, F32, 460, 456, false},
		{2048, 512, 1376, BF16, 460, 456, true},
		{64, 64, 1025, BF16, 344, 337, true},
		{7, 13, 5, BF16, 5, 5, false},
		{7, 13, 1, F32, 1, 1, false},
	} {
		p := newPlan(GEMM{M: c.m, N: c.n, K: c.k, Batch: 1, Alpha: 1, ElemA: BF16, ElemB: BF16, ElemC: c.ec}, b, true)
		if p.b.KC != c.kc || p.kcLast != c.kcLast || p.viaW != c.viaW {
			t.Errorf("%dx%dx%d C %v: KC %d last %d viaW %v, want %d %d %v", c.m, c.n, c.k, c.ec, p.b.KC, p.kcLast, p.viaW, c.kc, c.kcLast, c.viaW)
		}
		if nk := ceilDiv(c.k, p.b.KC); nk > 1 && p.b.KC%2 != 0 {
			t.Errorf("%dx%dx%d: KC %d is odd with %d K blocks", c.m, c.n, c.k, p.b.KC, nk)
		}
		want := 64 + roundUp(2*p.b.MC*roundUp(p.b.KC, 2), 64) + roundUp(2*p.b.NC*roundUp(p.b.KC, 2), 64)
		if c.viaW {
			want += roundUp(4*p.mw*p.b.NC, 64)
			if p.mw%p.b.MC != 0 || 4*p.mw*p.b.NC > max(defaultWBudget, 4*p.b.MC*p.b.NC) || p.mw > roundUp(c.m, p.b.MC) {
				t.Errorf("%dx%dx%d: MW %d (MC %d, NC %d)", c.m, c.n, c.k, p.mw, p.b.MC, p.b.NC)
			}
		}
		if p.scratchBytes != int64(want) {
			t.Errorf("%dx%dx%d: scratch %d bytes, want %d", c.m, c.n, c.k, p.scratchBytes, want)
		}
	}
}
