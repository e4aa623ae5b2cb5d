package main

import (
	"io"
	"os"
	goruntime "runtime"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// codegenFlags are the native-code flags of every command that compiles.
func codegenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "`DEVICE` the kernels run on: cpu (x86-64) or cuda (an NVIDIA GPU of --gpu, through the CUDA driver libcuda.so.1)"},
		&cli.StringFlag{Name: "gpu", Value: target.DefaultSM, Usage: "`SM` of --device cuda: sm_90 (H100/H200), sm_89, sm_86 or sm_80 (A100)"},
		&cli.StringFlag{Name: "gpu-kernels", Value: "portable", Usage: "`KIND` of --device cuda's matrix products: portable (tiled shared-memory SIMT GEMMs) or tensorcore (mma.sync bf16 tensor cores for bf16 products, sm_80 and later; not yet checked on a GPU)"},
		&cli.StringFlag{Name: "cpu", Usage: "target `CPU` for the kernels (an LLVM CPU name such as x86-64-v3 or znver4; default: this machine's)"},
		&cli.StringFlag{Name: "sltrain-lowering", Value: "auto", Usage: "`HOW` LowRankSparseAdd runs: merged (W = B·A·scale + S, one GEMM), factored (x·Aᵀ·Bᵀ + sparse x·Sᵀ) or auto (per layer, the faster of the two as timed on this machine, cached in the user cache directory or $SLC_CACHE_DIR; for another target, a cost model)"},
	}
}

func codegenOptions(c *cli.Context, cmd string, st *passes.State, explain io.Writer) (codegen.Options, error) {
	o := codegen.Options{SLTrainLowering: c.String("sltrain-lowering"), Explain: explain,
		MeasureSLTrain: true, Threads: c.Int("threads"), CacheDir: os.Getenv("SLC_CACHE_DIR"), Warnings: c.App.ErrWriter}
	if isTerminal(c.App.ErrWriter) {
		o.Progress = c.App.ErrWriter
	}
	switch o.SLTrainLowering {
	case "merged", "factored", "auto":
	default:
		return o, usagef(cmd, "flag --sltrain-lowering: %q is not merged, factored or auto", o.SLTrainLowering)
	}
	t, err := target.Parse(target.Flags{Device: c.String("device"), GPU: c.String("gpu"), GPUKernels: c.String("gpu-kernels"), CPU: c.String("cpu")})
	if err != nil {
		return o, usagef(cmd, "%v", err)
	}
	o.Target = t
	if st != nil && st.Groups != nil && st.Plans != nil {
		o.Groups, o.Plans = st.Groups, st.Plans
	}
	return o, nil
}

func defaultThreads() int { return goruntime.NumCPU() }
