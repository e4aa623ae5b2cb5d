//go:build !slc_runtime

package codegen

import (
	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/ir"
)

// sltrainChoices are the lowerings lower gives m's LowRankSparseAdd layers
// under mode and the measured times: the forced mode; under auto the faster
// measured lowering when times has the layer's shape, else the cost
// model's (lower's chooseSLTrain, whose note --explain prints). A layer with
// no output rows or columns is lowered to nothing and not listed.
func sltrainChoices(m *ir.Module, mode string, times map[lower.SLTrainShape]lower.SLTrainTiming) ([]SLTrainChoice, error) {
	layers, err := sltrainLayers(m)
	if err != nil {
		return nil, err
	}
	var out []SLTrainChoice
	for _, l := range layers {
		s := l.shape
		if s.Rows*s.Out == 0 {
			continue
		}
		pick := lower.ChooseSLTrain(mode, s.Rows, s.In, s.Out, s.R, s.NNZ)
		if t, ok := times[s]; ok && mode != "merged" && mode != "factored" {
			pick = t.Pick()
		}
		out = append(out, SLTrainChoice{Graph: l.graph, Node: l.node, Lowering: pick})
	}
	return out, nil
}
