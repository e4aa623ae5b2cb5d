package cpu

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/hostcpu"
)

// emulatedAMX returns a host generator whose bf16 GEMMs take the AMX path
// with emulated tiles (amx_emu.go), and reports false when the host cannot
// run its AVX-512 epilogue.
func emulatedAMX(t *testing.T) (*Generator, bool) {
	g := NewGenerator(hostMachine(t))
	if g.Arch.VectorWidth != 16 || !hostRuns(g.Arch) {
		return nil, false
	}
	g.Arch.AMX, g.emulateTiles = true, true
	return g, true
}

// TestGEMMAMXEmulated runs the AMX kernels, with every tile instruction
// emulated, against the float64 reference (checkKernelTyped: random and
// grid inputs, poisoned C, guards around it, 1–3 threads bit-identical):
// both bf16 modes, every transpose, K odd and below a tile's 32, M and N
// below and off multiples of 16, Accumulate, alpha, batches; with the
// default blocking and with small blocks (one-tile MR or NR, several K
// blocks with a short last one, the workspace of a bf16 C).
func TestGEMMAMXEmulated(t *testing.T) {
	host, ok := emulatedAMX(t)
	if !ok {
		t.Skip("host lacks AVX-512: the AMX kernels' epilogue cannot run here")
	}
	small := *host
	small.BlockingAMX = Blocking{MR: 16, NR: 32, MC: 32, KC: 64, NC: 64, Unroll: 1}
	small.wBudget = 2 * 4 * 32 * 64
	narrow := *host
	narrow.BlockingAMX = Blocking{MR: 32, NR: 16, MC: 64, KC: 32, NC: 32, Unroll: 1}
	bb, bbf := elemSets[0], elemSets[1]
	jobs := testJobsBF16(host, "amx", bb, full)
	jobs = append(jobs, testJobsBF16(host, "amxmixed", bbf, std)...)
	jobs = append(jobs, testJobsBF16(&small, "amxsmall", bb, std)...)
	jobs = append(jobs, testJobsBF16(&small, "amxsmallmixed", bbf, lite)...)
	jobs = append(jobs, testJobsBF16(&narrow, "amxnarrow", bb, lite)...)
	jobs = append(jobs, testJobsBF16(&narrow, "amxnarrowmixed", bbf, lite)...)
	// A mixed bf16·float32 product does not take the tiles.
	jobs = append(jobs, testJobsBF16(host, "amxf", elemSets[2], lite)[:2]...)
	kernels, fns := buildLibParallel(t, jobs, runtime.NumCPU())
	for i, k := range kernels {
		wantAMX := k.ElemA == BF16 && k.ElemB == BF16
		if k.AMX != wantAMX || (k.AMX && k.DotBF16) {
			t.Errorf("%s: AMX %v DotBF16 %v, want AMX %v", k.Name, k.AMX, k.DotBF16, wantAMX)
		}
		t.Run(fmt.Sprintf("%s/%v,%v,%v/%dx%dx%d/tA=%v,tB=%v,alpha=%g,acc=%v,batch=%d",
			k.Name, k.ElemA, k.ElemB, k.ElemC, k.M, k.N, k.K, k.TransA, k.TransB, k.Alpha, k.Accumulate, k.Batch), func(t *testing.T) {
			checkKernelTyped(t, fns[i], k)
		})
	}
}

// TestAMXEmulatedDenormals checks the emulated tdpbf16ps bit for bit on
// what sets it apart from an IEEE dot product (see the package doc): a
// denormal bf16 input counts as zero, a denormal product or sum is
// flushed to zero, a normal result is the fused sum rounded to nearest
// even. Each case is one row of C = A·B with K = 2 and float32 C.
func TestAMXEmulatedDenormals(t *testing.T) {
	g, ok := emulatedAMX(t)
	if !ok {
		t.Skip("host lacks AVX-512: the AMX kernels' epilogue cannot run here")
	}
	cases := []struct {
		a, b [2]uint16
		want uint32
	}{
		{[2]uint16{0x0001, 0}, [2]uint16{0x7f00, 0}, 0},                    // 2⁻¹³³ (denormal) · 2¹²⁷: DAZ gives 0, not 2⁻⁶
		{[2]uint16{0x807f, 0x3f80}, [2]uint16{0x7f00, 0x3f80}, 0x3f800000}, // −denormal·2¹²⁷ + 1 = 1
		{[2]uint16{0x1f80, 0}, [2]uint16{0x1f80, 0}, 0},                    // 2⁻⁶⁴·2⁻⁶⁴ = 2⁻¹²⁸ denormal: FTZ
		{[2]uint16{0x9f80, 0x8000}, [2]uint16{0x1f80, 0}, 0},               // −2⁻¹²⁸ flushed to −0; K's zero padding adds +0
		{[2]uint16{0x0080, 0x0080}, [2]uint16{0x3f80, 0xbf80}, 0},          // 2⁻¹²⁶ − 2⁻¹²⁶: smallest normals, exact 0
		{[2]uint16{0x3f81, 0x39c0}, [2]uint16{0x3f81, 0x3a00}, 0x3f820202}, // (1+2⁻⁷)² + 3·2⁻²⁴: a tie, to even
		{[2]uint16{0x0080, 0x1f80}, [2]uint16{0x3f80, 0x9c80}, 0},          // 2⁻¹²⁶ − 2⁻¹³⁴ (fused): denormal sum, FTZ
	}
	n := len(cases)
	spec := GEMM{Name: "amx_den", M: n, N: 1, K: 2, Alpha: 1, ElemA: BF16, ElemB: BF16, TransB: true, Batch: n,
		StrideA: 2, StrideB: 2, StrideC: 1}
	spec.M = 1
	kernels, fns := buildLib(t, hostMachine(t), []job{{g, spec}})
	k := kernels[0]
	a, b := make([]uint16, 2*n), make([]uint16, 2*n)
	for i, c := range cases {
		copy(a[2*i:], c.a[:])
		copy(b[2*i:], c.b[:])
	}
	c := make([]float32, n)
	for i := range c {
		c[i] = float32(math.NaN())
	}
	af := unsafe.Slice((*float32)(unsafe.Pointer(&a[0])), n)
	bf := unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	runThreads(fns[0], k, c, af, bf, newScratch(k, 1))
	for i, cs := range cases {
		if got := math.Float32bits(c[i]); got != cs.want {
			t.Errorf("case %d: A %#04x B %#04x: C = %#08x (%g), want %#08x", i, cs.a, cs.b, got, c[i], cs.want)
		}
	}
}

