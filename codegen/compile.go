//go:build !slc_runtime

// Package codegen compiles an IR module into a .slc artifact: native x86-64
// kernels for every graph (via LLVM, see package lower), the programs that
// call them over a planned memory arena, and the module itself.
//
// Compile is the driver. For each graph it takes the kernel groups and the
// memory plan of the passes package (fuse-groups and memory-plan; it
// refuses a module without them, see UnplannedError), assigns every buffer
// a slot, lowers every group to kernels — identical groups share one
// kernel across all graphs — optimizes the LLVM module at -O3 for the
// target CPU, emits an object and links it, with the system C compiler,
// into the shared object the runtime loads.
package codegen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
	"gitee.com/gidean/conv-linn/version"
)

// Compile compiles every graph of m into an artifact.
func Compile(m *ir.Module, opt Options) (*artifact.Artifact, error) {
	if m == nil {
		return nil, errors.New("codegen: no module")
	}
	if err := m.Verify(); err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	start := time.Now()
	mod, groups, plans, err := schedule(m, opt)
	if err != nil {
		return nil, err
	}
	cuda := opt.Target.IsCUDA()
	var ccPath string
	if !cuda {
		cc := opt.CC
		if cc == "" {
			cc = "cc"
		}
		if ccPath, err = exec.LookPath(cc); err != nil {
			return nil, fmt.Errorf("codegen: linking the kernels needs a C compiler: %q not found on PATH", cc)
		}
	}

	tm, target, err := targetMachine(opt)
	if err != nil {
		return nil, err
	}
	defer tm.Dispose()
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	lm := ctx.NewModule("slc")
	defer lm.Dispose()
	lm.ConfigureFor(tm)
	times := sltrainTimes(mod, opt)
	device, kernels := opt.lowerTarget()
	if opt.Decisions != nil {
		if opt.Decisions.SLTrain, err = sltrainChoices(mod, opt.SLTrainLowering, times); err != nil {
			return nil, fmt.Errorf("codegen: %w", err)
		}
	}
	em, err := lower.NewEmitter(lm, tm, lower.Options{SLTrainLowering: opt.SLTrainLowering, SLTrainTimes: times, Device: device, GPUKernels: kernels, XentChunkRows: opt.XentChunkRows, GPUOneTensor: opt.GPUOneTensor})
	if err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	defer em.Dispose()

	art := &artifact.Artifact{CompilerVersion: opt.Version, Target: target}
	if art.CompilerVersion == "" {
		art.CompilerVersion = version.Version
	}
	for _, g := range mod.Graphs {
		p, err := buildProgram(g, groups[g.Name], plans[g.Name], em, opt.Explain, !opt.GPUOneTensor)
		if err != nil {
			return nil, fmt.Errorf("codegen: graph %q: %w", g.Name, err)
		}
		art.Programs = append(art.Programs, p)
	}
	explain(opt.Explain, "kernels: %d distinct groups lowered, LLVM emission %v", em.Kernels(), time.Since(start).Round(time.Millisecond))

	if err := lm.Verify(); err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	t0 := time.Now()
	if err := lm.RunPasses("default<O3>", tm, llvm.DefaultPassOptions()); err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	if opt.EmitLLVM != nil {
		if _, err := io.WriteString(opt.EmitLLVM, lm.String()); err != nil {
			return nil, err
		}
	}
	if opt.EmitAsm != nil {
		asm, err := tm.Emit(lm, llvm.AssemblyFile)
		if err != nil {
			return nil, fmt.Errorf("codegen: %w", err)
		}
		if _, err := opt.EmitAsm.Write(asm); err != nil {
			return nil, err
		}
	}
	if cuda {
		ptx, err := tm.Emit(lm, llvm.AssemblyFile)
		if err != nil {
			return nil, fmt.Errorf("codegen: %w", err)
		}
		explain(opt.Explain, "llvm: -O3 and PTX emission %v (%d bytes)", time.Since(t0).Round(time.Millisecond), len(ptx))
		art.Code = ptx
		if art.Module, err = mod.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("codegen: encoding the module: %w", err)
		}
		return art, art.Validate()
	}
	obj, err := tm.Emit(lm, llvm.ObjectFile)
	if err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	explain(opt.Explain, "llvm: -O3 and object emission %v (%d bytes)", time.Since(t0).Round(time.Millisecond), len(obj))
	t0 = time.Now()
	so, err := link(ccPath, obj, em.CSource())
	if err != nil {
		return nil, err
	}
	explain(opt.Explain, "link: %s %v (%d bytes)", filepath.Base(ccPath), time.Since(t0).Round(time.Millisecond), len(so))
	art.Code = so
	if art.Module, err = mod.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("codegen: encoding the module: %w", err)
	}
	if err := art.Validate(); err != nil {
		return nil, fmt.Errorf("codegen: internal error: the artifact is inconsistent: %w", err)
	}
	return art, nil
}

