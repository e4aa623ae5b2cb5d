package nexttoken

import (
	"math"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// TestLoss: the loss of predictions [B=2, L−1=2, V=3] against ids [2, 3] is
// the mean (or the loss_mask-weighted mean) of −log softmax(pred)[label]
// with label = the next id, computed here directly.
func TestLoss(t *testing.T) {
	pred := []float64{0.1, 0.2, 0.3, 1, -1, 0.5, 2, 0, -2, 0.3, 0.3, 0.3}
	ids := []float64{0, 2, 1, 1, 0, 2}
	mask := []float64{1, 0, 1, 1}
	// ce[r, t] for row r, position t: label ids[r, t+1].
	var ce []float64
	for r := range 2 {
		for p := range 2 {
			row := pred[(r*2+p)*3 : (r*2+p)*3+3]
			lse := math.Log(math.Exp(row[0]) + math.Exp(row[1]) + math.Exp(row[2]))
			ce = append(ce, lse-row[int(ids[r*3+p+1])])
		}
	}
	for _, masked := range []bool{false, true} {
		b := ir.NewBuilder("forward")
		pv := b.AddInput("pred", ir.T(ir.F32, 2, 2, 3), ir.Data, nil)
		iv := b.AddInput("input_ids", ir.T(ir.I64, 2, 3), ir.Data, nil)
		b.Output("loss", Loss(b, pv, iv, masked))
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		if b.Scope != "" {
			t.Errorf("scope %q after Loss", b.Scope)
		}
		bind, err := interp.InitState(b.G)
		if err != nil {
			t.Fatal(err)
		}
		bind["pred"] = interp.FromFloats(ir.T(ir.F32, 2, 2, 3), pred)
		bind["input_ids"] = interp.FromInts(ir.T(ir.I64, 2, 3), []int64{0, 2, 1, 1, 0, 2})
		want := (ce[0] + ce[1] + ce[2] + ce[3]) / 4
		if masked {
			bind["loss_mask"] = interp.FromFloats(ir.T(ir.F32, 2, 2), mask)
			want = (ce[0] + ce[2] + ce[3]) / 3
		}
		out, err := interp.Run(b.G, bind)
		if err != nil {
			t.Fatal(err)
		}
		if got := out["loss"].F[0]; math.Abs(got-want) > 1e-6 {
			t.Errorf("masked %v: loss %v, want %v", masked, got, want)
		}
	}
}

// TestLossRefusesBadPredictions: predictions that are not [B, L−1, V] fail
// the builder instead of being indexed.
func TestLossRefusesBadPredictions(t *testing.T) {
	b := ir.NewBuilder("forward")
	pv := b.AddInput("pred", ir.T(ir.F32, 4, 3), ir.Data, nil)
	iv := b.AddInput("input_ids", ir.T(ir.I64, 2, 3), ir.Data, nil)
	if Loss(b, pv, iv, false) != "" || b.Err() == nil {
		t.Errorf("no error for predictions %v", b.Type(pv))
	}
}
