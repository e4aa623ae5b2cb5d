package main

import (
	"fmt"
	"gitee.com/gidean/conv-linn/bench"
	"gitee.com/gidean/conv-linn/driver"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/roofline"
	"gitee.com/gidean/conv-linn/summary"
)

// benchPredict is slc bench --predict GPU: the roofline model's prediction
// of one training step (train_step then update) of prog on that GPU,
// printed instead of a measurement; no GPU is needed. For a config it also
// compiles the design before per-kernel geometry and multi-tensor kernels
// (one launch geometry for every kernel, one kernel per group) and prints
// its prediction by the same model.
func benchPredict(c *cli.Context, model string, mod *ir.Module, st *passes.State, prog *bench.Program, gpuName string) error {
	gpu, err := roofline.Lookup(gpuName)
	if err != nil {
		return usagef("bench", "flag --predict: %v", err)
	}
	flops := summary.FLOPs(mod.Graph("train_step"))
	programs := []string{"train_step", "update"}
	usage, from := ptxasUsage(prog.Art)
	p, err := roofline.Predict(prog.Art, gpu, roofline.Options{Usage: usage, Programs: programs})
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	if p.Estimated > 0 && usage != nil {
		from += fmt.Sprintf("; %d kernels missing from its report estimated", p.Estimated)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "this design (launch geometry per kernel, multi-tensor optimizer kernels):\n")
	roofline.Write(w, p, flops, from)
	if n := c.Int("profile"); n > 0 {
		roofline.WriteKernels(w, p, n)
	}
	if prog.Lowering == "" && isArtifact(model) {
		fmt.Fprintf(w, "the design before (one launch geometry, one kernel per group): not predicted for an artifact (bench the config)\n")
		return nil
	}
	co, err := codegenOptions(c, "bench", st, nil)
	if err != nil {
		return err
	}
	if prog.Lowering != "" {
		co.SLTrainLowering = prog.Lowering
	}
	co.GPUOneTensor = true
	old, err := driver.Compile(model, mod, co)
	if err != nil {
		return err
	}
	ousage, ofrom := ptxasUsage(old)
	op, err := roofline.Predict(old, gpu, roofline.Options{Usage: ousage, Programs: programs, OneLaunch: true})
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	fmt.Fprintf(w, "the design before (one launch geometry for every kernel, one kernel per group), by the same model:\n")
	roofline.Write(w, op, flops, ofrom)
	return nil
}

// ptxasUsage runs NVIDIA's ptxas -v ($SLC_PTXAS, else ptxas on PATH) on
// the artifact's PTX for its GPU and returns every kernel's registers and
// shared memory, and a line saying where they came from; nil (estimated)
// without ptxas or when it fails.
func ptxasUsage(art *artifact.Artifact) (map[string]roofline.Usage, string) {
	bin := os.Getenv("SLC_PTXAS")
	if bin == "" {
		bin, _ = exec.LookPath("ptxas")
	}
	if bin == "" {
		return nil, "estimated by kernel kind (no ptxas: set $SLC_PTXAS or put it on PATH for its -v report)"
	}
	dir, err := os.MkdirTemp("", "slc-ptxas")
	if err != nil {
		return nil, "estimated by kernel kind (" + err.Error() + ")"
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "m.ptx")
	if err := os.WriteFile(src, art.Code, 0o600); err != nil {
		return nil, "estimated by kernel kind (" + err.Error() + ")"
	}
	out, err := exec.Command(bin, "-arch="+art.Target.CPU, "-v", "-o", filepath.Join(dir, "m.cubin"), src).CombinedOutput()
	if err != nil {
		return nil, fmt.Sprintf("estimated by kernel kind (%s failed: %v)", bin, err)
	}
	u := roofline.ParsePtxas(string(out))
	spills := 0
	for _, k := range u {
		if k.Spills > 0 {
			spills++
		}
	}
	return u, fmt.Sprintf("from %s -v for %s (%d kernels, %d with spills)", bin, art.Target.CPU, len(u), spills)
}
