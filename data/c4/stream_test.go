package c4

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const corpusPath = "../../testdata/tinyshakespeare.txt"

func corpus(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(corpusPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testShards writes four shards of 40 short documents, an empty one and one
// of 3 documents, and returns them as Files lists them.
func testShards(t testing.TB) []string {
	t.Helper()
	dir := t.TempDir()
	for k := range 4 {
		var b strings.Builder
		for i := range 40 {
			fmt.Fprintf(&b, "{\"text\": \"shard %d, document %d\", \"url\": \"u\"}\n", k, i)
		}
		writeFile(t, dir, fmt.Sprintf("c4-train.%05d-of-00004.json.gz", k), gz(b.String()))
	}
	writeFile(t, dir, "c4-train.00002-of-00004-empty.json.gz", gz(""))
	writeFile(t, dir, "small.jsonl", []byte("{\"text\": \"s0\"}\n{\"text\": \"s1\"}\n\n{\"text\": \"s2\"}\n"))
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// key identifies a document.
func key(d Doc) string { return fmt.Sprintf("%s#%d", filepath.Base(d.File), d.Index) }

// take reads n documents.
func take(t testing.TB, s *Stream, n int) []Doc {
	t.Helper()
	docs := make([]Doc, 0, n)
	for range n {
		d, err := s.Next()
		if err != nil {
			t.Fatalf("after %d documents: %v", len(docs), err)
		}
		docs = append(docs, d)
	}
	return docs
}

// drain reads to io.EOF.
func drain(t testing.TB, s *Stream) []Doc {
	t.Helper()
	var docs []Doc
	for {
		d, err := s.Next()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatalf("after %d documents: %v", len(docs), err)
		}
		docs = append(docs, d)
	}
}

func newStream(t testing.TB, files []string, opt Options) *Stream {
	t.Helper()
	s, err := NewStream(files, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func keys(docs []Doc) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = key(d)
	}
	return out
}

// inOrder is every document of files in name and file order.
func inOrder(t testing.TB, files []string) []Doc {
	var all []Doc
	for _, f := range files {
		docs, err := readAll(t, f, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, docs...)
	}
	return all
}

func TestStreamInOrder(t *testing.T) {
	files := testShards(t)
	want := inOrder(t, files)
	if len(want) != 163 {
		t.Fatalf("%d documents, want 163", len(want))
	}
	got := drain(t, newStream(t, files, Options{Epochs: 2}))
	if !slices.Equal(got, append(slices.Clone(want), want...)) {
		t.Fatalf("two epochs without shuffling are not the shards twice in order")
	}
}

func TestStreamShuffle(t *testing.T) {
	files := testShards(t)
	all := keys(inOrder(t, files))
	epoch := func(seed uint64, buffer int, e int) []string {
		s := newStream(t, files, Options{Shuffle: true, Seed: seed, Buffer: buffer, Epochs: int64(e + 1)})
		take(t, s, e*len(all))
		return keys(drain(t, s))
	}
	for _, buffer := range []int{1, 7, 0} {
		a := epoch(3, buffer, 0)
		if slices.Equal(a, all) {
			t.Errorf("buffer %d: shuffled epoch is in file order", buffer)
		}
		sorted := slices.Sorted(slices.Values(a))
		if !slices.Equal(sorted, slices.Sorted(slices.Values(all))) {
			t.Fatalf("buffer %d: a shuffled epoch is not a permutation of the documents", buffer)
		}
		if !slices.Equal(a, epoch(3, buffer, 0)) {
			t.Errorf("buffer %d: the same seed gave another order", buffer)
		}
		if slices.Equal(a, epoch(4, buffer, 0)) {
			t.Errorf("buffer %d: another seed gave the same order", buffer)
		}
		if slices.Equal(a, epoch(3, buffer, 1)) {
			t.Errorf("buffer %d: epochs 0 and 1 have the same order", buffer)
		}
	}
	// Buffer 1 keeps each shard in file order and shuffles the shards only.
	a := epoch(3, 1, 0)
	for i := 1; i < len(a); i++ {
		p, q := a[i-1], a[i]
		if strings.Split(p, "#")[0] == strings.Split(q, "#")[0] && !(slices.Index(all, q) == slices.Index(all, p)+1) {
			t.Fatalf("buffer 1: %s follows %s", q, p)
		}
	}
}

// The ranks' shares are disjoint, cover every document and are balanced.
func TestStreamRanks(t *testing.T) {
	files := testShards(t)
	all := keys(inOrder(t, files))
	for _, shuffle := range []bool{false, true} {
		for _, world := range []int{2, 3, 7} {
			var union []string
			sizes := map[int]int{}
			for rank := range world {
				got := keys(drain(t, newStream(t, files, Options{Shuffle: shuffle, Buffer: 5, Rank: rank, World: world, Epochs: 1})))
				union = append(union, got...)
				sizes[len(got)]++
			}
			slices.Sort(union)
			if !slices.Equal(union, slices.Sorted(slices.Values(all))) {
				t.Errorf("shuffle %v, %d ranks: the shares are not a partition of the documents", shuffle, world)
			}
			lo, hi := len(all), 0
			for n := range sizes {
				lo, hi = min(lo, n), max(hi, n)
			}
			if hi-lo > 2 {
				t.Errorf("shuffle %v, %d ranks: share sizes %v", shuffle, world, sizes)
			}
		}
	}
	// The split does not depend on the shuffle: a rank gets the same documents.
	a := keys(drain(t, newStream(t, files, Options{Rank: 1, World: 3, Epochs: 1})))
	b := keys(drain(t, newStream(t, files, Options{Shuffle: true, Seed: 9, Rank: 1, World: 3, Epochs: 1})))
	if !slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))) {
		t.Error("rank 1's documents depend on the shuffle")
	}
}

