package bench

import (
	"fmt"
	"io"
	"time"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
)

// Compile compiles each program of a config module (mod, planned) that has
// no artifact yet, with co and the program's lowering. When auto chose one
// lowering for every layer of train_step (codegen's decisions), that
// lowering is not compiled again: its program is auto's (SameAs), and log
// gets auto's count.
func Compile(model string, mod *ir.Module, progs []*Program, co codegen.Options, log io.Writer) error {
	autoAll := "" // the lowering auto chose for every layer, if one
	for _, p := range progs {
		if p.Art != nil {
			continue
		}
		if p.Lowering != "auto" && p.Lowering == autoAll {
			p.SameAs = "auto"
			continue
		}
		start := time.Now()
		var chosen codegen.Decisions
		o := co
		o.Decisions = &chosen
		if p.Lowering != "" {
			o.SLTrainLowering = p.Lowering
		}
		var err error
		if p.Art, err = driver.Compile(model, mod, o); err != nil {
			return err
		}
		p.Compile = time.Since(start).Seconds()
		if p.Lowering == "auto" {
			merged, factored := chosen.SLTrainCount("train_step")
			fmt.Fprintf(log, "  auto: %d of train_step's %d LowRankSparseAdd layers factored, %d merged\n", factored, merged+factored, merged)
			switch {
			case factored == 0 && merged > 0:
				autoAll = "merged"
			case merged == 0 && factored > 0:
				autoAll = "factored"
			}
		}
	}
	return nil
}
