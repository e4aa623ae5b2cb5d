package bench

import (
	"fmt"
	"io"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/roofline"
	"gitee.com/gidean/conv-linn/summary"
)

// Predict is slc bench --predict GPU: the roofline model's prediction of
// one training step (train_step then update) of prog on gpu, written to w
// instead of a measurement; no GPU is needed. For a config (co: its codegen
// options) it also compiles the design before per-kernel geometry and
// multi-tensor kernels (one launch geometry for every kernel, one kernel
// per group) and writes its prediction by the same model. profile > 0 also
// lists that many kernels predicted slowest.
func Predict(w io.Writer, model string, mod *ir.Module, prog *Program, gpu roofline.GPU, co codegen.Options, profile int) error {
	flops := summary.FLOPs(mod.Graph("train_step"))
	programs := []string{"train_step", "update"}
	usage, from := roofline.PtxasUsage(prog.Art)
	p, err := roofline.Predict(prog.Art, gpu, roofline.Options{Usage: usage, Programs: programs})
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	if p.Estimated > 0 && usage != nil {
		from += fmt.Sprintf("; %d kernels missing from its report estimated", p.Estimated)
	}
	fmt.Fprintf(w, "this design (launch geometry per kernel, multi-tensor optimizer kernels):\n")
	roofline.Write(w, p, flops, from)
	if profile > 0 {
		roofline.WriteKernels(w, p, profile)
	}
	if prog.Lowering == "" && driver.IsArtifact(model) {
		fmt.Fprintf(w, "the design before (one launch geometry, one kernel per group): not predicted for an artifact (bench the config)\n")
		return nil
	}
	if prog.Lowering != "" {
		co.SLTrainLowering = prog.Lowering
	}
	co.GPUOneTensor = true
	old, err := driver.Compile(model, mod, co)
	if err != nil {
		return err
	}
	ousage, ofrom := roofline.PtxasUsage(old)
	op, err := roofline.Predict(old, gpu, roofline.Options{Usage: ousage, Programs: programs, OneLaunch: true})
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	fmt.Fprintf(w, "the design before (one launch geometry for every kernel, one kernel per group), by the same model:\n")
	roofline.Write(w, op, flops, ofrom)
	return nil
}