// TestGEMMAMX runs the real AMX kernels where the host has AMX (and Linux
// grants the tile state) with the same checks as the emulated ones.
func TestGEMMAMX(t *testing.T) {
	if !hostcpu.Supported("amx-tile") || !hostcpu.Supported("amx-bf16") {
		t.Skip("host has no AMX (CPUID/XGETBV): real tile kernels not run; TestGEMMAMXEmulated covers their structure")
	}
	if err := hostcpu.RequestAMX(); err != nil {
		t.Skipf("host has AMX but no tile state: %v", err)
	}
	host := NewGenerator(hostMachine(t))
	if !host.Arch.AMX {
		t.Fatalf("host has AMX, but its target machine's arch %+v does not", host.Arch)
	}
	jobs := testJobsBF16(host, "ramx", elemSets[0], full)
	jobs = append(jobs, testJobsBF16(host, "ramxmixed", elemSets[1], std)...)
	kernels, fns := buildLibParallel(t, jobs, runtime.NumCPU())
	for i, k := range kernels {
		if !k.AMX {
			t.Errorf("%s: not on the AMX path", k.Name)
		}
		t.Run(k.Name, func(t *testing.T) { checkKernelTyped(t, fns[i], k) })
	}
}

// TestAddErrorsAMX: bad AMX blockings are refused with the field named,
// the zero one means the default, and K blocks are whole tile depths (32)
// but for the last, with the tile area counted in the scratch size.
func TestAddErrorsAMX(t *testing.T) {
	tm := hostMachine(t)
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("errs")
	defer m.Dispose()
	m.ConfigureFor(tm)
	g := NewGenerator(tm)
	g.Arch.AMX, g.Arch.VectorWidth = true, 16
	spec := GEMM{Name: "a1", M: 40, N: 50, K: 60, Alpha: 1, ElemA: BF16, ElemB: BF16}
	for _, c := range []struct {
		b    Blocking
		want string
	}{
		{Blocking{MR: 8, NR: 32, MC: 64, KC: 64, NC: 64, Unroll: 1}, "MR and NR must be 16 or 32"},
		{Blocking{MR: 32, NR: 48, MC: 64, KC: 64, NC: 64, Unroll: 1}, "MR and NR must be 16 or 32"},
		{Blocking{MR: 16, NR: 16, MC: 64, KC: 16, NC: 64, Unroll: 1}, "KC=16"},
	} {
		bad := *g
		bad.BlockingAMX = c.b
		if _, err := bad.Add(m, spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.b, err, c.want)
		}
	}
	zero := *g
	zero.BlockingAMX = Blocking{}
	k, err := zero.Add(m, spec)
	if err != nil || !k.AMX || k.Blocking.MR != DefaultBlockingAMX().MR {
		t.Errorf("zero BlockingAMX: %+v, %v", k, err)
	}
	if err := m.Verify(); err != nil {
		t.Fatalf("failed Adds left a broken module: %v", err)
	}
	b := DefaultBlockingAMX()
	for _, c := range []struct{ k, kc, kcLast int }{{1, 1, 1}, {512, 512, 512}, {1376, 480, 416}, {1025, 352, 321}, {33, 33, 33}} {
		for _, emu := range []bool{false, true} {
			p := planFor(GEMM{M: 100, N: 70, K: c.k, Batch: 1, Alpha: 1, ElemA: BF16, ElemB: BF16, ElemC: BF16}, b, true, true, emu, defaultWBudget)
			if p.b.KC != c.kc || p.kcLast != c.kcLast {
				t.Errorf("K %d: KC %d last %d, want %d %d", c.k, p.b.KC, p.kcLast, c.kc, c.kcLast)
			}
			kcp := roundUp(p.b.KC, 32)
			want := 64 + roundUp(2*p.b.MC*kcp, 64) + roundUp(2*p.b.NC*kcp, 64) + roundUp(p.wBytes, 64) + tileAreaBytes(emu)
			if p.scratchBytes != int64(want) {
				t.Errorf("K %d emu %v: scratch %d, want %d", c.k, emu, p.scratchBytes, want)
			}
		}
	}
}
