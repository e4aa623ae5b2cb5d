package runtime

import (
	"fmt"
	goruntime "runtime"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/hostcpu"
)

// checkTarget reports why a's native code cannot run on this machine: a
// target that is not a CPU, another architecture or operating system, or an
// instruction-set extension this CPU lacks as CPUID and XGETBV tell (it would
// otherwise end in SIGILL in the middle of a training run).
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
		if err := checkFeatures(t.CPU, t.Features, hostcpu.Supported); err != nil {
			return err
		}
		return requestTiles(t.CPU, t.Features, hostcpu.RequestAMX)
	}
	return nil
}

// requestTiles asks the operating system, through request (once per
// process), for the AMX tile state when the artifact's features include
// amx-tile: its GEMMs run on tiles, and without the permission the first
// tile instruction ends in SIGILL. A refusal (an old kernel) is one line
// naming the fix.
func requestTiles(cpu, features string, request func() error) error {
	if !hasFeature(features, "amx-tile") {
		return nil
	}
	if err := request(); err != nil {
		return fmt.Errorf("artifact (compiled for %s) uses AMX tiles, and the kernel refused this process their state (%v); recompile it with a --cpu without AMX, e.g. --cpu x86-64-v4", cpuLabel(cpu), err)
	}
	return nil
}

// hasFeature reports whether the LLVM feature string enables name.
func hasFeature(features, name string) bool {
	for _, f := range strings.Split(features, ",") {
		if strings.TrimSpace(f) == "+"+name {
			return true
		}
	}
	return false
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

// checkFeatures reports the first extension the LLVM feature string of an
// artifact compiled for cpu enables ("+avx2,-avx512f,…") that the host
// (supported) cannot run. A feature this runtime cannot check (a newer
// LLVM's) is refused as well: running it could end in SIGILL mid-run.
func checkFeatures(cpu, features string, supported func(string) bool) error {
	for _, f := range strings.Split(features, ",") {
		f = strings.TrimSpace(f)
		if !strings.HasPrefix(f, "+") {
			continue
		}
		name := f[1:]
		if !hostcpu.Known(name) {
			return fmt.Errorf("artifact (compiled for %s) needs the CPU feature %s, which this runtime cannot check; %s", cpuLabel(cpu), name, recompileHint())
		}
		if !supported(name) {
			return fmt.Errorf("artifact (compiled for %s) needs the CPU feature %s, which this CPU lacks; %s", cpuLabel(cpu), name, recompileHint())
		}
	}
	return nil
}

func cpuLabel(cpu string) string {
	if cpu == "" {
		return "an unnamed CPU"
	}
	return cpu
}

// recompileHint says how to compile for this host: without --cpu (this
// CPU), or for the highest portable psABI level it runs.
func recompileHint() string {
	if l := hostcpu.LevelCPU(hostcpu.Level()); l != "" {
		return fmt.Sprintf("recompile it without --cpu (this CPU) or with --cpu %s", l)
	}
	return "recompile it without --cpu (this CPU)"
}
