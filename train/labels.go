package train

import (
	"fmt"
	"io"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
)

// peftLabelAlpha names the SLTrain settings for the run's lines.
func peftLabelAlpha(s *Settings) string {
	if s.PEFT == "full" {
		return "full-rank"
	}
	return fmt.Sprintf("SLTrain r %d, δ %g, α %g", s.Rank, s.SpRatio, s.LoraAlpha)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// writeParamCounts prints the parameter counts, as the seed's log does.
func writeParamCounts(w io.Writer, rt *runtime.Runtime) {
	sm := summary.Of(rt.Module())
	fmt.Fprintf(w, "Total params: %s (%s in %d tensors)", summary.Millions(sm.Params.Elems), summary.Grouped(sm.Params.Elems), sm.Params.Tensors)
	var parts []string
	for _, k := range sm.Kinds {
		if k.Tensors > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", k.Name, summary.Millions(k.Elems)))
		}
	}
	fmt.Fprintf(w, ": %s", strings.Join(parts, ", "))
	if sm.BufferElems > 0 {
		fmt.Fprintf(w, "; buffers %s", summary.Millions(sm.BufferElems))
	}
	fmt.Fprintf(w, "\n")
	parts = parts[:0]
	for _, g := range sm.Groups {
		if g.Tensors > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", g.Name, summary.Millions(g.Elems)))
		}
	}
	fmt.Fprintf(w, "  by group: %s\n", strings.Join(parts, ", "))
}

// FormatDuration prints a duration as 1h02m, 3m05s or 12.3s
// (summary.Duration).
func FormatDuration(d time.Duration) string { return summary.Duration(d) }

// optimizerLabel names a run's optimizer for the Training line.
func optimizerLabel(s *Settings) string {
	if base, perLayer := passes.SplitPerLayer(s.Optimizer); perLayer {
		return optimizerLabel(&Settings{Optimizer: base, Beta1: s.Beta1}) + ", per layer (updates inside the backward)"
	}
	switch s.Optimizer {
	case "adam":
		return "Adam (L2 weight decay)"
	case "sgd":
		return fmt.Sprintf("SGD (momentum %g)", s.Beta1)
	case "adam8bit":
		return "Adam8bit (8-bit block-wise moments)"
	case "adafactor":
		if s.Beta1 > 0 {
			return fmt.Sprintf("Adafactor (β1 %g)", s.Beta1)
		}
		return "Adafactor"
	}
	return "AdamW"
}
