//go:build !slc_runtime

package codegen

import (
	"strings"
	"sync"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/target"
)

// x86ISAFeatures are LLVM's x86 instruction-set extensions: every name its
// host detection reports, enabled or not (the same names on every x86 host).
// The subtarget's other features are tuning flags that need nothing of the
// CPU.
var x86ISAFeatures = sync.OnceValue(func() map[string]bool {
	set := map[string]bool{}
	for _, f := range strings.Split(llvm.HostCPUFeatures(), ",") {
		if len(f) > 1 {
			set[f[1:]] = true
		}
	}
	return set
})

// isaFeatures is the "+a,+b,…" list of the extensions tm's code may use.
func isaFeatures(tm llvm.TargetMachine) string {
	var on []string
	for _, f := range strings.Split(tm.EnabledFeatures(), ",") {
		if len(f) > 1 && f[0] == '+' && x86ISAFeatures()[f[1:]] {
			on = append(on, f)
		}
	}
	return strings.Join(on, ",")
}

// TargetFeatures returns the extensions code compiled for cpu ("" for this
// host) may use, as an artifact records them in its target.
func TargetFeatures(cpu string) (string, error) {
	tm, t, err := targetMachine(Options{Target: target.NewCPU(cpu, "")})
	if err != nil {
		return "", err
	}
	tm.Dispose()
	return t.Features, nil
}
