package runtime

import (
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"sync"

	"gitee.com/gidean/conv-linn/artifact"
)

// checkTarget reports why a's native code cannot run on this machine: a
// target that is not a CPU, another architecture or operating system, or an
// instruction-set extension this CPU lacks (which would otherwise end in
// SIGILL in the middle of a training run).
func checkTarget(t artifact.Target) error {
	if t.Kind != artifact.TargetCPU {
		return fmt.Errorf("artifact targets %q; this runtime runs %q artifacts (recompile for the CPU)", t.Kind, artifact.TargetCPU)
	}
	arch, goos, err := parseTriple(t.Triple)
	if err != nil {
		return err
	}
	if arch != goruntime.GOARCH {
		return fmt.Errorf("artifact was compiled for %s (triple %q), this machine is %s; recompile it here", arch, t.Triple, goruntime.GOARCH)
	}
	if goos != "" && goos != goruntime.GOOS {
		return fmt.Errorf("artifact was compiled for %s (triple %q), this machine runs %s; recompile it here", goos, t.Triple, goruntime.GOOS)
	}
	if arch == "amd64" {
		if flags := hostFlags(); flags != nil {
			return checkFeatures(t.Features, flags)
		}
	}
	return nil
}

// parseTriple returns the Go names of a target triple's architecture and, when
// the triple names one, operating system.
func parseTriple(triple string) (arch, goos string, err error) {
	if triple == "" {
		return "", "", fmt.Errorf("artifact has no target triple")
	}
	parts := strings.Split(triple, "-")
	switch a := parts[0]; {
	case a == "x86_64" || a == "x86_64h" || a == "amd64":
		arch = "amd64"
	case a == "aarch64" || a == "arm64":
		arch = "arm64"
	case a == "i386" || a == "i486" || a == "i586" || a == "i686":
		arch = "386"
	case a == "riscv64" || a == "ppc64le" || a == "loong64": // little-endian only: see convert.go
		arch = a
	case a == "loongarch64":
		arch = "loong64"
	default:
		return "", "", fmt.Errorf("artifact target triple %q names an architecture this runtime does not know", triple)
	}
	for _, p := range parts[1:] {
		switch {
		case strings.HasPrefix(p, "linux"):
			goos = "linux"
		case strings.HasPrefix(p, "darwin") || strings.HasPrefix(p, "macos"):
			goos = "darwin"
		case strings.HasPrefix(p, "windows"):
			goos = "windows"
		case strings.HasPrefix(p, "freebsd"):
			goos = "freebsd"
		}
	}
	return arch, goos, nil
}

// llvmToCPUInfo maps LLVM's x86 feature names to the flags Linux prints in
// /proc/cpuinfo, for the extensions generated code may use. Features not
// listed here are not checked.
var llvmToCPUInfo = map[string]string{
	"sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "popcnt": "popcnt",
	"avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2",
	"lzcnt": "abm", "movbe": "movbe", "adx": "adx", "aes": "aes", "pclmul": "pclmulqdq",
	"vaes": "vaes", "vpclmulqdq": "vpclmulqdq", "gfni": "gfni", "sha": "sha_ni",
	"avx512f": "avx512f", "avx512cd": "avx512cd", "avx512bw": "avx512bw", "avx512dq": "avx512dq",
	"avx512vl": "avx512vl", "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi",
	"avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16",
	"avx512fp16": "avx512_fp16", "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
	"avxvnni": "avx_vnni", "amx-tile": "amx_tile", "amx-bf16": "amx_bf16", "amx-int8": "amx_int8",
}

// checkFeatures reports the first extension the LLVM feature string enables
// ("+avx2,-avx512f,…") that host (a set of /proc/cpuinfo flags) lacks.
func checkFeatures(features string, host map[string]bool) error {
	for _, f := range strings.Split(features, ",") {
		f = strings.TrimSpace(f)
		if !strings.HasPrefix(f, "+") {
			continue
		}
		name := f[1:]
		if flag, ok := llvmToCPUInfo[name]; ok && !host[flag] {
			return fmt.Errorf("artifact needs the CPU feature %s, which this CPU lacks; recompile it on this machine", name)
		}
	}
	return nil
}

// hostFlags reads the CPU flags of the first processor in /proc/cpuinfo; nil
// when they cannot be read (then features are not checked).
var hostFlags = sync.OnceValue(func() map[string]bool {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		flags := map[string]bool{}
		for _, f := range strings.Fields(val) {
			flags[f] = true
		}
		return flags
	}
	return nil
})
