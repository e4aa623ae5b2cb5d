package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// t5Model is a T5-style SentencePiece model (unigram, nmt_nfkc, pad 0,
// eos 1, unk 2, no bos; vocabulary 320) trained on Tiny Shakespeare with
// spm_train.
const t5Model = "../../testdata/tokenizers/t5_unigram_320.model"

// writeDocs writes a C4-style JSON-lines file of n documents of very
// different lengths.
func writeDocs(t *testing.T, path string, n int) {
	t.Helper()
	text, err := os.ReadFile(corpus)
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(string(text))
	var b bytes.Buffer
	at := 0
	for i := 0; i < n; i++ {
		k := 1 + (i*37)%60 // 1 to 60 words
		if at+k > len(words) {
			at = 0
		}
		doc := strings.Join(words[at:at+k], " ")
		at += k
		line, _ := json.Marshal(map[string]string{"text": doc, "timestamp": "2019-04-25T12:57:54Z", "url": fmt.Sprintf("https://example.com/%d", i)})
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The seed's document rows through slc train: a SentencePiece tokenizer,
// one document per row, padded, pad labels out of the loss, tokens_seen the
// non-pad tokens; a run resumed from its middle checkpoint ends
// bit-identical to an uninterrupted one.
func TestTrainDocumentRows(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	dir := t.TempDir()
	docs := filepath.Join(dir, "c4-train.00000-of-00001.json")
	writeDocs(t, docs, 120)
	args := func(save string) []string {
		return []string{"train", "../../testdata/configs/llama_shakespeare.json", "--data", docs, "--tokenizer", t5Model, "--rows", "documents", "--stream=false",
			"--batch-size", "4", "--max-length", "32", "--rank", "8", "--threads", "2", "--num-training-steps", "4", "--save-every", "2", "--save-dir", save}
	}
	whole, part := filepath.Join(dir, "whole"), filepath.Join(dir, "part")
	out := mustSlc(t, args(whole)...)
	if !strings.Contains(out, "train documents, one per row of 32 tokens (truncated, padded with id 0") {
		t.Errorf("train output does not describe document rows:\n%s", out)
	}
	mustSlc(t, args(part)...)
	if err := os.RemoveAll(filepath.Join(part, "checkpoint-4")); err != nil {
		t.Fatal(err)
	}
	mustSlc(t, "train", "--continue-from", filepath.Join(part, "checkpoint-2"), "--threads", "2")
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		a, _ := os.ReadFile(filepath.Join(whole, "checkpoint-4", f))
		b, _ := os.ReadFile(filepath.Join(part, "checkpoint-4", f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s of the resumed run differs from the uninterrupted one", f)
		}
	}
	f, err := os.Open(filepath.Join(whole, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var prev float64
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		seen, ok := rec["tokens_seen"].(float64)
		if !ok {
			continue
		}
		if d := seen - prev; d <= 0 || d > 4*32 {
			t.Errorf("update %v: %v tokens seen, want 1 to 4 × 32", rec["step"], d)
		}
		prev = seen
	}
	if prev == 0 || prev >= 4*4*32 {
		t.Errorf("%v tokens seen in 4 updates of 4 × 32: pads must not count", prev)
	}
	// eval and generate take the run's tokenizer and rows from the checkpoint:
	// eval on the held-out documents gives the run's own final eval loss.
	out = mustSlc(t, "eval", filepath.Join(whole, "latest"), "--data", docs, "--eval-fraction", "0.05", "--threads", "2")
	var last map[string]any
	raw, _ := os.ReadFile(filepath.Join(whole, "metrics.jsonl"))
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["eval_loss"] != nil {
			last = rec
		}
	}
	if want := fmt.Sprintf("eval loss %.4f", last["eval_loss"]); !strings.Contains(out, want) {
		t.Errorf("slc eval says\n%s\nwant %q (the run's last eval)", out, want)
	}
	out = mustSlc(t, "generate", filepath.Join(whole, "latest"), "--prompt", "ROMEO:", "--max-new-tokens", "5", "--threads", "2")
	if !strings.HasPrefix(out, "ROMEO:") {
		t.Errorf("generate printed %q, want the prompt's text first", out)
	}
}

// --eval-tokens evaluates the seed's way: batches until more than N non-pad
// tokens, the seed's figure the loss sum over batches + 1 beside the mean.
func TestSeedEval(t *testing.T) {
	tinyArtifact(t)
	dir := t.TempDir()
	docs := filepath.Join(dir, "docs.jsonl")
	writeDocs(t, docs, 200)
	mustSlc(t, "train", "../../testdata/configs/llama_shakespeare.json", "--data", docs, "--tokenizer", t5Model, "--rows", "documents", "--stream=false",
		"--batch-size", "2", "--max-length", "32", "--rank", "4", "--threads", "2", "--num-training-steps", "2", "--eval-fraction", "0.2",
		"--eval-tokens", "300", "--save-dir", filepath.Join(dir, "run"))
	raw, err := os.ReadFile(filepath.Join(dir, "run", "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		EvalLoss   *float64 `json:"eval_loss"`
		SeedLoss   float64  `json:"eval_loss_seed"`
		EvalTokens int64    `json:"eval_tokens"`
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		json.Unmarshal([]byte(line), &rec)
	}
	if rec.EvalLoss == nil || rec.EvalTokens <= 300 || rec.EvalTokens > 300+2*32 {
		t.Fatalf("last eval: %+v; want more than 300 tokens, by less than one batch", rec)
	}
	k := rec.SeedLoss / (*rec.EvalLoss - rec.SeedLoss) // seed = mean·k/(k+1)
	if math.Abs(k-math.Round(k)) > 1e-6 || k < 1 {
		t.Errorf("eval_loss_seed %v and eval_loss %v are not sum/(k+1) and sum/k (k = %v)", rec.SeedLoss, *rec.EvalLoss, k)
	}
}

func TestTrainDocumentRowsBadInput(t *testing.T) {
	tinyArtifact(t)
	dir := t.TempDir()
	docs := filepath.Join(dir, "docs.jsonl")
	writeDocs(t, docs, 20)
	base := []string{"train", "../../testdata/configs/llama_shakespeare.json", "--data", docs, "--batch-size", "2", "--max-length", "16", "--rank", "4", "--num-training-steps", "1", "--save-dir", filepath.Join(dir, "run")}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"documents without a tokenizer", append(base, "--rows", "documents"), 2, "--rows documents: needs --tokenizer"},
		{"unknown rows", append(base, "--rows", "docs"), 2, `flag --rows: "docs" is not packed or documents`},
		{"tokenizer larger than the model", []string{"train", configBytes, "--data", docs, "--tokenizer", t5Model, "--batch-size", "2", "--max-length", "16", "--rank", "4", "--num-training-steps", "1", "--save-dir", filepath.Join(dir, "run2")}, 1, "its vocabulary has 320 ids, more than the model's vocab_size"},
		{"not a tokenizer", append(base, "--tokenizer", docs), 1, "docs.jsonl"},
	} {
		_, stderr, code := slc(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", c.name, code, stderr, c.code, c.want)
		}
	}
}