// A position saved after any number of documents, restored in a fresh
// stream, continues exactly as the stream it was saved from.
func TestStreamResume(t *testing.T) {
	files := testShards(t)
	const total = 400 // about two and a half epochs
	for _, opt := range []Options{
		{},
		{Shuffle: true, Seed: 5, Buffer: 7},
		{Shuffle: true, Seed: 5, Buffer: 100},
		{Shuffle: true, Seed: 6, Rank: 2, World: 3},
	} {
		ref := take(t, newStream(t, files, opt), total)
		// Every cut in the first 170 documents (an epoch and more, every shard
		// boundary), then every 23rd.
		for n := 0; n < total; n++ {
			if n > 170 && n%23 != 0 {
				continue
			}
			s := newStream(t, files, opt)
			take(t, s, n)
			b, err := json.Marshal(s.Position())
			if err != nil {
				t.Fatal(err)
			}
			var p Position
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			r := newStream(t, files, opt)
			if err := r.Seek(p); err != nil {
				t.Fatalf("%+v: seek to %s after %d documents: %v", opt, b, n, err)
			}
			if got := take(t, r, total-n); !slices.Equal(got, ref[n:]) {
				t.Fatalf("%+v: resumed at %s after %d documents, the stream differs", opt, b, n)
			}
		}
	}
}

func TestStreamPositionFile(t *testing.T) {
	files := testShards(t)
	s := newStream(t, files, Options{Shuffle: true, Seed: 2})
	take(t, s, 50)
	p := s.Position()
	if p.File != filepath.Base(files[s.order[p.Shard]]) || p.Doc == 0 {
		t.Fatalf("position %+v", p)
	}
	// Another seed orders the shards differently: the file name no longer fits.
	r := newStream(t, files, Options{Shuffle: true, Seed: 3})
	order := r.shardOrder(p.Epoch)
	if name := filepath.Base(files[order[p.Shard]]); name != p.File {
		want := fmt.Sprintf("c4: position names shard %s, but shard %d of epoch %d is %s here (other files, seed or shuffle)", p.File, p.Shard, p.Epoch, name)
		if err := r.Seek(p); err == nil || err.Error() != want {
			t.Errorf("seek with another seed: %v, want %q", err, want)
		}
	}
}

