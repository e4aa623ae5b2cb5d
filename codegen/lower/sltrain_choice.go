package lower

import (
	"fmt"
	"math"
	"time"

	"gitee.com/gidean/conv-linn/ir"
)

// SLTrainShape is everything the speed of a LowRankSparseAdd's two
// lowerings depends on: y[rows, out] = x[rows, in]·(B[out, r]·A[r, in]·scale
// + S)ᵀ with nnz sparse values, and the dtypes of x, the factors (B, A), the
// sparse values, the index and y. Layers with equal shapes share a
// measurement (and a kernel).
type SLTrainShape struct {
	Rows, In, Out, R, NNZ int64
	X, W, V, Index, Y     ir.DType
	// LowRank is false when the low-rank term vanishes (r or in is 0, or
	// the scale is 0 or not finite): then only the sparse term is computed.
	LowRank bool
}

// String names the shape as --explain and the calibration cache print it.
func (s SLTrainShape) String() string {
	lr := ""
	if !s.LowRank {
		lr = " sparse-only"
	}
	return fmt.Sprintf("rows %d, in %d, out %d, r %d, nnz %d, x %v, factors %v, values %v, index %v, y %v%s",
		s.Rows, s.In, s.Out, s.R, s.NNZ, s.X, s.W, s.V, s.Index, s.Y, lr)
}

// SLTrainShapeOf reads the shape of a LowRankSparseAdd from its input and
// output types and its scale (x, B, A, values, index → y).
func SLTrainShapeOf(in []ir.Type, y ir.Type, scale float64) (SLTrainShape, error) {
	if len(in) != 5 || in[0].Rank() < 1 || in[1].Rank() != 2 || in[2].Rank() != 2 || in[3].Rank() != 1 {
		return SLTrainShape{}, fmt.Errorf("LowRankSparseAdd: want x[..., in], B[out, r], A[r, in], values[nnz], index[nnz]; got %v", in)
	}
	x, B, A, v, idx := in[0], in[1], in[2], in[3], in[4]
	s := SLTrainShape{
		Rows: numel(x.Shape[:x.Rank()-1]), In: int64(A.Shape[1]), Out: int64(B.Shape[0]), R: int64(B.Shape[1]), NNZ: int64(v.Shape[0]),
		X: x.DType, W: B.DType, V: v.DType, Index: idx.DType, Y: y.DType,
	}
	a := float32(scale)
	s.LowRank = s.R > 0 && s.In > 0 && a != 0 && !math.IsInf(float64(a), 0) && !math.IsNaN(float64(a))
	return s, nil
}

// SLTrainTiming is one measured LowRankSparseAdd: the median wall time of
// each lowering's forward calls on the compiling machine. (The backward is
// autodiff's products, the same whichever way the forward is lowered, so
// the forward is the only direction with a choice.)
type SLTrainTiming struct {
	Merged, Factored time.Duration
}

// Pick is the faster lowering; a tie goes to merged (the seed's algorithm).
func (t SLTrainTiming) Pick() string {
	if t.Factored < t.Merged {
		return "factored"
	}
	return "merged"
}

// chooseSLTrain is the lowering of one LowRankSparseAdd and the note
// --explain prints for it: the forced mode; under auto the faster measured
// lowering when times has the shape, else the cost model's pick.
func chooseSLTrain(mode string, s SLTrainShape, times map[SLTrainShape]SLTrainTiming) (string, string) {
	mc, fc := SLTrainCosts(s.Rows, s.In, s.Out, s.R, s.NNZ)
	dims := fmt.Sprintf("rows %d, in %d, out %d, r %d, nnz %d", s.Rows, s.In, s.Out, s.R, s.NNZ)
	switch mode {
	case "merged", "factored":
		return mode, fmt.Sprintf("LowRankSparseAdd %s (cost merged %.3g, factored %.3g flop-eq; %s)", mode, mc, fc, dims)
	}
	if t, ok := times[s]; ok {
		return t.Pick(), fmt.Sprintf("LowRankSparseAdd %s (measured merged %s, factored %s; %s)", t.Pick(), fmtDur(t.Merged), fmtDur(t.Factored), dims)
	}
	pick := ChooseSLTrain(mode, s.Rows, s.In, s.Out, s.R, s.NNZ)
	return pick, fmt.Sprintf("LowRankSparseAdd %s (cost merged %.3g, factored %.3g flop-eq; %s)", pick, mc, fc, dims)
}

// fmtDur prints a kernel time in milliseconds with three decimals.
func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
