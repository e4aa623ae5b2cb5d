package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/hostcpu"
)

// A checkpoint trained for one CPU evaluates, generates and resumes on
// another: the commands compile for the CPU they run on (or --cpu), and the
// checkpoint's recorded cpu is only a record. The run trains with
// --cpu x86-64-v3; a copy of its checkpoint then claims sapphirerapids (AMX,
// AVX512-FP16: a CPU this host is not), as if written on such a machine.
func TestCheckpointOfAnotherCPU(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	dir := t.TempDir()
	save := filepath.Join(dir, "run")
	mustSlc(t, trainArgs(configBytes, save, "--num-training-steps", "4", "--save-every", "2", "--cpu", "x86-64-v3")...)
	ck, err := checkpoint.Load(filepath.Join(save, "checkpoint-4"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ck.State.Args["cpu"]; got != "x86-64-v3" {
		t.Fatalf("the checkpoint records cpu %v, want x86-64-v3", got)
	}

	// The foreign copy: training_state.json says it ran on a Sapphire Rapids.
	foreign := filepath.Join(dir, "foreign")
	copyTree(t, save, foreign)
	fck, err := checkpoint.Load(filepath.Join(foreign, "checkpoint-4"))
	if err != nil {
		t.Fatal(err)
	}
	fck.State.Args["cpu"] = "sapphirerapids"
	if err := checkpoint.Save(filepath.Join(foreign, "checkpoint-4"), fck); err != nil {
		t.Fatal(err)
	}

	for _, run := range []string{save, foreign} {
		ckpt := filepath.Join(run, "checkpoint-4")
		out := mustSlc(t, "eval", ckpt, "--data", corpus, "--eval-fraction", "0.05", "--threads", "2")
		if !strings.Contains(out, "eval loss ") {
			t.Errorf("eval of %s: %q", ckpt, out)
		}
		mustSlc(t, "eval", ckpt, "--data", corpus, "--eval-fraction", "0.05", "--threads", "2", "--cpu", "x86-64")
		if out := mustSlc(t, "generate", ckpt, "--prompt", "ROMEO:", "--max-new-tokens", "5", "--threads", "2"); !strings.HasPrefix(out, "ROMEO:") {
			t.Errorf("generate of %s: %q", ckpt, out)
		}
		out = mustSlc(t, "train", "--continue-from", ckpt, "--num-training-steps", "6", "--threads", "2")
		if !strings.Contains(out, "step 6/6") {
			t.Errorf("resume of %s: %q", ckpt, out)
		}
		resumed, err := checkpoint.Load(filepath.Join(run, "checkpoint-6"))
		if err != nil {
			t.Fatal(err)
		}
		if got := resumed.State.Args["cpu"]; got != "" {
			t.Errorf("resumed from %s with the default --cpu, the new checkpoint records cpu %v, want \"\" (this host)", ckpt, got)
		}
	}

	// An explicit --cpu the host cannot run is still refused, in one line.
	other := foreignCPU(t)
	_, errs, code := slc(t, "eval", filepath.Join(save, "checkpoint-4"), "--data", corpus, "--threads", "2", "--cpu", other)
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "needs the CPU feature") || !strings.Contains(errs, "--cpu") {
		t.Errorf("eval --cpu %s: exit %d, stderr %q", other, code, errs)
	}
}

// foreignCPU names an LLVM CPU whose code this host cannot run, asked of the
// host's CPUID: an AMD host lacks Sapphire Rapids' AMX tiles, an Intel host
// lacks Zen 4's sse4a and clzero. The machines this project runs on change
// between the two, so no single name is foreign to every one of them.
func foreignCPU(t *testing.T) string {
	t.Helper()
	switch {
	case !hostcpu.Supported("amx-tile"):
		return "sapphirerapids"
	case !hostcpu.Supported("sse4a") || !hostcpu.Supported("clzero"):
		return "znver4"
	}
	t.Skip("this host runs both sapphirerapids (AMX) and znver4 (sse4a, clzero) code: no foreign CPU to refuse")
	return ""
}

// copyTree copies a directory of regular files and symbolic links.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case fi.IsDir():
			return os.MkdirAll(dst, 0o755)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, data, fi.Mode())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A rank larger than a layer is a usage error for slc train too, found when
// the model is compiled (after the "Model:" line).
func TestTrainRankTooBig(t *testing.T) {
	_, errs, code := slc(t, "train", configBytes, "--data", corpus, "--rank", "17", "--save-dir", filepath.Join(t.TempDir(), "r"))
	if code != 2 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "flag --rank: "+configBytes+": rank must be in [1, 16]") || !strings.Contains(errs, "slc train --help") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// Every flag's help states its default once (a Usage that says "default"
// itself next to urfave/cli's "(default: …)" read twice).
func TestHelpStatesOneDefault(t *testing.T) {
	for _, cmd := range []string{"compile", "inspect", "bench", "train", "eval", "generate", "export", "plot"} {
		out := mustSlc(t, cmd, "--help")
		for _, line := range strings.Split(out, "\n") {
			if strings.Count(strings.ToLower(line), "default") > 1 {
				t.Errorf("slc %s --help: %q states a default twice", cmd, strings.TrimSpace(line))
			}
		}
	}
}
