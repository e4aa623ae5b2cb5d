package codegen

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// x86CPUs are the CPU names LLVM 19 accepts for 64-bit x86 code (from
// `llc -mtriple=x86_64 -mcpu=help`, minus the 32-bit-only processors).
// LLVM aborts the process on any other name, so Compile checks first.
var x86CPUs = strings.Fields(`
alderlake amdfam10 arrowlake arrowlake-s arrowlake_s athlon-fx athlon64 athlon64-sse3 atom
atom_sse4_2 atom_sse4_2_movbe barcelona bdver1 bdver2 bdver3 bdver4 bonnell broadwell btver1
btver2 cannonlake cascadelake clearwaterforest cooperlake core-avx-i core-avx2 core2
core_2_duo_sse4_1 core_2_duo_ssse3 core_2nd_gen_avx core_3rd_gen_avx core_4th_gen_avx
core_4th_gen_avx_tsx core_5th_gen_avx core_5th_gen_avx_tsx core_aes_pclmulqdq core_i7_sse4_2
corei7 corei7-avx emeraldrapids generic goldmont goldmont-plus goldmont_plus gracemont
grandridge graniterapids graniterapids-d graniterapids_d haswell icelake-client icelake-server
icelake_client icelake_server ivybridge k8 k8-sse3 knl knm lunarlake meteorlake mic_avx512
nehalem nocona opteron opteron-sse3 pantherlake penryn raptorlake rocketlake sandybridge
sapphirerapids sierraforest silvermont skx skylake skylake-avx512 skylake_avx512 slm tigerlake
tremont westmere x86-64 x86-64-v2 x86-64-v3 x86-64-v4 znver1 znver2 znver3 znver4 znver5`)

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

// X86CPUs returns the CPU names --cpu accepts.
func X86CPUs() []string { return slices.Clone(x86CPUs) }

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