// schedule returns the module to compile with each graph's groups and
// memory plan: the caller's (an *UnplannedError when they are missing).
func schedule(m *ir.Module, opt Options) (*ir.Module, map[string][]*passes.Group, map[string]*passes.MemoryPlan, error) {
	groups, plans := opt.Groups, opt.Plans
	mod := m
	if opt.Target.IsCUDA() && hasLinearXent(groups) {
		return nil, nil, nil, &UnplannedError{Reason: "its groups were formed for the CPU (fuse-linear-xent's chunked loss head); the cuda device runs the loss head unfused"}
	}
	if groups == nil {
		if plans != nil {
			return nil, nil, nil, &UnplannedError{Reason: "Options.Plans given without the Groups they were planned for"}
		}
		return nil, nil, nil, &UnplannedError{Reason: "no Options.Groups and Options.Plans"}
	}
	if plans == nil {
		return nil, nil, nil, &UnplannedError{Reason: "Options.Groups given without their memory Plans"}
	}
	if opt.Target.IsCUDA() {
		// Copies: the caller's maps and groups stay as they were.
		groups, plans = maps.Clone(groups), maps.Clone(plans)
	}
	for _, g := range mod.Graphs {
		if groups[g.Name] == nil && len(g.Nodes) > 0 {
			return nil, nil, nil, &UnplannedError{Graph: g.Name, Reason: "no kernel groups"}
		}
		if plans[g.Name] == nil {
			return nil, nil, nil, &UnplannedError{Graph: g.Name, Reason: "no memory plan"}
		}
		if opt.Target.IsCUDA() && !opt.GPUOneTensor {
			if err := batchGraph(g, groups, plans, opt); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return mod, groups, plans, nil
}

// hasLinearXent reports whether any graph's groups hold a chunked loss head
// (passes.GroupLinearCrossEntropy).
func hasLinearXent(groups map[string][]*passes.Group) bool {
	for _, gs := range groups {
		for _, g := range gs {
			if g.Kind == passes.GroupLinearCrossEntropy {
				return true
			}
		}
	}
	return false
}

// targetMachine creates the -O3 machine that opt.Target asks for: a
// position-independent x86-64 one, or NVPTX; and the target the artifact
// records (a CPU target resolved: this machine's CPU named).
func targetMachine(opt Options) (llvm.TargetMachine, artifact.Target, error) {
	t := opt.Target
	if err := t.Check(); err != nil {
		return llvm.TargetMachine{}, artifact.Target{}, fmt.Errorf("codegen: %w", err)
	}
	if t.IsCUDA() {
		return cudaTargetMachine(t)
	}
	triple := llvm.DefaultTargetTriple()
	cpu, feats := t.CPU, t.Features
	if cpu == "" {
		cpu = llvm.HostCPUName()
		if feats == "" {
			feats = llvm.HostCPUFeatures()
		}
	}
	if !strings.HasPrefix(triple, "x86_64") {
		return llvm.TargetMachine{}, artifact.Target{}, fmt.Errorf("codegen: the CPU back end targets x86-64, but LLVM's default triple is %q", triple)
	}
	tm, err := llvm.NewTargetMachine(triple, llvm.MachineOptions{
		CPU: cpu, Features: feats, OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
	})
	if err != nil {
		return llvm.TargetMachine{}, artifact.Target{}, fmt.Errorf("codegen: %w", err)
	}
	// The artifact records every extension the code may use, those the CPU
	// name implies included, so that the runtime can refuse a host without
	// them (a named CPU comes with no feature string of its own).
	return tm, artifact.RecordTarget(target.NewCPU(cpu, isaFeatures(tm)), triple), nil
}

// cudaTargetMachine is the NVPTX machine of a (checked) CUDA target.
func cudaTargetMachine(t target.Target) (llvm.TargetMachine, artifact.Target, error) {
	tm, err := llvm.NewTargetMachine(target.CUDATriple, llvm.MachineOptions{CPU: t.GPU(), Features: t.PTX(), OptLevel: llvm.CodeGenAggressive})
	if err != nil {
		return llvm.TargetMachine{}, artifact.Target{}, fmt.Errorf("codegen: %w", err)
	}
	return tm, artifact.RecordTarget(t, target.CUDATriple), nil
}

// link turns the kernels' object (plus the C source of their constant
// tables) into a shared object with the system C compiler. It runs in a
// temporary directory with relative file names, so the result does not
// depend on the directory's name.
func link(cc string, obj, csrc []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "slc-link-")
	if err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "kernels.o"), obj, 0o644); err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	args := []string{"-shared", "-fPIC", "-O1", "-o", "kernels.so", "kernels.o"}
	if len(csrc) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "tables.c"), csrc, 0o644); err != nil {
			return nil, fmt.Errorf("codegen: %w", err)
		}
		args = append(args, "tables.c")
	}
	args = append(args, "-lm")
	cmd := exec.Command(cc, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("codegen: linking the kernels with %s: %v\n%s", cc, err, strings.TrimSpace(out.String()))
	}
	so, err := os.ReadFile(filepath.Join(dir, "kernels.so"))
	if err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	return so, nil
}

// explain writes one line to w when it is set.
func explain(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
