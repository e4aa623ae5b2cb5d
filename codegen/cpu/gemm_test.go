package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/native"
)

// guard is how many floats past the end of C each test buffer has; they,
// and the gaps between batch items, must keep the sentinel value.
const guard = 37

// sentinel fills memory outside C that no kernel may write.
const sentinel = -12345.5

// randomNonZero fills x with values of magnitude in [0.25, 1.25) and random
// sign.
func randomNonZero(r *rand.Rand, x []float32) {
	for i := range x {
		v := 0.25 + r.Float32()
		if r.IntN(2) == 0 {
			v = -v
		}
		x[i] = v
	}
}

// reference computes the expected C of s (float64 accumulation) and, per
// element, the error scale alpha·Σ|a||b| + |C_old|.
func reference(s GEMM, a, b, c []float32) (want, scale []float64) {
	_, _, lc := s.Lens()
	want, scale = make([]float64, lc), make([]float64, lc)
	for bi := 0; bi < s.Batch; bi++ {
		ao, bo, co := int64(bi)*s.StrideA, int64(bi)*s.StrideB, int64(bi)*s.StrideC
		for i := 0; i < s.M; i++ {
			for j := 0; j < s.N; j++ {
				var sum, abs float64
				for k := 0; k < s.K; k++ {
					var x, y float64
					if s.TransA {
						x = float64(a[ao+int64(k*s.M+i)])
					} else {
						x = float64(a[ao+int64(i*s.K+k)])
					}
					if s.TransB {
						y = float64(b[bo+int64(j*s.K+k)])
					} else {
						y = float64(b[bo+int64(k*s.N+j)])
					}
					sum += x * y
					abs += math.Abs(x * y)
				}
				alpha := float64(s.Alpha)
				idx := co + int64(i*s.N+j)
				want[idx] = alpha * sum
				scale[idx] = math.Abs(alpha) * abs
				if s.Accumulate {
					want[idx] += float64(c[idx])
					scale[idx] += math.Abs(float64(c[idx]))
				}
			}
		}
	}
	return want, scale
}

// inC reports whether flat index idx of the C buffer belongs to C.
func inC(s GEMM, idx int64) bool {
	if s.Batch == 1 {
		return idx < int64(s.M*s.N)
	}
	return idx%s.StrideC < int64(s.M*s.N) && idx/s.StrideC < int64(s.Batch)
}

// checkKernel runs kernel fn of k with 1, 2 and 3 threads on random inputs
// and compares with the float64 reference and across thread counts.
func checkKernel(t *testing.T, fn unsafe.Pointer, k Kernel) {
	t.Helper()
	s := k.GEMM
	r := rand.New(rand.NewPCG(uint64(s.M*1000003+s.N*1009+s.K), 7))
	la, lb, lc := s.Lens()
	a, b := make([]float32, la), make([]float32, lb)
	randomNonZero(r, a)
	randomNonZero(r, b)
	old := make([]float32, lc+guard)
	for i := range old {
		old[i] = sentinel
	}
	for i := int64(0); i < lc; i++ {
		if inC(s, i) {
			if s.Accumulate {
				old[i] = r.Float32()*2 - 1
			} else {
				old[i] = float32(math.NaN()) // must never be read
			}
		}
	}
	want, scale := reference(s, a, b, old)
	var first []float32
	for nt := 1; nt <= 3; nt++ {
		c := append([]float32(nil), old...)
		runThreads(fn, k, c, a, b, newScratch(k, nt))
		// Every element is computed in the same order whatever the thread
		// count, so the results are bit-identical.
		if first == nil {
			first = c
		} else {
			for i := range c {
				if math.Float32bits(c[i]) != math.Float32bits(first[i]) {
					t.Fatalf("%s: C[%d] = %v with %d threads, %v with 1", s.Name, i, c[i], nt, first[i])
				}
			}
		}
		bad := 0
		for i, got := range c {
			if i64 := int64(i); i64 >= lc || !inC(s, i64) {
				if got != sentinel {
					t.Errorf("%s, %d threads: wrote outside C at flat index %d: %v", s.Name, nt, i, got)
					bad++
				}
			} else if d := math.Abs(float64(got) - want[i]); !(d <= 1e-5*scale[i]+1e-30) {
				t.Errorf("%s, %d threads: C[%d] = %v, want %v (|err| %.3g > %.3g)", s.Name, nt, i, got, want[i], d, 1e-5*scale[i])
				bad++
			}
			if bad >= 5 {
				t.FailNow()
			}
		}
	}
}

