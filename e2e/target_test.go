package e2e

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/hostcpu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/target"
	"gitee.com/gidean/conv-linn/version"
)

// TestHostFeaturesSupported: whatever LLVM's host detection enables, the
// runtime's CPUID check must find supported, or an artifact compiled on this
// machine for this machine is refused here (the /proc/cpuinfo "abm" bug).
// It asks the CPU on both sides, so it holds on any x86-64 machine.
func TestHostFeaturesSupported(t *testing.T) {
	for _, f := range strings.Split(llvm.HostCPUFeatures(), ",") {
		name := f[1:]
		if !hostcpu.Known(name) {
			t.Errorf("LLVM's host feature %s is not in hostcpu's table", name)
		} else if f[0] == '+' && !hostcpu.Supported(name) {
			t.Errorf("LLVM enables %s on this host, hostcpu says it is not supported", name)
		}
	}
}

// TestEveryCPUFeatureKnown: every extension any --cpu implies is one the
// runtime can check, so a named CPU never yields an artifact that is refused
// for "cannot check".
func TestEveryCPUFeatureKnown(t *testing.T) {
	for _, cpu := range append(target.X86CPUs(), "") {
		feats, err := codegen.TargetFeatures(cpu)
		if err != nil {
			t.Fatalf("%q: %v", cpu, err)
		}
		if !strings.Contains(feats, "+sse2") {
			t.Errorf("%q: features %q lack sse2", cpu, feats)
		}
		for _, f := range strings.Split(feats, ",") {
			if !hostcpu.Known(f[1:]) {
				t.Errorf("%q implies %s, which the runtime cannot check", cpu, f)
			}
		}
	}
	v3, _ := codegen.TargetFeatures("x86-64-v3")
	for _, want := range []string{"+avx2", "+fma", "+lzcnt", "+bmi2", "+movbe"} {
		if !strings.Contains(v3+",", want+",") {
			t.Errorf("x86-64-v3 features %q lack %s", v3, want)
		}
	}
	if strings.Contains(v3, "avx512") {
		t.Errorf("x86-64-v3 features %q include AVX-512", v3)
	}
}

// TestTargetsLoadOrRefuse compiles a tiny model for the host (the --cpu
// default), for x86-64-v3 and for CPUs with extensions many hosts lack, and
// checks that each loads exactly when the host has every extension its
// artifact records, and is refused with the feature and a --cpu to use
// otherwise.
func TestTargetsLoadOrRefuse(t *testing.T) {
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 1, SeqLen: 4, Seed: 1, DType: ir.F32})
	if err != nil {
		t.Fatal(err)
	}
	po := passes.DefaultOptions()
	po.PEFT = "full"
	st := &passes.State{Module: m, Options: po}
	if err := passes.Run(st, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	for _, cpu := range []string{"", "x86-64-v3", "x86-64", "znver5", "sapphirerapids", "graniterapids"} {
		art, err := codegen.Compile(m, codegen.Options{Target: target.NewCPU(cpu, ""), Groups: st.Groups, Plans: st.Plans})
		if err != nil {
			t.Fatalf("%q: %v", cpu, err)
		}
		missing := ""
		for _, f := range strings.Split(art.Target.Features, ",") {
			if !hostcpu.Supported(f[1:]) {
				missing = f[1:]
				break
			}
		}
		rt, err := runtime.Load(art, runtime.Options{Threads: 1, Version: version.Version})
		switch {
		case cpu == "" && err != nil:
			t.Errorf("an artifact compiled for this host is refused on it: %v", err)
		case missing == "" && err != nil:
			t.Errorf("%s: refused although the host has every feature: %v", cpu, err)
		case missing != "" && err == nil:
			t.Errorf("%s: loaded although the host lacks %s", cpu, missing)
		case missing != "" && !(strings.Contains(err.Error(), "needs the CPU feature "+missing+",") && strings.Contains(err.Error(), "--cpu")):
			t.Errorf("%s: error %q does not name %s and a --cpu", cpu, err, missing)
		}
		if err == nil {
			rt.Close()
		}
	}
}
