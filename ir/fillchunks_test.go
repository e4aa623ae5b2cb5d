package ir

import (
	"math"
	"testing"
)

// FillChunks hands out exactly Fill[float64]'s values, in order, for every
// kind of initialiser and every piece size (one value, a size that does not
// divide n, n, more than n).
func TestFillChunksMatchesFill(t *testing.T) {
	const n = 1000
	inits := []*Init{
		{Kind: InitZeros}, {Kind: InitOnes},
		{Kind: InitNormal, Mean: 0.1, Std: 0.02, Seed: 7},
		{Kind: InitUniform, Low: -0.5, High: 0.25, Seed: 9},
		{Kind: InitExplicit, Data: func() []float64 {
			d := make([]float64, n)
			for i := range d {
				d[i] = float64(i) / 3
			}
			return d
		}()},
		{Kind: InitSupport, Seed: 3, Total: 50 * n},
	}
	for _, in := range inits {
		want := make([]float64, n)
		if err := Fill(in, want); err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{1, 7, 333, n, 4 * n} {
			got := make([]float64, n)
			next := 0
			err := FillChunks(in, n, make([]float64, chunk), func(off int, vals []float64) {
				if off != next || len(vals) == 0 || len(vals) > chunk {
					t.Fatalf("%v chunk %d: piece at %d of %d values, want at %d", in.Kind, chunk, off, len(vals), next)
				}
				copy(got[off:], vals)
				next += len(vals)
			})
			if err != nil || next != n {
				t.Fatalf("%v chunk %d: %v, %d values", in.Kind, chunk, err, next)
			}
			for i := range got {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
					t.Fatalf("%v chunk %d: value %d is %v, Fill gives %v", in.Kind, chunk, i, got[i], want[i])
				}
			}
		}
	}
	if err := FillChunks(&Init{Kind: InitExplicit, Data: []float64{1}}, 2, make([]float64, 4), func(int, []float64) {}); err == nil {
		t.Error("explicit init of the wrong size accepted")
	}
	if err := FillChunks(&Init{Kind: InitOnes}, 2, nil, func(int, []float64) {}); err == nil {
		t.Error("no buffer accepted")
	}
}
