package docs

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "gitee.com/gidean/conv-linn"

// layerRule forbids the packages matching from to depend on the packages
// matching banned: directly, or (deep) through any chain of imports. A
// pattern is a path relative to the module; "x/..." is x and everything
// under it, "..." every package. Packages matching except are exempt, and
// dependencies matching allow are permitted. Only non-test imports count.
type layerRule struct {
	from, except, banned, allow []string
	deep                        bool
	why                         string
}

// layerRules are the rules of ARCHITECTURE.md's "Layering rules" that no
// other test enforces (the runtime's own rule is runtime/imports_test.go's
// TestImportRules; the runtime-only binary's link flags are cmd/slc's
// TestRuntimeOnlyBuild).
var layerRules = []layerRule{
	{from: []string{"atomicfile", "version", "target", "hostcpu", "runlock"}, banned: []string{"..."}, deep: true,
		why: "foundations import no slc package"},
	{from: []string{"ir"}, banned: []string{"..."}, allow: []string{"ir/fbs"}, deep: true,
		why: "ir is the bottom of the compiler: it imports only ir/fbs"},
	{from: []string{"ir/...", "frontend/...", "passes"}, banned: []string{"codegen/...", "native", "artifact/...", "runtime/...", "checkpoint", "driver", "train", "bench"}, deep: true,
		why: "the middle (IR, frontends, passes) knows no target, artifact or runtime"},
	{from: []string{"frontend/onnx"}, banned: []string{"frontend"},
		why: "the two frontends are siblings sharing frontend/nexttoken"},
	{from: []string{"frontend"}, banned: []string{"frontend/onnx"},
		why: "the two frontends are siblings; driver picks one"},
	{from: []string{"codegen/cpu", "codegen/gpu", "codegen/kernel"}, banned: []string{"codegen", "codegen/lower", "ir/..."}, deep: true,
		why: "the backends build kernels below the lowering: they know LLVM, not the IR or the lowering that calls them"},
	{from: []string{"codegen/kernel"}, banned: []string{"codegen/cpu", "codegen/gpu"}, deep: true,
		why: "the kernel-building layer sits under both backends"},
	{from: []string{"..."}, except: []string{"codegen/..."}, banned: []string{"codegen/llvm", "codegen/lower", "codegen/cpu", "codegen/gpu", "codegen/kernel"},
		why: "only codegen imports its back end: everything else calls codegen.Compile"},
	{from: []string{"artifact/...", "checkpoint", "collective", "safetensors"}, banned: []string{"codegen/...", "passes", "frontend/...", "driver"}, deep: true,
		why: "the libraries around a runtime run artifacts without the compiler"},
	{from: []string{"driver"}, banned: []string{"train", "bench", "cmd/..."}, deep: true,
		why: "driver is the one path under the commands; the runs use it, not the reverse"},
	{from: []string{"codegen/...", "runtime/...", "passes", "frontend/...", "checkpoint", "export", "artifact/..."}, banned: []string{"driver", "train", "bench"}, deep: true,
		why: "nothing below the driver imports it or the runs above it"},
	{from: []string{"internal/ptxemu"}, banned: []string{"runtime/..."}, deep: true,
		why: "the emulator binding runs no artifact itself: cmd/ptxrun does"},
	{from: []string{"..."}, except: []string{"cmd/..."}, banned: []string{"cmd/..."}, deep: true,
		why: "no library depends on a command"},
}

// match reports whether the relative path p matches pattern.
func match(pattern, p string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if match(pat, p) {
			return true
		}
	}
	return false
}

// goList runs go list in the module root with args and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	cmd := exec.Command(goTool, append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// moduleImports lists every package of the module with its direct imports
// of module packages, both as paths relative to the module.
func moduleImports(t *testing.T) map[string][]string {
	imports := map[string][]string{}
	for _, line := range goList(t, "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}", "./...") {
		path, deps, _ := strings.Cut(line, "\t")
		rel, ok := strings.CutPrefix(path, module+"/")
		if !ok {
			continue
		}
		imports[rel] = nil
		for _, d := range strings.Fields(deps) {
			if r, ok := strings.CutPrefix(d, module+"/"); ok {
				imports[rel] = append(imports[rel], r)
			}
		}
	}
	return imports
}

// reach returns every module package p depends on, directly or not, with
// the chain of imports that first reached it.
func reach(imports map[string][]string, p string) map[string]string {
	chain := map[string]string{}
	var visit func(q, via string)
	visit = func(q, via string) {
		for _, d := range imports[q] {
			if _, seen := chain[d]; seen {
				continue
			}
			chain[d] = via + " → " + d
			visit(d, chain[d])
		}
	}
	visit(p, p)
	return chain
}

// TestImportLayers enforces the layering rules of ARCHITECTURE.md over the
// module's real import graph.
func TestImportLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	imports := moduleImports(t)
	pkgs := make([]string, 0, len(imports))
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, r := range layerRules {
		for _, pat := range r.from {
			if !anyMatches(pkgs, pat) {
				t.Errorf("rule %q: no package matches %s (moved? update the rule and ARCHITECTURE.md)", r.why, pat)
			}
		}
		for _, p := range pkgs {
			if !matchAny(r.from, p) || matchAny(r.except, p) {
				continue
			}
			deps := map[string]string{}
			if r.deep {
				deps = reach(imports, p)
			} else {
				for _, d := range imports[p] {
					deps[d] = p + " → " + d
				}
			}
			var bad []string
			for d, chain := range deps {
				if d != p && matchAny(r.banned, d) && !matchAny(r.allow, d) {
					bad = append(bad, chain)
				}
			}
			sort.Strings(bad)
			for _, chain := range bad {
				t.Errorf("%s: %s", r.why, chain)
			}
		}
	}
}

func anyMatches(pkgs []string, pattern string) bool {
	for _, p := range pkgs {
		if match(pattern, p) {
			return true
		}
	}
	return false
}

// TestRuntimeOnlyBuildHasNoBackEnd: slc built with -tags slc_runtime (make
// runtime) holds none of codegen's LLVM packages; codegen is there only as
// its refusal (codegen/nocompiler.go). cmd/slc's TestRuntimeOnlyBuild checks
// the same binary's link flags and that it trains an artifact.
func TestRuntimeOnlyBuildHasNoBackEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	var sawCmd bool
	for _, p := range goList(t, "-tags", "slc_runtime", "-deps", "./cmd/slc") {
		rel, ok := strings.CutPrefix(p, module+"/")
		if !ok {
			continue
		}
		sawCmd = sawCmd || rel == "cmd/slc"
		if match("codegen/...", rel) && rel != "codegen" {
			t.Errorf("the runtime-only slc depends on %s", rel)
		}
	}
	if !sawCmd {
		t.Fatal("go list did not list cmd/slc")
	}
}
