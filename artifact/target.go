package artifact

import (
	"fmt"

	"gitee.com/gidean/conv-linn/target"
)

// RecordTarget is what an artifact records of code compiled for t by LLVM
// for triple. A CPU target must come resolved: CPU names the CPU (this
// machine's, when the compile was for it) and Features lists every
// extension the code may use, so that a runtime can refuse a host without
// them. A CUDA target records its SM as CPU and its PTX ISA as Features
// (the kernel kind is in the code, not recorded).
func RecordTarget(t target.Target, triple string) Target {
	if t.IsCUDA() {
		return Target{Kind: TargetCUDA, Triple: triple, CPU: t.GPU(), Features: t.PTX()}
	}
	return Target{Kind: TargetCPU, Triple: triple, CPU: t.CPU, Features: t.Features}
}

// Parse returns the target t records, for the runtime to choose its device:
// a CPU target with the recorded CPU and features, or a CUDA target of the
// recorded SM (its Kernels "": the record does not say).
func (t Target) Parse() (target.Target, error) {
	switch t.Kind {
	case TargetCPU:
		return target.NewCPU(t.CPU, t.Features), nil
	case TargetCUDA:
		return target.NewCUDA(t.CPU, ""), nil
	}
	return target.Target{}, fmt.Errorf("unknown target kind %q (want %q or %q)", t.Kind, TargetCPU, TargetCUDA)
}
