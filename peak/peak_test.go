package peak

import (
	"math"
	"testing"
	"time"
)

// reference is acc[j][l] += x·y, n times, in float32 on the first lanes of
// every chain, the other lanes untouched; for the bf16 path x and y are
// rounded to bf16 and each chain is (acc + 2n times x·y) + (0 + 2n times
// x·y), its two registers.
func reference(p Path, n int, acc *Accumulators, x, y float32) {
	if p == PathAVX512BF16 {
		x, y = bf16Float(x), bf16Float(y)
	}
	for j := range acc {
		for l := 0; l < p.Lanes(); l++ {
			r, s := acc[j][l], float32(0)
			for i := 0; i < n; i++ {
				r = r + float32(x*y)
				if p == PathAVX512BF16 {
					r = r + float32(x*y)
					s = s + float32(x*y)
					s = s + float32(x*y)
				}
			}
			acc[j][l] = r + s
		}
	}
}

// bf16Float is x rounded to bf16, as a float32.
func bf16Float(x float32) float32 { return math.Float32frombits(uint32(bf16(x)) << 16) }

func allPaths() []Path { return []Path{PathGo, PathSSE, PathFMA, PathAVX512, PathAVX512BF16} }

// Every path leaves exactly the scalar loop's values in its lanes and the
// other lanes alone: the FMA rounds once, but x·y is exact here. For the
// bf16 dot product every partial sum is exact too (1 + 2⁻²⁴ is not, so that
// case is left out there: vdpbf16ps may round once or twice per pair).
func TestLoopValues(t *testing.T) {
	for _, p := range allPaths() {
		if !p.Supported() {
			t.Logf("%v: not supported here, skipped", p)
			continue
		}
		for _, c := range []struct {
			n    int
			x, y float32
		}{{1, 0.75, 1.25}, {2, -3, 0.5}, {7, 1, 0x1p-20}, {1000, 0.375, -0.125}, {100003, 1, 0x1p-24}, {100003, -1, 0x1p-12}} {
			if p == PathAVX512BF16 && c.y == 0x1p-24 {
				continue
			}
			var got, want Accumulators
			seedAccumulators(&got)
			for j := range got {
				for l := range got[j] {
					got[j][l] *= float32(1 - 2*(l%2)) // both signs
				}
			}
			want = got
			Run(p, c.n, &got, c.x, c.y)
			reference(p, c.n, &want, c.x, c.y)
			if got != want {
				t.Errorf("%v, n %d, x·y %g·%g: accumulators\n%v\nwant\n%v", p, c.n, c.x, c.y, got, want)
			}
		}
	}
}

// The bf16 loop on known values: 1 + 4·n·2⁻¹⁰ after n iterations of four
// products 2⁻⁵·2⁻⁵ (two per register of a chain), and x, y rounded to bf16
// on the way in (1 + 2⁻⁹ is 1 in bf16, 1 + 3·2⁻⁹ rounds up to 1 + 2⁻⁷).
func TestLoopBF16KnownValue(t *testing.T) {
	p := PathAVX512BF16
	if !p.Supported() {
		t.Skip("no AVX512-BF16 here")
	}
	for _, c := range []struct {
		x, y, want float32
	}{{0x1p-5, 0x1p-5, 1 + 4*3000*0x1p-10}, {1 + 0x1p-9, 0x1p-6, 1 + 4*3000*0x1p-6}, {1 + 3*0x1p-9, 0x1p-6, 1 + 4*3000*(1+0x1p-7)*0x1p-6}} {
		var acc Accumulators
		for j := range acc {
			for l := range acc[j] {
				acc[j][l] = 1
			}
		}
		Run(p, 3000, &acc, c.x, c.y)
		for j := range acc {
			for l := 0; l < p.Lanes(); l++ {
				if acc[j][l] != c.want {
					t.Fatalf("x %g y %g: chain %d lane %d = %g, want %g", c.x, c.y, j, l, acc[j][l], c.want)
				}
			}
		}
	}
}

