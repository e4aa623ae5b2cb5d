//go:build !slc_runtime

package codegen

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// essentialFeatures cannot be turned off: the x86-64 C ABI passes floats in
// SSE registers, and LLVM aborts without them.
var essentialFeatures = []string{"64bit", "sse", "sse2", "x87"}

// checkTarget validates a user-given CPU name and feature string.
func checkTarget(cpu, features string) error {
	if cpu != "" && !slices.Contains(x86CPUs, cpu) {
		return fmt.Errorf("codegen: unknown x86-64 CPU %q (examples: x86-64-v3, x86-64-v4, skylake-avx512, znver4; empty for the host's)", cpu)
	}
	if features == "" {
		return nil
	}
	for _, f := range strings.Split(features, ",") {
		name := strings.TrimLeft(f, "+-")
		if len(f) < 2 || (f[0] != '+' && f[0] != '-') || len(name) != len(f)-1 || strings.IndexFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
		}) >= 0 {
			return fmt.Errorf("codegen: bad CPU feature %q in %q (want a comma-separated list like +avx2,+fma,-avx512f)", f, features)
		}
		if f[0] == '-' && slices.Contains(essentialFeatures, name) {
			return fmt.Errorf("codegen: CPU feature %s cannot be disabled on x86-64", name)
		}
	}
	return nil
}

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
	tm, t, err := targetMachine(Options{CPU: cpu})
	if err != nil {
		return "", err
	}
	tm.Dispose()
	return t.Features, nil
}
