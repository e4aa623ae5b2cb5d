package spectrum

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Values returns the singular values of the rows × cols row-major matrix w,
// largest first, min(rows, cols) of them, computed in float64 by LAPACK's
// dgesvd through gonum's mat.SVD (values only).
func Values(rows, cols int, w []float64) ([]float64, error) {
	if rows < 1 || cols < 1 || len(w) != rows*cols {
		return nil, errors.New("spectrum: bad matrix shape")
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(rows, cols, w), mat.SVDNone) {
		return nil, errors.New("the SVD did not converge")
	}
	return svd.Values(nil), nil
}

// lowRank is the thin SVD of L = B·A·scale: its r singular values (largest
// first; those past L's rank are zero up to rounding) and U, the out × r
// orthonormal basis of left singular vectors.
type lowRank struct {
	values []float64
	u      *mat.Dense
}

// factoredSVD computes the SVD of L = B·(A·scale), B out × r, A r × in
// (row-major), without forming L: with the thin SVD B = U_B·Σ_B·V_Bᵀ,
// L = U_B·C where C = Σ_B·V_Bᵀ·A·scale is r × in, and U_B has orthonormal
// columns, so L's singular values are C's and its left singular vectors are
// U_B·U_C. It costs O((out + in)·r²) instead of a dense SVD's O(out·in·min),
// and returns exactly r values (a rank-r matrix has no more that are
// non-zero); a dense SVD of L would add min(out, in) − r values of pure
// rounding noise. r must not exceed out or in.
func factoredSVD(out, in, r int, b, a []float64, scale float64) (lowRank, error) {
	if r > out || r > in {
		return lowRank{}, errors.New("spectrum: rank exceeds the layer's dimensions")
	}
	var sb mat.SVD
	if !sb.Factorize(mat.NewDense(out, r, b), mat.SVDThin) {
		return lowRank{}, errors.New("the SVD of lora_B did not converge")
	}
	var ub, vb mat.Dense
	sb.UTo(&ub) // out × r
	sb.VTo(&vb) // r × r
	sigB := sb.Values(nil)
	// C = Σ_B·V_Bᵀ·(A·scale).
	var c mat.Dense
	c.Mul(vb.T(), mat.NewDense(r, in, a))
	for i := range r {
		row := c.RawRowView(i)
		f := sigB[i] * scale
		for j := range row {
			row[j] *= f
		}
	}
	var sc mat.SVD
	if !sc.Factorize(&c, mat.SVDThinU) {
		return lowRank{}, errors.New("the SVD of B·A·scale did not converge")
	}
	var uc mat.Dense
	sc.UTo(&uc) // r × r
	u := mat.NewDense(out, r, nil)
	u.Mul(&ub, &uc)
	return lowRank{values: sc.Values(nil), u: u}, nil
}

// numericalRank is the number of singular values above LAPACK's (and
// numpy.linalg.matrix_rank's) tolerance max(rows, cols)·ε·σ₁; 0 for a zero
// matrix.
func numericalRank(values []float64, rows, cols int) int {
	if len(values) == 0 || values[0] == 0 {
		return 0
	}
	tol := float64(max(rows, cols)) * 0x1p-52 * values[0]
	k := 0
	for _, v := range values {
		if v > tol {
			k++
		}
	}
	return k
}

// capturedEnergy is ‖U_kᵀ·W‖²_F / ‖W‖²_F: the share of W's energy (squared
// Frobenius norm) that lies in the span of the first k columns of u, the
// part of W that a matrix with those columns as its column space can hold.
// W is rows × cols row-major; 0 when W is zero.
func capturedEnergy(u *mat.Dense, k, rows, cols int, w []float64) float64 {
	if k == 0 {
		return 0
	}
	wm := mat.NewDense(rows, cols, w)
	total := mat.Norm(wm, 2) // Frobenius for a matrix: gonum's Norm(·, 2)
	if total == 0 {
		return 0
	}
	var p mat.Dense
	p.Mul(u.Slice(0, rows, 0, k).T(), wm)
	f := mat.Norm(&p, 2)
	return math.Min(1, (f*f)/(total*total))
}
