package data

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/data/c4"
)

// writeShards writes C4-style shards into dir: shard k holds n[k]
// documents of 0 to 11 words (so rows of 6 see padded, exact and truncated
// documents), the last one gzipped.
func writeShards(t *testing.T, dir string, n ...int) []string {
	t.Helper()
	var paths []string
	for k, docs := range n {
		var b bytes.Buffer
		for i := range docs {
			text := strings.Repeat("w ", (k*7+i*5)%12)
			fmt.Fprintf(&b, `{"text": %q, "url": "u%d"}`+"\n", text, i)
			if i == 1 {
				b.WriteString("\n") // a blank line is no document
			}
		}
		data, name := b.Bytes(), fmt.Sprintf("s%d.jsonl", k)
		if k == len(n)-1 {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(data)
			zw.Close()
			data, name = z.Bytes(), name+".gz"
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// counting is a test tokenizer: word i of a text is id 10+i.
type counting struct{}

func (counting) Encode(text string) []int32 {
	var ids []int32
	for i := range strings.Fields(text) {
		ids = append(ids, int32(10+i))
	}
	return ids
}

const streamEOS, streamPad = 1, 0

func streamBatcher(t *testing.T, files []string, opt c4.Options, rowLen, batch int) *StreamBatcher {
	t.Helper()
	s, err := c4.NewStream(files, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewStreamBatcher(s, counting{}, streamEOS, streamPad, rowLen, batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// Unshuffled, a stream's rows are those NewDocumentBatcher makes of the same
// shards loaded whole: the same ids, loss masks and token counts, batch for
// batch, across epochs (7 documents, batches of 3).
func TestStreamBatcherRowsAreDocumentRows(t *testing.T) {
	dir := t.TempDir()
	files := writeShards(t, dir, 4, 3)
	tokens, err := Load(dir, LoadOptions{Separator: streamEOS, Tokenizer: counting{}})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := NewDocumentBatcher(Documents(tokens, streamEOS), 6, 3, streamPad, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := streamBatcher(t, files, c4.Options{}, 6, 3)
	if !st.Documents() || st.RowLen() != 6 || st.Batch() != 3 {
		t.Fatalf("Documents %v, RowLen %d, Batch %d", st.Documents(), st.RowLen(), st.Batch())
	}
	var padded, truncated bool
	for i := range 8 {
		want, got := mem.Next(), st.Next()
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(st.LossMask(), mem.LossMask()) || st.Tokens() != mem.Tokens() {
			t.Fatalf("batch %d: stream %v mask %v tokens %d; in memory %v mask %v tokens %d", i, got, st.LossMask(), st.Tokens(), want, mem.LossMask(), mem.Tokens())
		}
		for r := range 3 {
			padded = padded || got[r*6+5] == streamPad
			truncated = truncated || got[r*6+5] != streamEOS && got[r*6+5] != streamPad
		}
	}
	if !padded || !truncated {
		t.Errorf("the shards make no padded (%v) or no truncated (%v) row", padded, truncated)
	}
}

// A batcher moved to a saved Mark — through JSON, in a fresh stream —
// continues with exactly the batches the original served, shuffled or not.
func TestStreamBatcherResume(t *testing.T) {
	dir := t.TempDir()
	files := writeShards(t, dir, 5, 4, 6)
	for _, opt := range []c4.Options{{}, {Shuffle: true, Seed: 9, Buffer: 3}} {
		a := streamBatcher(t, files, opt, 6, 2)
		for range 4 {
			a.Next()
		}
		m := a.Mark()
		if m.Epoch != 0 || m.Index != 0 || len(m.Stream) == 0 {
			t.Fatalf("Mark %+v", m)
		}
		raw, _ := json.Marshal(m.Stream)
		var back json.RawMessage
		json.Unmarshal(raw, &back)
		b := streamBatcher(t, files, opt, 6, 2)
		if err := b.SeekMark(Mark{Epoch: m.Epoch, Stream: back}); err != nil {
			t.Fatal(err)
		}
		if b.Position() != a.Position() {
			t.Errorf("Position after SeekMark %+v, want %+v", b.Position(), a.Position())
		}
		for i := range 12 { // into the next epochs
			want, got := a.Next(), b.Next()
			if want == nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(a.LossMask(), b.LossMask()) {
				t.Fatalf("shuffle %v, batch %d after the mark: %v, want %v", opt.Shuffle, i, got, want)
			}
		}
		if p := a.Position(); p.Epoch < 1 {
			t.Errorf("12 batches of 2 in 15 documents end in epoch %d", p.Epoch)
		}
	}
}

// Bad input ends the batches with the stream's file:line error; the end of
// the last epoch and a checkpoint of the other kind are errors too.
func TestStreamBatcherErrors(t *testing.T) {
	dir := t.TempDir()
	files := writeShards(t, dir, 3)
	bad := filepath.Join(dir, "t.jsonl")
	os.WriteFile(bad, []byte(`{"text": "a"}`+"\n"+`{"text": "b"}`+"\n"+`{"txt": "c"}`+"\n"), 0o644)
	b := streamBatcher(t, []string{bad}, c4.Options{}, 4, 2)
	if b.Next() == nil || b.Err() != nil {
		t.Fatalf("the first batch: %v", b.Err())
	}
	if ids := b.Next(); ids != nil || b.Err() == nil || !strings.Contains(b.Err().Error(), "t.jsonl:3:") {
		t.Errorf("a line without text: batch %v, error %v; want nil and t.jsonl:3", ids, b.Err())
	}
	if b.Next() != nil {
		t.Error("Next after an error serves a batch")
	}
	e := streamBatcher(t, files, c4.Options{Epochs: 1}, 4, 2)
	e.Next()
	if e.Next() != nil || e.Err() == nil || !strings.Contains(e.Err().Error(), "ended") {
		t.Errorf("3 documents in batches of 2, one epoch: %v", e.Err())
	}
	if err := e.SeekMark(Mark{Epoch: 0, Index: 2}); err == nil || !strings.Contains(err.Error(), "in memory") {
		t.Errorf("a Batcher's mark on a stream: %v", err)
	}
	if err := e.SeekMark(Mark{Stream: json.RawMessage(`{"epoch": 0, "row": 2}`)}); err == nil {
		t.Error("a mark that is no c4 position: no error")
	}
	if err := e.SeekMark(Mark{Stream: json.RawMessage(`{"epoch": 0, "shard": 0, "file": "other.jsonl", "doc": 1}`)}); err == nil || !strings.Contains(err.Error(), "other.jsonl") {
		t.Errorf("a mark of other files: %v", err)
	}
	if err := e.SeekMark(Mark{Stream: json.RawMessage(`{"epoch": 0, "shard": 0, "file": "s0.jsonl.gz", "doc": 1}`)}); err != nil || e.Err() != nil || e.Next() == nil {
		t.Errorf("seeking back into the epoch: %v, %v", err, e.Err())
	}
	mem, _ := NewDocumentBatcher([][]int32{{1}}, 4, 1, 0, false, 0)
	if err := mem.SeekMark(e.Mark()); err == nil || !strings.Contains(err.Error(), "stream") {
		t.Errorf("a stream's mark on a Batcher: %v", err)
	}
	if _, err := NewStreamBatcher(nil, counting{}, 1, 0, 4, 2); err == nil {
		t.Error("no stream: no error")
	}
}

// JSONShards lists a path's files when all are JSON shards, and nothing when
// one is a token or text file.
func TestJSONShards(t *testing.T) {
	dir := t.TempDir()
	files := writeShards(t, dir, 1, 1)
	got, err := JSONShards(dir)
	if err != nil || !reflect.DeepEqual(got, files) {
		t.Errorf("JSONShards(dir) = %v, %v; want %v", got, err, files)
	}
	if got, err := JSONShards(filepath.Join(dir, "*.gz")); err != nil || len(got) != 1 {
		t.Errorf("JSONShards(glob) = %v, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, "x.txt"), []byte("x"), 0o644)
	if got, err := JSONShards(dir); err != nil || got != nil {
		t.Errorf("a directory with a .txt: %v, %v; want nil", got, err)
	}
	if _, err := JSONShards(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing file: no error")
	}
}
