package data

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDocuments(t *testing.T) {
	got := Documents([]int32{5, 6, 1, 7, 1, 1, 8, 9}, 1)
	want := [][]int32{{5, 6, 1}, {7, 1}, {1}, {8, 9}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Documents: %v, want %v", got, want)
	}
	if d := Documents(nil, 1); d != nil {
		t.Errorf("Documents(nil): %v", d)
	}
	tr, ev, err := SplitDocuments(want, 0.25)
	if err != nil || len(tr) != 3 || len(ev) != 1 || !reflect.DeepEqual(ev[0], []int32{8, 9}) {
		t.Errorf("SplitDocuments: %v, %v, %v", tr, ev, err)
	}
	if _, _, err := SplitDocuments(want[:1], 0.5); err == nil {
		t.Error("SplitDocuments of one document: no error")
	}
}

// Document rows are the seed's tokenizer(max_length=L, truncation=True,
// padding="max_length") rows: truncated, right-padded, the loss mask 0
// where the label is the pad id, the tokens seen the non-pad ids; the order
// and Position are the packed Batcher's.
func TestDocumentBatcher(t *testing.T) {
	const pad = 0
	docs := [][]int32{{5, 6, 1}, {7, 8, 9, 4, 3, 2, 1}, {1}, {9, 9, 9, 9, 1}}
	b, err := NewDocumentBatcher(docs, 5, 2, pad, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Documents() || b.Rows() != 4 {
		t.Fatalf("Documents %v, Rows %d", b.Documents(), b.Rows())
	}
	ids := b.Next()
	if want := []int64{5, 6, 1, 0, 0, 7, 8, 9, 4, 3}; !reflect.DeepEqual(ids, want) {
		t.Errorf("batch 1 ids %v, want %v", ids, want)
	}
	if want := []float32{1, 1, 0, 0, 1, 1, 1, 1}; !reflect.DeepEqual(b.LossMask(), want) {
		t.Errorf("batch 1 mask %v, want %v", b.LossMask(), want)
	}
	if b.Tokens() != 8 {
		t.Errorf("batch 1 tokens %d, want 8", b.Tokens())
	}
	pos := b.Position()
	next := b.Next()
	if want := []int64{1, 0, 0, 0, 0, 9, 9, 9, 9, 1}; !reflect.DeepEqual(next, want) {
		t.Errorf("batch 2 ids %v, want %v", next, want)
	}
	if want := []float32{0, 0, 0, 0, 1, 1, 1, 1}; !reflect.DeepEqual(b.LossMask(), want) {
		t.Errorf("batch 2 mask %v, want %v", b.LossMask(), want)
	}
	c, _ := NewDocumentBatcher(docs, 5, 2, pad, false, 0)
	if err := c.Seek(pos); err != nil {
		t.Fatal(err)
	}
	if again := c.Next(); !reflect.DeepEqual(again, next) {
		t.Errorf("after Seek: %v, want %v", again, next)
	}
	// Shuffled: every epoch is a permutation of the documents.
	s, _ := NewDocumentBatcher(docs, 5, 4, pad, true, 3)
	seen := map[int64]bool{}
	ids = s.Next()
	for r := 0; r < 4; r++ {
		seen[ids[r*5]] = true
	}
	if len(seen) != 4 {
		t.Errorf("a shuffled epoch repeats a document: %v", ids)
	}
	if _, err := NewDocumentBatcher(nil, 5, 1, pad, false, 0); err == nil {
		t.Error("no documents: no error")
	}
	p, _ := NewBatcher(make([]int32, 20), 5, 2, false, 0)
	p.Next()
	if p.Documents() || p.LossMask() != nil || p.Tokens() != 10 {
		t.Errorf("packed rows: Documents %v, mask %v, tokens %d", p.Documents(), p.LossMask(), p.Tokens())
	}
}

// words is a test tokenizer: one id per word, 100 plus its length.
type words struct{}

func (words) Encode(text string) []int32 {
	var ids []int32
	for _, w := range strings.Fields(text) {
		ids = append(ids, int32(100+len(w)))
	}
	return ids
}

// With a Tokenizer, text documents are its ids, each followed by the separator
// (the end-of-text id); an id past the vocabulary names the file and line.
func TestLoadWithTokenizer(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "a.txt")
	jl := filepath.Join(dir, "b.jsonl")
	os.WriteFile(txt, []byte("to be or not"), 0o644)
	os.WriteFile(jl, []byte(`{"text": "a bb"}`+"\n\n"+`{"text": "ccc"}`+"\n"), 0o644)
	got, err := Load(dir, LoadOptions{VocabSize: 200, Separator: 1, Tokenizer: words{}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{102, 102, 102, 103, 1, 101, 102, 1, 103, 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("Load: %v, want %v", got, want)
	}
	if docs := Documents(got, 1); len(docs) != 3 {
		t.Errorf("%d documents, want 3", len(docs))
	}
	_, err = Load(jl, LoadOptions{VocabSize: 102, Separator: 1, Tokenizer: words{}})
	if err == nil || !strings.Contains(err.Error(), "b.jsonl:1:") || !strings.Contains(err.Error(), "id 102") {
		t.Errorf("an id past the vocabulary: %v", err)
	}
}