// shapes exercise full tiles, edge tiles in every dimension, several K
// blocks and several M blocks.
var shapes = [][3]int{
	{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {12, 32, 8}, {24, 64, 300},
	{50, 70, 600}, {300, 40, 20}, {3, 100, 9}, {100, 3, 64},
}

// testJobs lists the kernels TestGEMM checks for generator g, named with
// prefix.
func testJobs(g *Generator, prefix string, all bool) []job {
	var jobs []job
	add := func(s GEMM) {
		s.Name = fmt.Sprintf("%s_%d", prefix, len(jobs))
		jobs = append(jobs, job{g, s})
	}
	for _, sh := range shapes {
		for tr := 0; tr < 4; tr++ {
			if !all && tr != 1 && sh != [3]int{33, 65, 17} {
				continue
			}
			add(GEMM{M: sh[0], N: sh[1], K: sh[2], TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: 1})
		}
	}
	for tr := 0; tr < 4; tr++ {
		add(GEMM{M: 33, N: 65, K: 17, TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: -0.37, Accumulate: true})
		add(GEMM{M: 33, N: 65, K: 17, TransA: tr&2 != 0, TransB: tr&1 != 0, Alpha: 0.125})
	}
	add(GEMM{M: 50, N: 70, K: 600, TransB: true, Alpha: 1, Accumulate: true})
	// Batched: contiguous items, gaps between C items, a shared operand.
	add(GEMM{M: 7, N: 13, K: 5, Batch: 3, StrideA: 35, StrideB: 65, StrideC: 91, Alpha: 1})
	add(GEMM{M: 33, N: 65, K: 17, TransA: true, TransB: true, Batch: 4, StrideA: 33 * 17, StrideB: 0,
		StrideC: 33*65 + 11, Alpha: 0.5, Accumulate: true})
	add(GEMM{M: 2, N: 40, K: 9, TransB: true, Batch: 5, StrideA: 18, StrideB: 360, StrideC: 80, Alpha: 1})
	return jobs
}

func TestGEMM(t *testing.T) {
	tm := hostMachine(t)
	host := NewGenerator(tm)
	small := NewGenerator(tm) // tiny blocks: several jc, pc, ic blocks per call
	small.Blocking.MC = 2 * small.Blocking.MR
	small.Blocking.KC = 7
	small.Blocking.NC = 2 * small.Blocking.NR
	small.Blocking.Unroll = 3
	jobs := testJobs(host, "host", true)
	jobs = append(jobs, testJobs(small, "small", false)...)
	avx2 := NewGenerator(avx2Machine(t))
	if hostRuns(avx2.Arch) {
		jobs = append(jobs, testJobs(avx2, "avx2", false)...)
	}
	sse := NewGenerator(sseMachine(t))
	if sse.Arch.VectorWidth != 4 || sse.Arch.FMA {
		t.Errorf("baseline x86-64: arch %+v, want 4-wide without FMA", sse.Arch)
	}
	jobs = append(jobs, testJobs(sse, "sse", false)...)
	if !hostRuns(host.Arch) {
		t.Skipf("host %s cannot run its own kernels?", host.Arch.CPU)
	}
	kernels, fns := buildLib(t, tm, jobs)
	for i, k := range kernels {
		t.Run(fmt.Sprintf("%s/%dx%dx%d/tA=%v,tB=%v,alpha=%g,acc=%v,batch=%d",
			k.Name, k.M, k.N, k.K, k.TransA, k.TransB, k.Alpha, k.Accumulate, k.Batch), func(t *testing.T) {
			checkKernel(t, fns[i], k)
		})
	}
	// Out-of-range thread indices do nothing.
	k, fn := kernels[0], fns[0]
	c := []float32{42}
	for _, th := range [][2]int{{1, 1}, {-1, 2}, {0, 0}, {0, -3}} {
		native.CallGEMM(fn, c, []float32{1}, []float32{1}, newScratch(k, 1)[0], th[0], th[1])
		if c[0] != 42 {
			t.Errorf("tid %d of %d wrote C", th[0], th[1])
		}
	}
}

func TestAddErrors(t *testing.T) {
	tm := hostMachine(t)
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("errs")
	defer m.Dispose()
	m.ConfigureFor(tm)
	g := NewGenerator(tm)
	if _, err := g.Add(m, GEMM{Name: "taken", M: 1, N: 1, K: 1, Alpha: 1}); err != nil {
		t.Fatal(err)
	}
	ok := GEMM{Name: "g", M: 4, N: 5, K: 6, Alpha: 1}
	for _, c := range []struct {
		name string
		edit func(*GEMM)
		want string
	}{
		{"empty name", func(s *GEMM) { s.Name = "" }, "not a C identifier"},
		{"bad name", func(s *GEMM) { s.Name = "a.b" }, "not a C identifier"},
		{"digit first", func(s *GEMM) { s.Name = "9a" }, "not a C identifier"},
		{"taken", func(s *GEMM) { s.Name = "taken" }, "already defines"},
		{"zero M", func(s *GEMM) { s.M = 0 }, "must all be ≥ 1"},
		{"negative K", func(s *GEMM) { s.K = -2 }, "must all be ≥ 1"},
		{"zero alpha", func(s *GEMM) { s.Alpha = 0 }, "alpha"},
		{"NaN alpha", func(s *GEMM) { s.Alpha = float32(math.NaN()) }, "alpha"},
		{"inf alpha", func(s *GEMM) { s.Alpha = float32(math.Inf(1)) }, "alpha"},
		{"negative batch", func(s *GEMM) { s.Batch = -1 }, "batch"},
		{"C overlap", func(s *GEMM) { s.Batch, s.StrideC = 2, 19 }, "overlap"},
		{"negative stride", func(s *GEMM) { s.Batch, s.StrideC, s.StrideA = 2, 20, -1 }, "negative"},
		{"huge", func(s *GEMM) { s.M, s.N = 1<<30, 1<<30 }, "too large"},
	} {
		s := ok
		c.edit(&s)
		if _, err := g.Add(m, s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	bad := *g
	bad.Blocking.NR = bad.Arch.VectorWidth + 1
	if _, err := bad.Add(m, ok); err == nil || !strings.Contains(err.Error(), "multiple of the vector width") {
		t.Errorf("NR not a multiple of W: err = %v", err)
	}
	bad = *g
	bad.Blocking.Unroll = 0
	if _, err := bad.Add(m, ok); err == nil {
		t.Error("Unroll 0 accepted")
	}
	if err := m.Verify(); err != nil {
		t.Fatalf("failed Adds left a broken module: %v", err)
	}
}

func TestPlan(t *testing.T) {
	b := DefaultBlocking(16)
	for _, c := range []struct {
		m, n, k             int
		mc, kc, kcLast, nc  int
		splitN              bool
		wantScratchAtMostMB float64
	}{
		{2048, 512, 512, 144, 256, 256, 512, false, 1},
		{2048, 32000, 512, 144, 256, 256, 4096, true, 5},
		{512, 512, 2048, 144, 256, 256, 512, false, 1},
		{2048, 512, 1376, 144, 232, 216, 512, false, 1},
		{7, 13, 5, 8, 5, 5, 32, true, 0.01},
	} {
		p := newPlan(GEMM{M: c.m, N: c.n, K: c.k, Batch: 1, Alpha: 1}, b, false)
		if p.b.MC != c.mc || p.b.KC != c.kc || p.kcLast != c.kcLast || p.b.NC != c.nc || p.splitN != c.splitN {
			t.Errorf("%dx%dx%d: MC %d KC %d last %d NC %d splitN %v, want %d %d %d %d %v",
				c.m, c.n, c.k, p.b.MC, p.b.KC, p.kcLast, p.b.NC, p.splitN, c.mc, c.kc, c.kcLast, c.nc, c.splitN)
		}
		if mb := float64(p.scratchBytes) / (1 << 20); mb > c.wantScratchAtMostMB {
			t.Errorf("%dx%dx%d: scratch %.2f MB", c.m, c.n, c.k, mb)
		}
	}
}
