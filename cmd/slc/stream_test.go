package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/train"
)

var (
	docArtOnce sync.Once
	docArtPath string
)

// docArtifact compiles the Shakespeare model (vocab 320, the T5-style
// tokenizer's) for document rows of 4 × 32, SLTrain r 8, once.
func docArtifact(t *testing.T) string {
	t.Helper()
	tinyArtifact(t) // skips without a C compiler
	docArtOnce.Do(func() {
		p := filepath.Join(filepath.Dir(slcBin), "documents.slc")
		if _, _, code := slc(t, "compile", "../../testdata/configs/llama_shakespeare.json", "--rows", "documents", "--batch-size", "4", "--max-length", "32", "--rank", "8", "-o", p); code == 0 {
			docArtPath = p
		}
	})
	if docArtPath == "" {
		t.Fatal("compiling the Shakespeare model for document rows failed")
	}
	return docArtPath
}

// synthShards writes n synthetic C4 shards of docs documents each (cut from
// the test corpus) into dir and returns dir.
func synthShards(t *testing.T, dir string, n, docs int, seed uint64) string {
	t.Helper()
	text, err := os.ReadFile(corpus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c4.WriteSynthetic(dir, c4.Synthetic{Corpus: text, Shards: n, Docs: docs, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// streamArgs are the flags of a streamed run of 4 updates of 2 micro-batches
// of 4 documents, saving every 2.
func streamArgs(model, shards, save string, extra ...string) []string {
	args := []string{"train", model, "--data", shards, "--tokenizer", t5Model, "--rows", "documents", "--threads", "2",
		"--total-batch-size", "8", "--num-training-steps", "4", "--save-every", "2", "--save-dir", save}
	return append(args, extra...)
}

// sameWeights reports whether two checkpoints hold byte-identical model and
// optimizer files.
func sameWeights(t *testing.T, a, b string) {
	t.Helper()
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s of %s differs from %s's", f, b, a)
		}
	}
}

// C4-format shards stream into training: the data line says so, the
// checkpoint holds the stream's position (here in the second epoch: 3
// shards of 5 documents, 16 documents in 2 updates), and a run resumed from
// its middle checkpoint ends bit-identical to an uninterrupted one. Without
// shuffling, a streamed run trains on exactly the rows of the same shards
// loaded into memory (--stream=false), to the bit.
func TestTrainStream(t *testing.T) {
	art := docArtifact(t)
	dir := t.TempDir()
	shards := synthShards(t, filepath.Join(dir, "train"), 3, 5, 0)
	val := synthShards(t, filepath.Join(dir, "val"), 1, 8, 1)
	whole, part := filepath.Join(dir, "whole"), filepath.Join(dir, "part")
	shuffled := []string{"--eval-data", val, "--shuffle-buffer", "3", "--seed", "5"}
	out := mustSlc(t, streamArgs(art, shards, whole, shuffled...)...)
	if !strings.Contains(out, "streams 3 shards document by document (shuffled: each epoch's shard order, then a buffer of 3 documents), one per row of 32 tokens") {
		t.Errorf("train output does not say it streams:\n%s", out)
	}
	mustSlc(t, streamArgs(art, shards, part, shuffled...)...)
	if err := os.RemoveAll(filepath.Join(part, "checkpoint-4")); err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Load(filepath.Join(part, "checkpoint-2"))
	if err != nil {
		t.Fatal(err)
	}
	var pos c4.Position
	if err := json.Unmarshal(ck.State.DataPosition, &pos); err != nil || pos.Epoch != 1 || pos.Doc == 0 || ck.State.Format != 2 {
		t.Errorf("checkpoint-2: data_position %s (%v), format %d; want epoch 1, inside a shard, format 2", ck.State.DataPosition, err, ck.State.Format)
	}
	out = mustSlc(t, "train", "--continue-from", filepath.Join(part, "checkpoint-2"), "--threads", "2")
	if !strings.Contains(out, "Resuming") || !strings.Contains(out, "streams 3 shards") {
		t.Errorf("the resumed run:\n%s", out)
	}
	sameWeights(t, filepath.Join(whole, "checkpoint-4"), filepath.Join(part, "checkpoint-4"))

	inOrder := []string{"--shuffle=false", "--eval-fraction", "0"}
	streamed, loaded := filepath.Join(dir, "streamed"), filepath.Join(dir, "loaded")
	mustSlc(t, streamArgs(art, shards, streamed, inOrder...)...)
	out = mustSlc(t, streamArgs(art, shards, loaded, append(inOrder, "--stream=false")...)...)
	if !strings.Contains(out, "15 train documents") {
		t.Errorf("--stream=false does not load the shards:\n%s", out)
	}
	sameWeights(t, filepath.Join(loaded, "checkpoint-4"), filepath.Join(streamed, "checkpoint-4"))
}

// A streamed run's bad input is one slc: line: a held-out split it cannot
// make, a shard that is not gzip (before any checkpoint), a bad line met
// mid-run (file:line, after the last good checkpoint, nothing saved after
// it), and a resume that changes whether the data stream.
func TestTrainStreamBadInput(t *testing.T) {
	art := docArtifact(t)
	dir := t.TempDir()
	shards := synthShards(t, filepath.Join(dir, "train"), 2, 6, 0)
	oneLine := func(name string, args []string, code int, want ...string) string {
		t.Helper()
		_, stderr, got := slc(t, args...)
		if got != code || strings.Count(strings.TrimSpace(stderr), "\n") > 0 || !strings.HasPrefix(stderr, "slc: ") {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one slc: line", name, got, stderr, code)
		}
		for _, w := range want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", name, stderr, w)
			}
		}
		return stderr
	}
	oneLine("no eval split", streamArgs(art, shards, filepath.Join(dir, "r0")), 2, "cannot be split", "--eval-data", "--eval-fraction 0")
	oneLine("zero shuffle buffer", streamArgs(art, shards, filepath.Join(dir, "r0"), "--eval-fraction", "0", "--shuffle-buffer", "0"), 2, "--shuffle-buffer")
	oneLine("--stream on token files", []string{"train", art, "--data", corpus, "--tokenizer", t5Model, "--rows", "documents", "--stream", "--save-dir", filepath.Join(dir, "r0")}, 2, "flag --stream")

	notGzip := filepath.Join(dir, "notgzip")
	os.MkdirAll(notGzip, 0o755)
	os.WriteFile(filepath.Join(notGzip, "c4-train.00000-of-00001.json.gz"), []byte(`{"text": "plain"}`+"\n"), 0o644)
	save := filepath.Join(dir, "r1")
	oneLine("not gzip", streamArgs(art, notGzip, save, "--eval-fraction", "0"), 1, "update 1: ", "c4-train.00000-of-00001.json.gz", "gzip", "no checkpoint was saved")
	if old := train.CheckpointNames(save); len(old) > 0 {
		t.Errorf("checkpoints saved before the bad shard: %v", old)
	}

	// 20 good documents, then a line without "text": line 21 is read by
	// the third update (documents 17 to 24).
	badDir := filepath.Join(dir, "bad")
	os.MkdirAll(badDir, 0o755)
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, `{"text": "To be, or not to be, that is the question %d"}`+"\n", i)
	}
	b.WriteString(`{"txt": "no text"}` + "\n")
	os.WriteFile(filepath.Join(badDir, "a.jsonl"), []byte(b.String()), 0o644)
	save = filepath.Join(dir, "r2")
	oneLine("bad line", streamArgs(art, badDir, save, "--eval-fraction", "0", "--shuffle=false", "--save-every", "1"), 1,
		"update 3: ", "a.jsonl:21:", "training stopped without saving this state", "the last good checkpoint is "+filepath.Join(save, "checkpoint-2"))
	if old := train.CheckpointNames(save); strings.Join(old, " ") != "checkpoint-1 checkpoint-2" {
		t.Errorf("checkpoints %v, want checkpoint-1 and checkpoint-2 only", old)
	}

	// A streamed checkpoint does not resume in memory, nor one held in
	// memory streamed.
	oneLine("resume a stream in memory", []string{"train", "--continue-from", filepath.Join(save, "checkpoint-2"), "--stream=false"}, 2, "streamed", "--stream")
	mem := filepath.Join(dir, "r3")
	mustSlc(t, streamArgs(art, shards, mem, "--eval-fraction", "0", "--stream=false", "--num-training-steps", "2", "--save-every", "1")...)
	oneLine("resume in memory streamed", []string{"train", "--continue-from", filepath.Join(mem, "checkpoint-1"), "--stream"}, 2, "in memory", "--stream=false")
}