func TestStreamSeekErrors(t *testing.T) {
	files := testShards(t)
	s := newStream(t, files, Options{Epochs: 2})
	small := files[len(files)-1]
	for _, tc := range []struct {
		p    Position
		want string
	}{
		{Position{Epoch: -1}, "c4: bad position {Epoch:-1 Shard:0 File: Doc:0}"},
		{Position{Shard: 6}, "c4: position names shard 6 of an epoch, the stream has 6 shards"},
		{Position{Epoch: 3}, "c4: position in epoch 3 is past the stream's 2 epochs"},
		{Position{Epoch: 2, Doc: 1}, "c4: position in epoch 2 is past the stream's 2 epochs"},
		{Position{Shard: 5, File: "small.jsonl", Doc: 4}, small + ": position is past the shard's end: it holds 3 documents for rank 0 of 1, the position says 4"},
	} {
		if err := s.Seek(tc.p); err == nil || err.Error() != tc.want {
			t.Errorf("Seek(%+v): %v, want %q", tc.p, err, tc.want)
		}
	}
	// The end of the last epoch is a position too.
	if err := s.Seek(Position{Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

func TestStreamOptionsErrors(t *testing.T) {
	files := []string{"a.jsonl"}
	for _, tc := range []struct {
		opt  Options
		want string
	}{
		{Options{Buffer: -1}, "c4: shuffle buffer of -1 documents, want >= 0"},
		{Options{Rank: 2, World: 2}, "c4: rank 2 of 2 ranks, want 0 <= rank < ranks"},
		{Options{Rank: 1}, "c4: rank 1 of 0 ranks, want 0 <= rank < ranks"},
		{Options{World: -1}, "c4: rank 0 of -1 ranks, want 0 <= rank < ranks"},
		{Options{Epochs: -1}, "c4: -1 epochs, want >= 0 (0 for no end)"},
	} {
		if _, err := NewStream(files, tc.opt); err == nil || err.Error() != tc.want {
			t.Errorf("NewStream(%+v): %v, want %q", tc.opt, err, tc.want)
		}
	}
	if _, err := NewStream(nil, Options{}); err == nil {
		t.Error("no files: no error")
	}
}

// A stream without a single document for its rank is an error, not a loop.
func TestStreamNoDocuments(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.json.gz", gz(""))
	b := writeFile(t, dir, "b.jsonl", []byte("{\"text\": \"only\"}\n"))
	for _, tc := range []struct {
		files []string
		opt   Options
		want  string
	}{
		{[]string{a}, Options{}, dir + ": none of the 1 shards holds a document for rank 0 of 1"},
		{[]string{a, b}, Options{Rank: 1, World: 3, Shuffle: true}, dir + ": none of the 2 shards holds a document for rank 1 of 3"},
	} {
		s := newStream(t, tc.files, tc.opt)
		if tc.opt.World == 0 {
			s.Next()
		}
		var err error
		for range 3 {
			if _, err = s.Next(); err != nil {
				break
			}
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("%+v: %v, want %q", tc.opt, err, tc.want)
		}
	}
}

// A bad line mid-stream ends the stream with its file and line, for good.
func TestStreamBadShard(t *testing.T) {
	files := testShards(t)
	bad := writeFile(t, filepath.Dir(files[0]), "c4-train.00001-of-00004-bad.jsonl", []byte("{\"text\": \"fine\"}\n{\"txt\": \"oops\"}\n"))
	files, _ = Files(filepath.Dir(files[0]))
	s := newStream(t, files, Options{})
	want := bad + `:2: no "text" field`
	var n int
	var err error
	for ; n < 1000; n++ {
		if _, err = s.Next(); err != nil {
			break
		}
	}
	if err == nil || err.Error() != want || n != 41 {
		t.Fatalf("after %d documents: %v, want %q after 41", n, err, want)
	}
	if _, err := s.Next(); err == nil || err.Error() != want {
		t.Errorf("the error is not sticky: %v", err)
	}
}

func TestSynthetic(t *testing.T) {
	dir := t.TempDir()
	c := corpus(t)
	paths, err := WriteSynthetic(dir, Synthetic{Corpus: c, Shards: 2, Bytes: 100 << 10, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "c4-train.00000-of-00002.json.gz"), filepath.Join(dir, "c4-train.00001-of-00002.json.gz")}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths %q", paths)
	}
	docs, err := readAll(t, paths[1], 0)
	if err != nil {
		t.Fatal(err)
	}
	var size int
	joined := strings.ReplaceAll(string(c), "\n\n", "\n") // paragraphs are joined by one newline
	for _, d := range docs {
		if !strings.Contains(joined, d.Text) || d.Text == "" {
			t.Fatalf("document %d is not a run of the corpus: %q", d.Index, d.Text)
		}
		size += len(d.Text)
	}
	if mean := size / len(docs); mean < 1000 || mean > 4000 {
		t.Errorf("mean document of %d bytes, want about 2 KB", mean)
	}
	// Same description, same bytes; the lines carry C4's three fields.
	again, _ := WriteSynthetic(t.TempDir(), Synthetic{Corpus: c, Shards: 2, Bytes: 100 << 10, Seed: 7, Ext: ".jsonl"})
	b, _ := os.ReadFile(again[1])
	first, _, _ := strings.Cut(string(b), "\n")
	var doc map[string]string
	if err := json.Unmarshal([]byte(first), &doc); err != nil || len(doc) != 3 || doc["text"] != docs[0].Text || !strings.HasPrefix(doc["url"], "https://") || len(doc["timestamp"]) != 20 {
		t.Errorf("first line %q: %v", first, err)
	}
	if len(b) < 100<<10 || len(b) > 120<<10 {
		t.Errorf("a shard of %d bytes, want about 100 KiB", len(b))
	}
}
