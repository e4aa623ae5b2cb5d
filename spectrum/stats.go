package spectrum

import "math"

// EffectiveRank is the effective rank of Roy and Vetterli (2007) of a
// spectrum σ: exp(H(p)), the exponential of the Shannon entropy (in nats) of
// the singular values normalized by their sum, p_i = σ_i / Σ_j σ_j (the L1
// normalization, not the squared one). It is k for k equal non-zero values
// and between 1 and the rank otherwise; 0 for a zero matrix. Zero values add
// nothing (0·ln 0 = 0).
func EffectiveRank(values []float64) float64 {
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	if !(sum > 0) {
		return 0
	}
	h := 0.0
	for _, v := range values {
		if v > 0 {
			p := v / sum
			h -= p * math.Log(p)
		}
	}
	return math.Exp(h)
}

// StableRank is ‖W‖²_F / ‖W‖²₂ = Σ σ_i² / σ_1² (values largest first): at
// most the rank, and unlike it insensitive to tiny singular values; 0 for a
// zero matrix.
func StableRank(values []float64) float64 {
	if len(values) == 0 || !(values[0] > 0) {
		return 0
	}
	return Energy(values) / (values[0] * values[0])
}

// Energy is Σ σ_i², the squared Frobenius norm of the matrix.
func Energy(values []float64) float64 {
	e := 0.0
	for _, v := range values {
		e += v * v
	}
	return e
}

// TopEnergy is Σ_{i≤r} σ_i² / Σ σ_i² (values largest first): the share of the
// matrix's energy that its best rank-r approximation keeps (Eckart–Young), the
// most any rank-r matrix can capture; 0 for a zero matrix.
func TopEnergy(values []float64, r int) float64 {
	total := Energy(values)
	if !(total > 0) {
		return 0
	}
	return Energy(values[:min(r, len(values))]) / total
}