// A streamed run that asks for no evaluation (--eval-every 0, no
// --eval-data) needs no split: it trains as --eval-fraction 0 does. An
// --eval-fraction given with it still asks for a split a stream cannot make.
func TestTrainStreamNoEvalAsked(t *testing.T) {
	art := docArtifact(t)
	dir := t.TempDir()
	shards := synthShards(t, filepath.Join(dir, "train"), 2, 6, 0)
	noEval, noSplit := filepath.Join(dir, "noeval"), filepath.Join(dir, "nosplit")
	out := mustSlc(t, streamArgs(art, shards, noEval, "--shuffle=false", "--eval-every", "0")...)
	if !strings.Contains(out, "no evaluation") || strings.Contains(out, "eval loss") {
		t.Errorf("--eval-every 0 on a stream evaluates:\n%s", out)
	}
	mustSlc(t, streamArgs(art, shards, noSplit, "--shuffle=false", "--eval-fraction", "0")...)
	sameWeights(t, filepath.Join(noEval, "checkpoint-4"), filepath.Join(noSplit, "checkpoint-4"))
	_, stderr, code := slc(t, streamArgs(art, shards, filepath.Join(dir, "split"), "--eval-every", "0", "--eval-fraction", "0.1")...)
	if code != exitUsage || !strings.Contains(stderr, "cannot be split") {
		t.Errorf("--eval-fraction 0.1 on a stream: exit %d, %q", code, stderr)
	}
}
