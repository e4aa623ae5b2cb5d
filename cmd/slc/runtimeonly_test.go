package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRuntimeOnlyBuild: `go build -tags slc_runtime` is an slc without LLVM
// (for a GPU machine with only the NVIDIA driver): it links no LLVM, trains
// an artifact compiled by the full slc, and refuses to compile in one line.
func TestRuntimeOnlyBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds slc again")
	}
	out, err := exec.Command("go", "list", "-tags", "slc_runtime", "-deps", "-f", "{{.ImportPath}}\t{{.CgoLDFLAGS}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(strings.ToLower(line), "llvm") {
			t.Errorf("the runtime-only slc depends on %s", line)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "slc-runtime")
	if out, err := exec.Command("go", "build", "-tags", "slc_runtime", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags slc_runtime: %v\n%s", err, out)
	}
	art := filepath.Join(dir, "tiny.slc")
	mustSlc(t, "compile", configBytes, "--rank", "4", "--batch-size", "2", "--max-length", "16", "-o", art)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run("train", art, "--data", corpus, "--num-training-steps", "2", "--eval-fraction", "0", "--save-dir", filepath.Join(dir, "run")); code != 0 || !strings.Contains(out, "Done: 2 updates") {
		t.Errorf("the runtime-only slc training an artifact: exit %d\n%s", code, out)
	}
	out2, code := run("compile", configBytes, "--rank", "4", "-o", filepath.Join(dir, "x.slc"))
	if code != 1 || !strings.Contains(out2, "this slc is runtime-only") || strings.Count(strings.TrimSpace(out2), "\n") > 0 {
		t.Errorf("the runtime-only slc compiling: exit %d, %q", code, out2)
	}
}
