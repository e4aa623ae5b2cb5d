package spectrum

import (
	"math"
	"slices"
	"testing"
)

// dct is the orthonormal DCT-II matrix of size n (row-major; rows and columns
// orthonormal): an orthogonal matrix built without any SVD or QR, so that
// matrices of known singular values can be made from it.
func dct(n int) []float64 {
	c := make([]float64, n*n)
	for k := range n {
		a := math.Sqrt(2 / float64(n))
		if k == 0 {
			a = math.Sqrt(1 / float64(n))
		}
		for j := range n {
			c[k*n+j] = a * math.Cos(math.Pi*float64(2*j+1)*float64(k)/float64(2*n))
		}
	}
	return c
}

// withSpectrum is U·diag(σ)·Vᵀ (rows × cols) with U the first len(σ) columns
// of dct(rows)ᵀ and V those of dct(cols)ᵀ, whose singular values are |σ|
// (and zeros).
func withSpectrum(rows, cols int, sigma []float64) []float64 {
	u, v := dct(rows), dct(cols)
	w := make([]float64, rows*cols)
	for k, s := range sigma {
		for i := range rows {
			for j := range cols {
				w[i*cols+j] += u[k*rows+i] * s * v[k*cols+j]
			}
		}
	}
	return w
}

// sortedAbs is |σ| padded with zeros to n values, largest first.
func sortedAbs(sigma []float64, n int) []float64 {
	out := make([]float64, n)
	for i, s := range sigma {
		out[i] = math.Abs(s)
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// near fails unless got matches want to tol relative to want's largest value.
func near(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d: %v vs %v", what, len(got), len(want), got, want)
	}
	scale := 0.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*math.Max(scale, 1e-300) {
			t.Fatalf("%s: value %d is %.17g, want %.17g\n got %v\nwant %v", what, i+1, got[i], want[i], got, want)
		}
	}
}

func TestValuesOfKnownMatrices(t *testing.T) {
	perm := []int{3, 0, 6, 1, 5, 2, 4}
	p := make([]float64, 49)
	for i, j := range perm {
		p[i*7+j] = 1
	}
	diag := []float64{0.5, -3, 2, 0, 1e-3, -7}
	d := make([]float64, 36)
	for i, v := range diag {
		d[i*6+i] = v
	}
	sigma := []float64{9, 4, 1.5, 0.25}
	for _, tc := range []struct {
		name       string
		rows, cols int
		w          []float64
		want       []float64
	}{
		{"diagonal", 6, 6, d, sortedAbs(diag, 6)},
		{"permutation", 7, 7, p, []float64{1, 1, 1, 1, 1, 1, 1}},
		{"rank 4 product, tall", 11, 7, withSpectrum(11, 7, sigma), sortedAbs(sigma, 7)},
		{"rank 4 product, wide", 5, 13, withSpectrum(5, 13, sigma), sortedAbs(sigma, 5)},
		{"full rank", 8, 8, withSpectrum(8, 8, []float64{8, 7, 6, 5, 4, 3, 2, 1}), []float64{8, 7, 6, 5, 4, 3, 2, 1}},
		{"zero", 3, 4, make([]float64, 12), []float64{0, 0, 0}},
		{"one element", 1, 1, []float64{-2.5}, []float64{2.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Values(tc.rows, tc.cols, tc.w)
			if err != nil {
				t.Fatal(err)
			}
			near(t, "singular values", got, tc.want, 1e-13)
		})
	}
	if _, err := Values(2, 3, make([]float64, 5)); err == nil {
		t.Error("Values accepted 5 elements for a 2 × 3 matrix")
	}
}

// factors returns B (out × r) and A (r × in) with B·A·scale = U·diag(σ)·Vᵀ
// as withSpectrum builds it, mixed by the orthogonal Q = dct(r):
// B = U·diag(σ)·Qᵀ/scale, A = Q·Vᵀ — neither factor is diagonal or orthogonal.
func factors(out, in int, sigma []float64, scale float64) (b, a []float64) {
	r := len(sigma)
	u, v, q := dct(out), dct(in), dct(r)
	b = make([]float64, out*r)
	a = make([]float64, r*in)
	for i := range out {
		for j := range r {
			for k := range r {
				b[i*r+j] += u[k*out+i] * sigma[k] * q[j*r+k] / scale
			}
		}
	}
	for i := range r {
		for j := range in {
			for k := range r {
				a[i*in+j] += q[i*r+k] * v[k*in+j]
			}
		}
	}
	return b, a
}

