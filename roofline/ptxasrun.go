package roofline

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"gitee.com/gidean/conv-linn/artifact"
)

// PtxasUsage runs NVIDIA's ptxas -v ($SLC_PTXAS, else ptxas on PATH) on
// the artifact's PTX for its GPU and returns every kernel's registers and
// shared memory, and a line saying where they came from; nil (estimated)
// without ptxas or when it fails.
func PtxasUsage(art *artifact.Artifact) (map[string]Usage, string) {
	bin := os.Getenv("SLC_PTXAS")
	if bin == "" {
		bin, _ = exec.LookPath("ptxas")
	}
	if bin == "" {
		return nil, "estimated by kernel kind (no ptxas: set $SLC_PTXAS or put it on PATH for its -v report)"
	}
	dir, err := os.MkdirTemp("", "slc-ptxas")
	if err != nil {
		return nil, "estimated by kernel kind (" + err.Error() + ")"
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "m.ptx")
	if err := os.WriteFile(src, art.Code, 0o600); err != nil {
		return nil, "estimated by kernel kind (" + err.Error() + ")"
	}
	out, err := exec.Command(bin, "-arch="+art.Target.CPU, "-v", "-o", filepath.Join(dir, "m.cubin"), src).CombinedOutput()
	if err != nil {
		return nil, fmt.Sprintf("estimated by kernel kind (%s failed: %v)", bin, err)
	}
	u := ParsePtxas(string(out))
	spills := 0
	for _, k := range u {
		if k.Spills > 0 {
			spills++
		}
	}
	return u, fmt.Sprintf("from %s -v for %s (%d kernels, %d with spills)", bin, art.Target.CPU, len(u), spills)
}
