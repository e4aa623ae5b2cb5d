package lower

import (
	"strings"
	"testing"
	"time"

	"gitee.com/gidean/conv-linn/ir"
)

// Under auto a measured shape takes the faster lowering whatever the cost
// model says; a forced mode ignores the times; an unmeasured shape keeps
// the cost model.
func TestChooseSLTrainMeasured(t *testing.T) {
	ms := time.Millisecond
	shape := func(rows, in, out, r, nnz int64) SLTrainShape {
		return SLTrainShape{Rows: rows, In: in, Out: out, R: r, NNZ: nnz, X: ir.F32, W: ir.F32, V: ir.F32, Index: ir.I64, Y: ir.F32, LowRank: true}
	}
	// The cost model says merged for the square layer, factored for the
	// few-token one (TestChooseSLTrain).
	square, few := shape(1024, 256, 256, 128, 1966), shape(16, 512, 512, 128, 7864)
	times := map[SLTrainShape]SLTrainTiming{
		square: {Merged: 5 * ms, Factored: 3 * ms},
		few:    {Merged: 1 * ms, Factored: 2 * ms},
	}
	other := square
	other.X = ir.BF16 // another dtype is another shape: not measured
	for _, c := range []struct {
		mode string
		s    SLTrainShape
		want string
		note string
	}{
		{"auto", square, "factored", "LowRankSparseAdd factored (measured merged 5.000 ms, factored 3.000 ms; rows 1024, in 256, out 256, r 128, nnz 1966)"},
		{"", few, "merged", "LowRankSparseAdd merged (measured merged 1.000 ms, factored 2.000 ms; rows 16,"},
		{"merged", square, "merged", "LowRankSparseAdd merged (cost merged"},
		{"factored", few, "factored", "LowRankSparseAdd factored (cost merged"},
		{"auto", other, "merged", "LowRankSparseAdd merged (cost merged"},
	} {
		got, note := chooseSLTrain(c.mode, c.s, times)
		if got != c.want || !strings.HasPrefix(note, c.note) {
			t.Errorf("chooseSLTrain(%q, %v) = %s, %q; want %s, %q…", c.mode, c.s, got, note, c.want, c.note)
		}
	}
	// A tie goes to merged, the seed's algorithm.
	if p := (SLTrainTiming{Merged: ms, Factored: ms}).Pick(); p != "merged" {
		t.Errorf("tie: %s", p)
	}
}

func TestSLTrainShapeOf(t *testing.T) {
	in := []ir.Type{ir.T(ir.BF16, 2, 8, 16), ir.T(ir.F32, 24, 4), ir.T(ir.F32, 4, 16), ir.T(ir.F32, 11), ir.T(ir.I64, 11)}
	s, err := SLTrainShapeOf(in, ir.T(ir.F32, 2, 8, 24), 8)
	want := SLTrainShape{Rows: 16, In: 16, Out: 24, R: 4, NNZ: 11, X: ir.BF16, W: ir.F32, V: ir.F32, Index: ir.I64, Y: ir.F32, LowRank: true}
	if err != nil || s != want {
		t.Errorf("SLTrainShapeOf = %+v, %v; want %+v", s, err, want)
	}
	if s, _ := SLTrainShapeOf(in, ir.T(ir.F32, 2, 8, 24), 0); s.LowRank {
		t.Error("scale 0 has a low-rank term")
	}
	if _, err := SLTrainShapeOf(in[:4], ir.T(ir.F32, 2, 8, 24), 1); err == nil {
		t.Error("four inputs accepted")
	}
}
