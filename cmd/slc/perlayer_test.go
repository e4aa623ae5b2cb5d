package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainPerLayerBitIdentical: an optimizer's _per_layer form (every
// parameter updated inside the backward) trains exactly as the optimizer
// does after the backward: after three updates with weight decay, the
// weights and the optimizer states are bit-identical, in f32 and in pure
// bf16, with one micro-batch per update and with two accumulated.
func TestTrainPerLayerBitIdentical(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	for _, c := range []struct{ dtype, opt, total string }{
		{"f32", "adamw", "4"}, {"bf16", "adamw", "4"}, {"f32", "adam8bit", "4"}, {"bf16", "adam8bit", "4"}, {"f32", "adafactor", "4"}, {"bf16", "sgd", "4"},
		{"f32", "adamw", "8"}, {"bf16", "adam8bit", "8"},
	} {
		t.Run(c.dtype+"-"+c.opt+"-"+c.total, func(t *testing.T) {
			dir := t.TempDir()
			run := func(opt string) string {
				save := filepath.Join(dir, opt)
				out := mustSlc(t, trainArgs(configBytes, save, "--dtype", c.dtype, "--optimizer", opt, "--beta1", beta1Of(c.opt), "--total-batch-size", c.total,
					"--num-training-steps", "3", "--warmup-steps", "1", "--weight-decay", "0.1", "--eval-every", "0")...)
				if strings.HasSuffix(opt, "_per_layer") && !strings.Contains(out, "per layer (updates inside the backward)") {
					t.Errorf("train output does not say the updates are per layer:\n%s", out)
				}
				return filepath.Join(save, "checkpoint-3")
			}
			whole, layer := run(c.opt), run(c.opt+"_per_layer")
			for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
				a, err := os.ReadFile(filepath.Join(whole, f))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(layer, f))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Errorf("%s after 3 per-layer updates differs from the whole-model run's", f)
				}
			}
		})
	}
}

func beta1Of(opt string) string {
	if opt == "sgd" || opt == "adafactor" {
		return "0.9"
	}
	return "0"
}

// TestTrainPerLayerRefusals: what per-layer updates cannot do is refused in
// one line (exit 2): clipping, several ranks; and an artifact compiled for
// one micro-batch per update is not trained with accumulation.
func TestTrainPerLayerRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--optimizer", "adam8bit_per_layer", "--grad-clipping", "1"}, "--grad-clipping: 1 with --optimizer adam8bit_per_layer is refused"},
		{[]string{"--optimizer", "AdamW_per_layer", "--nproc", "2"}, "--optimizer adamw_per_layer with 2 ranks is refused"},
	} {
		_, stderr, code := slc(t, trainArgs(configBytes, filepath.Join(dir, "x"), c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, stderr, c.want)
		}
	}
	art := filepath.Join(dir, "pl.slc")
	mustSlc(t, "compile", configBytes, "--batch-size", "4", "--max-length", "32", "--rank", "4", "--optimizer", "adamw_per_layer", "-o", art)
	_, stderr, code := slc(t, trainArgs(art, filepath.Join(dir, "y"), "--total-batch-size", "8")...)
	if code == 0 || !strings.Contains(stderr, "compiled for per-layer updates of one micro-batch each") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("a one-micro-batch per-layer artifact with accumulation: exit %d, stderr %q", code, stderr)
	}
}
