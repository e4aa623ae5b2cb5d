package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// TestTrainOptimizersResumeBitIdentical trains the tiny model with each of
// the seed's other optimizers (compiled into its artifact) four updates,
// and again two, resumed to four: the checkpoints are bit-identical and
// hold the optimizer's own states. The artifact's optimizer is fixed.
func TestTrainOptimizersResumeBitIdentical(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	for _, c := range []struct {
		opt, beta1, label string
		states            []string // suffixes in optimizer.safetensors
	}{
		{"Adam", "0", "Adam (L2 weight decay)", []string{".exp_avg", ".exp_avg_sq"}},
		{"sgd", "0.9", "SGD (momentum 0.9)", []string{".momentum_buffer"}},
		{"adafactor", "0.9", "Adafactor (β1 0.9)", []string{".exp_avg_sq_row", ".exp_avg_sq_col", ".exp_avg_sq", ".exp_avg"}},
		{"adam8bit", "0", "Adam8bit (8-bit block-wise moments)", []string{".state1", ".state2", ".absmax1", ".absmax2"}},
	} {
		t.Run(c.opt, func(t *testing.T) {
			dir := t.TempDir()
			art := filepath.Join(dir, "m.slc")
			mustSlc(t, "compile", configBytes, "--batch-size", "4", "--max-length", "32", "--rank", "4", "--optimizer", c.opt, "--beta1", c.beta1, "-o", art)
			args := func(save string) []string {
				return trainArgs(art, save, "--num-training-steps", "4", "--save-every", "2", "--weight-decay", "0.1", "--grad-clipping", "0.5")
			}
			whole, part := filepath.Join(dir, "whole"), filepath.Join(dir, "part")
			out := mustSlc(t, args(whole)...)
			if !strings.Contains(out, c.label+", weight decay 0.1") {
				t.Errorf("train output does not name %s:\n%s", c.label, out)
			}
			mustSlc(t, args(part)...)
			if err := os.RemoveAll(filepath.Join(part, "checkpoint-4")); err != nil {
				t.Fatal(err)
			}
			mustSlc(t, "train", "--continue-from", filepath.Join(part, "checkpoint-2"), "--threads", "2")
			for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
				a, err := os.ReadFile(filepath.Join(whole, "checkpoint-4", f))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(part, "checkpoint-4", f))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Errorf("%s of the resumed run differs from the uninterrupted one", f)
				}
			}
			st, err := safetensors.Read(filepath.Join(whole, "checkpoint-4", "optimizer.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			codes := 0
			for _, name := range st.Names() {
				if st.Get(name).DType == ir.U8 {
					codes++
				}
				for _, s := range c.states {
					if strings.HasSuffix(name, s) {
						seen[s] = true
					}
				}
				if strings.HasSuffix(name, ".exp_avg_sq") && c.opt == "adafactor" && strings.Contains(name, "lora_") {
					t.Errorf("%s: a matrix's Adafactor second moment is not factored", name)
				}
			}
			if (codes > 0) != (c.opt == "adam8bit") {
				t.Errorf("%d u8 tensors in optimizer.safetensors of %s", codes, c.opt)
			}
			for _, s := range c.states {
				if !seen[s] {
					t.Errorf("optimizer.safetensors has no *%s state (has %v)", s, st.Names()[:min(4, len(st.Names()))])
				}
			}
			other := map[bool]string{true: "adamw", false: "adam"}[c.opt == "Adam"]
			_, stderr, code := slc(t, trainArgs(art, filepath.Join(dir, "x"), "--optimizer", other)...)
			if code != 2 || !strings.Contains(stderr, "optimizer is fixed") {
				t.Errorf("--optimizer %s on a %s artifact: exit %d, %q", other, c.opt, code, stderr)
			}
		})
	}
}

// TestTrainSeedFlags: the seed's flags slc does not build, and settings the
// seed asserts against, are refused in one line each (exit 2, naming the
// flag), and --max-train-tokens sets the number of updates.
func TestTrainSeedFlags(t *testing.T) {
	art := tinyArtifact(t)
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--optimizer", "adam8bit_per_layer", "--grad_clipping", "1"}, "before the global gradient norm is known"},
		{[]string{"--optimizer", "lion"}, "is not adam, adamw, sgd, adafactor"},
		{[]string{"--optimizer", "Adam", "--beta1", "0.5"}, "--beta1: 0.5 applies to sgd"},
		{[]string{"--optimizer", "sgd", "--beta1", "1"}, "--beta1: sgd's β1 must be in [0, 1)"},
		{[]string{"--scheduler", "cosine_restarts"}, "--scheduler cosine_restarts needs --restart-warmup-steps"},
		{[]string{"--memory_budget", "8 parsecs"}, "--memory-budget: \"8 parsecs\" is not a memory size"},
		{[]string{"--memory-budget", "1KB"}, "1000 bytes: the plan needs"},
		{[]string{"--train_scaling", "--peft", "full"}, "--train-scaling: the trainable scale is an SLTrain layer's"},
		{[]string{"--lora_dropout", "0.1"}, "--lora-dropout: 0.1 is refused"},
		{[]string{"--max_train_tokens", "12Q"}, "--max-train-tokens: \"12Q\" is not a token count"},
	} {
		_, stderr, code := slc(t, trainArgs(configBytes, filepath.Join(dir, "x"), c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, stderr, c.want)
		}
	}
	// 300 tokens at 4 × 32 per update: 3 updates.
	out := mustSlc(t, trainArgs(art, filepath.Join(dir, "tokens"), "--max_train_tokens", "300", "--num-training-steps", "100")...)
	if !strings.Contains(out, "Training: 3 updates") {
		t.Errorf("--max-train-tokens 300 at 128 tokens per update does not train 3 updates:\n%s", out)
	}
	for _, c := range []struct {
		in   string
		want int64
	}{{"100M", 100_000_000}, {"1B", 1_000_000_000}, {"2.5b", 2_500_000_000}, {"4096", 4096}} {
		if n, err := parseTokenCount(c.in); err != nil || n != c.want {
			t.Errorf("parseTokenCount(%q) = %d, %v; want %d", c.in, n, err, c.want)
		}
	}
}
