package main

import (
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// codegenFlags are the native-code flags of every command that compiles.
func codegenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "`DEVICE` the kernels run on: cpu (x86-64) or cuda (an NVIDIA GPU of --gpu, through the CUDA driver libcuda.so.1)"},
		&cli.StringFlag{Name: "gpu", Value: codegen.DefaultGPU, Usage: "`SM` of --device cuda: sm_90 (H100/H200), sm_89, sm_86 or sm_80 (A100)"},
		&cli.StringFlag{Name: "gpu-kernels", Value: "portable", Usage: "`KIND` of --device cuda's matrix products: portable (tiled shared-memory SIMT GEMMs) or tensorcore (mma.sync bf16 tensor cores for bf16 products, sm_80 and later; not yet checked on a GPU)"},
		&cli.StringFlag{Name: "cpu", Usage: "target `CPU` for the kernels (an LLVM CPU name such as x86-64-v3 or znver4; default: this machine's)"},
		&cli.StringFlag{Name: "sltrain-lowering", Value: "auto", Usage: "`HOW` LowRankSparseAdd runs: merged (W = B·A·scale + S, one GEMM), factored (x·Aᵀ·Bᵀ + sparse x·Sᵀ) or auto (per layer, the faster of the two as timed on this machine, cached in the user cache directory or $SLC_CACHE_DIR; for another target, a cost model)"},
	}
}

func codegenOptions(c *cli.Context, cmd string, st *passes.State, explain io.Writer) (codegen.Options, error) {
	o := codegen.Options{CPU: c.String("cpu"), SLTrainLowering: c.String("sltrain-lowering"), Explain: explain,
		MeasureSLTrain: true, Threads: c.Int("threads"), CacheDir: os.Getenv("SLC_CACHE_DIR"), Warnings: c.App.ErrWriter}
	if isTerminal(c.App.ErrWriter) {
		o.Progress = c.App.ErrWriter
	}
	switch o.SLTrainLowering {
	case "merged", "factored", "auto":
	default:
		return o, usagef(cmd, "flag --sltrain-lowering: %q is not merged, factored or auto", o.SLTrainLowering)
	}
	if o.CPU != "" && !slices.Contains(codegen.X86CPUs(), o.CPU) {
		return o, usagef(cmd, "flag --cpu: %q is not an x86-64 CPU LLVM knows (for example x86-64-v3, x86-64-v4, znver4; leave it out for this machine's)", o.CPU)
	}
	// --gpu and --gpu-kernels are checked with or without --device cuda, so
	// that a bad value is refused the same way everywhere.
	if _, ok := codegen.GPUs[c.String("gpu")]; !ok {
		return o, usagef(cmd, "flag --gpu: %q is not one of %s", c.String("gpu"), strings.Join(codegen.GPUNames(), ", "))
	}
	kernels := strings.ToLower(c.String("gpu-kernels"))
	if kernels != "portable" && kernels != "tensorcore" {
		return o, usagef(cmd, "flag --gpu-kernels: %q is not portable or tensorcore", kernels)
	}
	switch d := strings.ToLower(c.String("device")); d {
	case "", "cpu":
	case "cuda":
		o.Device, o.GPU, o.GPUKernels = d, c.String("gpu"), kernels
		if o.CPU != "" {
			return o, usagef(cmd, "flag --cpu: names an x86-64 CPU; --device cuda takes --gpu")
		}
	default:
		return o, usagef(cmd, "flag --device: %q is not cpu or cuda", d)
	}
	if st != nil && st.Groups != nil && st.Plans != nil {
		o.Groups, o.Plans = st.Groups, st.Plans
	}
	return o, nil
}

// compileNative lowers a compiled module to native code. A module without
// the pipeline's groups and plans (IR read from a file, a --passes list
// that left fuse-groups or memory-plan out) gets them from the required
// passes, run on a copy (passes.Schedule), which is what is compiled.
func compileNative(path string, m *ir.Module, o codegen.Options) (*artifact.Artifact, error) {
	if m.Graph("train_step") == nil && m.Graph("infer") == nil {
		return nil, fmt.Errorf("%s: nothing to run: the module has no train_step or infer graph (was --passes used?)", path)
	}
	if o.Groups == nil || o.Plans == nil {
		if err := m.Verify(); err != nil {
			return nil, fmt.Errorf("%s: codegen: %w", path, err)
		}
		s, err := passes.Schedule(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m, o.Groups, o.Plans = s.Module, s.Groups, s.Plans
	}
	art, err := codegen.Compile(m, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return art, nil
}

func defaultThreads() int { return goruntime.NumCPU() }