func TestBF16(t *testing.T) {
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{1, 0x3f80}, {-2, 0xc000}, {1 + 0x1p-8, 0x3f80}, {1 + 3*0x1p-8, 0x3f82}, {1 + 0x1p-8 + 0x1p-20, 0x3f81},
		{float32(math.Inf(-1)), 0xff80}, {math.MaxFloat32, 0x7f80}, {0x1p-130, 0x0008},
	} {
		if got := bf16(c.x); got != c.want {
			t.Errorf("bf16(%g) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	if got := bf16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("bf16(NaN) = %#04x, not a NaN", got)
	}
}

// A known value: 1 + n·2⁻¹⁰ after n additions of 2⁻¹⁰ (all exact).
func TestLoopKnownValue(t *testing.T) {
	p := Best()
	var acc Accumulators
	for j := range acc {
		for l := range acc[j] {
			acc[j][l] = 1
		}
	}
	Run(p, 3000, &acc, 0x1p-5, 0x1p-5)
	for j := range acc {
		for l := 0; l < p.Lanes(); l++ {
			if want := float32(1 + 3000*0x1p-10); acc[j][l] != want {
				t.Fatalf("%v: chain %d lane %d = %g, want %g", p, j, l, acc[j][l], want)
			}
		}
	}
}

func TestRunZero(t *testing.T) {
	var acc Accumulators
	acc[3][2] = 5
	for _, p := range allPaths() {
		if p.Supported() {
			Run(p, 0, &acc, 1, 1)
			Run(p, -4, &acc, 1, 1)
		}
	}
	if acc[3][2] != 5 {
		t.Errorf("n <= 0 changed the accumulators")
	}
}

func TestFlopsPerIter(t *testing.T) {
	for p, want := range map[Path]int64{PathGo: 24, PathSSE: 96, PathFMA: 192, PathAVX512: 384, PathAVX512BF16: 1536, PathAMXBF16: 65536} {
		if got := p.FlopsPerIter(); got != want {
			t.Errorf("%v: %d flop per iteration, want %d", p, got, want)
		}
	}
}

// Measure returns a positive figure for the path it names, quickly; no
// timing is asserted beyond that.
func TestMeasure(t *testing.T) {
	for _, threads := range []int{1, 3} {
		r, err := Measure(threads, 40*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if r.Path != Best() || r.Threads != threads || !(r.GFLOPS > 0) || r.Elapsed <= 0 {
			t.Errorf("Measure(%d): %+v", threads, r)
		}
		t.Logf("%d threads: %.1f GFLOP/s (%v, %v)", threads, r.GFLOPS, r.Path, r.Elapsed)
	}
	if _, err := Measure(0, time.Millisecond); err == nil {
		t.Error("Measure(0 threads) did not fail")
	}
}

// TestMeasureBF16 measures the bf16 peak where the CPU has it.
func TestMeasureBF16(t *testing.T) {
	r, err := MeasurePath(PathAVX512BF16, 1, 40*time.Millisecond)
	if !PathAVX512BF16.Supported() {
		if err == nil {
			t.Error("MeasurePath on an unsupported path did not fail")
		}
		t.Skip("no AVX512-BF16 here")
	}
	if err != nil || r.Path != PathAVX512BF16 || !(r.GFLOPS > 0) {
		t.Fatalf("MeasurePath(bf16): %+v, %v", r, err)
	}
	if Best() == PathAVX512BF16 {
		t.Error("Best picked the bf16 path; it must stay fp32")
	}
	t.Logf("1 thread: %.1f GFLOP/s (%v)", r.GFLOPS, r.Path)
}

// BenchmarkPeakBF16 is BenchmarkPeak's bf16 dot-product counterpart, with
// the ratio to the fp32 peak measured right before it.
func BenchmarkPeakBF16(b *testing.B) {
	if !PathAVX512BF16.Supported() {
		b.Skip("no AVX512-BF16 here")
	}
	for i := 0; i < b.N; i++ {
		f, err := Measure(2, 300*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		r, err := MeasurePath(PathAVX512BF16, 2, 300*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.GFLOPS, "GFLOP/s")
		b.ReportMetric(r.GFLOPS/f.GFLOPS, "bf16/fp32")
	}
}

func BenchmarkPeak(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r, err := Measure(2, 300*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.GFLOPS, "GFLOP/s")
	}
}
