package peak

import (
	"testing"
	"time"
)

// reference is acc[j][l] += x·y, n times, in float32 on the first lanes of
// every chain, the other lanes untouched.
func reference(n, lanes int, acc *Accumulators, x, y float32) {
	for i := 0; i < n; i++ {
		for j := range acc {
			for l := 0; l < lanes; l++ {
				acc[j][l] = acc[j][l] + float32(x*y)
			}
		}
	}
}

func allPaths() []Path { return []Path{PathGo, PathSSE, PathFMA, PathAVX512} }

// Every path leaves exactly the scalar loop's values in its lanes and the
// other lanes alone: the FMA rounds once, but x·y is exact here.
func TestLoopValues(t *testing.T) {
	for _, p := range allPaths() {
		if !p.Supported() {
			t.Logf("%v: not supported here, skipped", p)
			continue
		}
		for _, c := range []struct {
			n    int
			x, y float32
		}{{1, 0.75, 1.25}, {2, -3, 0.5}, {7, 1, 0x1p-20}, {1000, 0.375, -0.125}, {100003, 1, 0x1p-24}} {
			var got, want Accumulators
			seedAccumulators(&got)
			for j := range got {
				for l := range got[j] {
					got[j][l] *= float32(1 - 2*(l%2)) // both signs
				}
			}
			want = got
			Run(p, c.n, &got, c.x, c.y)
			reference(c.n, p.Lanes(), &want, c.x, c.y)
			if got != want {
				t.Errorf("%v, n %d, x·y %g·%g: accumulators\n%v\nwant\n%v", p, c.n, c.x, c.y, got, want)
			}
		}
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
	for p, want := range map[Path]int64{PathGo: 24, PathSSE: 96, PathFMA: 192, PathAVX512: 384} {
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

func BenchmarkPeak(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r, err := Measure(2, 300*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.GFLOPS, "GFLOP/s")
	}
}
