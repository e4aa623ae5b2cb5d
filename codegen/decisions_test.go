package codegen

import (
	"bytes"
	"gitee.com/gidean/conv-linn/target"
	"regexp"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

var lowRankNote = regexp.MustCompile(`: LowRankSparseAdd (merged|factored) \(`)

// TestDecisionsMatchExplain: the lowerings Compile reports as data are the
// ones its --explain notes name, measured, by the cost model and forced.
func TestDecisionsMatchExplain(t *testing.T) {
	m := sltrainModule(t, 16, 16, 16, 4, 7, ir.F32, ir.F32)
	for _, o := range []Options{
		{MeasureSLTrain: true, Threads: 1, CacheDir: t.TempDir()},
		{Target: target.NewCPU("x86-64-v2", ""), MeasureSLTrain: true, CacheDir: t.TempDir()},
		{SLTrainLowering: "merged"},
		{SLTrainLowering: "factored"},
	} {
		var ex bytes.Buffer
		var d Decisions
		o.Explain, o.Decisions = &ex, &d
		if _, err := compilePlanned(m, o); err != nil {
			t.Fatal(err)
		}
		notes := lowRankNote.FindAllStringSubmatch(ex.String(), -1)
		if len(notes) == 0 || len(notes) != len(d.SLTrain) {
			t.Fatalf("%+v: %d notes, %d decisions:\n%s", o.SLTrainLowering, len(notes), len(d.SLTrain), ex.String())
		}
		for i, n := range notes {
			if d.SLTrain[i].Lowering != n[1] {
				t.Errorf("%q: decision %d is %+v, the note says %s", o.SLTrainLowering, i, d.SLTrain[i], n[1])
			}
		}
		merged, factored := d.SLTrainCount(d.SLTrain[0].Graph)
		if o.SLTrainLowering == "merged" && factored != 0 || o.SLTrainLowering == "factored" && merged != 0 {
			t.Errorf("forced %s: %d merged, %d factored", o.SLTrainLowering, merged, factored)
		}
	}
}
