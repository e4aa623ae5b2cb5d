package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/hostcpu"
)

// An AMX target (sapphirerapids) compiles on any host: its bf16 GEMMs are
// AMX kernels (tdpbf16ps on tiles, the configuration loaded and released
// in each), and a host without AMX refuses to train the artifact in one
// line that names the missing feature and the --cpu to use instead.
func TestCompileAMX(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	common := []string{"compile", configTiny, "--rank", "4", "--batch-size", "2", "--max-length", "8", "--cpu", "sapphirerapids"}
	for _, dtype := range []string{"bfloat16", "bf16-mixed"} {
		asm := mustSlc(t, append(common, "--dtype", dtype, "--emit", "asm")...)
		for _, ins := range []string{"tdpbf16ps", "tileloadd", "ldtilecfg", "tilerelease"} {
			if !strings.Contains(asm, ins) {
				t.Errorf("--dtype %s --cpu sapphirerapids: no %s in the assembly", dtype, ins)
			}
		}
	}
	art := filepath.Join(t.TempDir(), "amx.slc")
	mustSlc(t, append(common, "--dtype", "bfloat16", "-o", art)...)
	if hostcpu.Supported("amx-tile") && hostcpu.Supported("amx-bf16") {
		t.Skip("host has AMX: the refusal of a foreign AMX artifact is not tested here")
	}
	corpus := filepath.Join(t.TempDir(), "corpus.txt")
	text := make([]byte, 4096)
	for i := range text {
		text[i] = byte(1 + i*7%31) // ids below llama_tiny's vocabulary of 32
	}
	if err := os.WriteFile(corpus, text, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := slc(t, "train", art, "--data", corpus, "--num-training-steps", "1")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "needs the CPU feature amx-") || !strings.Contains(errs, "--cpu") {
		t.Errorf("train of a sapphirerapids artifact on a host without AMX: exit %d, stderr %q", code, errs)
	}
}
