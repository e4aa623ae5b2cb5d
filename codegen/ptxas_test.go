package codegen

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/roofline"
	"gitee.com/gidean/conv-linn/target"
)

// TestPTXAssembles runs NVIDIA's ptxas -v ($SLC_PTXAS, else ptxas on PATH;
// ../shared/tools/ptxas/get.sh fetches it) on the tiny LLaMA's cuda
// artifact (SLTrain, pure bf16: multi-tensor kernels, row kernels, GEMMs,
// the sparse parts) for sm_90 and sm_80, portable and tensor-core kernels,
// and wants every entry assembled without spills.
func TestPTXAssembles(t *testing.T) {
	bin := os.Getenv("SLC_PTXAS")
	if bin == "" {
		bin, _ = exec.LookPath("ptxas")
	}
	if bin == "" {
		t.Skip("no ptxas ($SLC_PTXAS or PATH; ../shared/tools/ptxas/get.sh): the PTX is not assembled")
	}
	s := pipeline(t, "llama_tiny.json", 2, 8, 4)
	s, err := s.ForDevice("cuda") // the loss head unfused
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`(?m)^\.visible \.entry (\S+)\(`)
	for _, gpu := range []string{"sm_90", "sm_80"} {
		for _, kernels := range []string{"portable", "tensorcore"} {
			art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, Target: target.NewCUDA(gpu, target.Kernels(kernels))})
			if err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), "m.ptx")
			if err := os.WriteFile(src, art.Code, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-arch="+gpu, "-v", "-o", src+".cubin", src).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: ptxas: %v\n%s", gpu, kernels, err, out)
			}
			u := roofline.ParsePtxas(string(out))
			want := len(entry.FindAllString(string(art.Code), -1))
			if len(u) != want || want == 0 {
				t.Errorf("%s %s: ptxas reported %d entries of %d", gpu, kernels, len(u), want)
			}
			mt := 0
			for name, k := range u {
				if k.Spills > 0 {
					t.Errorf("%s %s: %s spills %d bytes (%d registers)", gpu, kernels, name, k.Spills, k.Registers)
				}
				if strings.HasPrefix(name, "slc_mt_") {
					mt++
				}
			}
			if mt == 0 {
				t.Errorf("%s %s: no multi-tensor kernel assembled", gpu, kernels)
			}
		}
	}
}
