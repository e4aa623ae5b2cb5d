package runtime

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces the design's package rule: the runtime never
// depends on the compiler (codegen, passes, frontend) and never links LLVM,
// so an artifact runs on a machine that has only slc's runtime.
func TestImportRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	const module = "gitee.com/gidean/conv-linn"
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}\t{{.CgoLDFLAGS}}\t{{.CgoPkgConfig}}", module+"/runtime/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var sawRuntime bool
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, flags, _ := strings.Cut(line, "\t")
		if path == module+"/runtime" {
			sawRuntime = true
		}
		for _, banned := range []string{"codegen", "passes", "frontend"} {
			if path == module+"/"+banned || strings.HasPrefix(path, module+"/"+banned+"/") {
				t.Errorf("the runtime depends on %s", path)
			}
		}
		if strings.Contains(strings.ToLower(flags), "llvm") {
			t.Errorf("%s links LLVM (cgo flags %s)", path, flags)
		}
	}
	if !sawRuntime {
		t.Fatalf("go list did not list the runtime package:\n%s", out)
	}
}