func TestFactoredSVD(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out, in int
		sigma   []float64
		scale   float64
	}{
		{"tall", 12, 9, []float64{5, 2, 0.5, 0.01}, 0.25},
		{"wide", 6, 20, []float64{1, 1, 1}, 4},
		{"rank deficient", 10, 10, []float64{3, 0, 1, 0}, 1},
		{"full", 5, 5, []float64{5, 4, 3, 2, 1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, a := factors(tc.out, tc.in, tc.sigma, tc.scale)
			lr, err := factoredSVD(tc.out, tc.in, len(tc.sigma), b, a, tc.scale)
			if err != nil {
				t.Fatal(err)
			}
			near(t, "L's values", lr.values, sortedAbs(tc.sigma, len(tc.sigma)), 1e-13)
			// The dense SVD of L agrees on the r values, and finds the rest zero.
			dense, err := Values(tc.out, tc.in, withSpectrum(tc.out, tc.in, tc.sigma))
			if err != nil {
				t.Fatal(err)
			}
			near(t, "dense SVD of L", dense, sortedAbs(tc.sigma, min(tc.out, tc.in)), 1e-13)
			// U's columns are orthonormal.
			r := len(tc.sigma)
			for i := range r {
				for j := range r {
					dot := 0.0
					for k := range tc.out {
						dot += lr.u.At(k, i) * lr.u.At(k, j)
					}
					if want := map[bool]float64{true: 1, false: 0}[i == j]; math.Abs(dot-want) > 1e-12 {
						t.Fatalf("U column %d · column %d = %g, want %g", i, j, dot, want)
					}
				}
			}
		})
	}
	if _, err := factoredSVD(3, 8, 4, make([]float64, 12), make([]float64, 32), 1); err == nil {
		t.Error("factoredSVD accepted a rank above the layer's rows")
	}
}

// TestPartsOfKnownSum builds W = L + S with L = the diagonal σ_L in the first
// r rows and columns (disguised by the factors) and S diagonal entries past
// them: W's singular values are then σ_L and |S| together, the energy in L's
// column space is ‖L‖², and the best rank-r energy is the r largest of both.
func TestPartsOfKnownSum(t *testing.T) {
	const out, in, r = 10, 8, 3
	sigmaL := []float64{3, 2, 1}
	sVals := []float64{-0.3, 1.5, 0.7, 0.05, 0.4}
	// L = e-basis diag(σ_L): B = I_r·diag(σ_L)·Qᵀ/scale, A = Q·I_r.
	scale := 0.5
	q := dct(r)
	b := make([]float64, out*r)
	a := make([]float64, r*in)
	for i := range r {
		for j := range r {
			b[i*r+j] = sigmaL[i] * q[j*r+i] / scale
			a[i*in+j] = q[i*r+j]
		}
	}
	var idx []int64
	for k := range sVals {
		d := r + k
		idx = append(idx, int64(d*in+d))
	}
	p, err := Parts(out, in, r, b, a, sVals, idx, scale)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "L", p.L, sigmaL, 1e-13)
	near(t, "S", p.S, sortedAbs(sVals, in), 1e-13)
	near(t, "L+S", p.W, sortedAbs(append(slices.Clone(sigmaL), sVals...), in), 1e-13)
	eL, eS := Energy(sigmaL), Energy(sVals)
	if want := eL / (eL + eS); math.Abs(p.CapturedL-want) > 1e-13 {
		t.Errorf("energy in L's column space %v, want %v", p.CapturedL, want)
	}
	if want := (9 + 4 + 1.5*1.5) / (eL + eS); math.Abs(TopEnergy(p.W, r)-want) > 1e-13 {
		t.Errorf("top-%d energy %v, want %v", r, TopEnergy(p.W, r), want)
	}
	if !(p.CapturedL < TopEnergy(p.W, r)) {
		t.Errorf("L holds %v of the energy, not less than the best rank-%d %v", p.CapturedL, r, TopEnergy(p.W, r))
	}
}

// A layer at SLTrain's init (B = 0) has L = 0: no values, nothing captured;
// a sparse part on a permutation's support has singular values |values|.
func TestPartsZeroLAndPermutationS(t *testing.T) {
	const n, r = 6, 2
	perm := []int{2, 5, 0, 4, 1, 3}
	var idx []int64
	vals := []float64{1, -1, 1, -1, 1, -1}
	for i, j := range perm {
		idx = append(idx, int64(i*n+j))
	}
	a := withSpectrum(r, n, []float64{1, 1})
	p, err := Parts(n, n, r, make([]float64, n*r), a, vals, idx, 2)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "L", p.L, []float64{0, 0}, 0)
	near(t, "S", p.S, []float64{1, 1, 1, 1, 1, 1}, 1e-14)
	near(t, "L+S", p.W, p.S, 1e-14)
	if p.CapturedL != 0 {
		t.Errorf("a zero L captures %v of the energy, want 0", p.CapturedL)
	}
}

func TestSummaryNumbers(t *testing.T) {
	h := -(0.75*math.Log(0.75) + 0.25*math.Log(0.25))
	for _, tc := range []struct {
		name               string
		values             []float64
		erank, srank, top2 float64
	}{
		{"k equal values", []float64{2, 2, 2, 2, 0}, 4, 4, 0.5},
		{"one value", []float64{5, 0, 0}, 1, 1, 1},
		{"3 and 1", []float64{3, 1}, math.Exp(h), 10.0 / 9, 1},
		{"2, 1, 1", []float64{2, 1, 1}, math.Exp(-(0.5*math.Log(0.5) + 0.5*math.Log(0.25))), 1.5, 5.0 / 6},
		{"zero", []float64{0, 0}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				what      string
				got, want float64
			}{
				{"effective rank", EffectiveRank(tc.values), tc.erank},
				{"stable rank", StableRank(tc.values), tc.srank},
				{"top-2 energy", TopEnergy(tc.values, 2), tc.top2},
			} {
				if math.Abs(c.got-c.want) > 1e-14*math.Max(1, c.want) {
					t.Errorf("%s of %v: %v, want %v", c.what, tc.values, c.got, c.want)
				}
			}
		})
	}
}
