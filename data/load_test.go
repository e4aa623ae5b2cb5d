package data

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// text options as slc train passes them: 256 as the separator when the vocabulary
// is larger than the bytes, '\n' otherwise.
var (
	bigVocab   = LoadOptions{VocabSize: 300, Separator: 256}
	byteVocab  = LoadOptions{VocabSize: 256, Separator: '\n'}
	noSep      = LoadOptions{VocabSize: 256, Separator: -1}
	tokenVocab = LoadOptions{VocabSize: 70000, Separator: -1}
)

func TestLoadFormats(t *testing.T) {
	u16 := le(2, 1, 2, 65535)
	for _, c := range []struct {
		name  string
		files map[string][]byte
		path  string // relative to the test's directory
		opt   LoadOptions
		want  []int32
	}{
		{"txt with separator 256", map[string][]byte{"a.txt": []byte("hi\n")}, "a.txt", bigVocab, cat(ids("hi\n"), []int32{256})},
		{"txt with separator newline", map[string][]byte{"a.txt": []byte("hi\n")}, "a.txt", byteVocab, ids("hi\n\n")},
		{"txt without separator", map[string][]byte{"a.txt": []byte("hi\n")}, "a.txt", noSep, ids("hi\n")},
		{"txt bytes are ids", map[string][]byte{"a.TXT": {0, 255, 3}}, "a.TXT", noSep, []int32{0, 255, 3}},
		{"txt no vocab check", map[string][]byte{"a.txt": []byte("\xff")}, "a.txt", LoadOptions{Separator: 1000}, []int32{255, 1000}},
		{"jsonl documents", map[string][]byte{"c.jsonl": []byte(`{"text": "ab", "id": 1}` + "\n\n" + `{"meta": {"x": "y"}, "text": "é"}` + "\n" + `{"text": ""}`)},
			"c.jsonl", bigVocab, cat(ids("ab"), []int32{256, 0xc3, 0xa9, 256, 256})},
		{"json with escapes", map[string][]byte{"c.json": []byte(`{"text": "a\nb\u0041"}` + "\r\n")}, "c.json", byteVocab, ids("a\nbA\n")},
		{"jsonl.gz", map[string][]byte{"c.jsonl.gz": gz("{\"text\": \"x\"}\n{\"text\": \"yz\"}\n")}, "c.jsonl.gz", bigVocab, cat(ids("x"), []int32{256}, ids("yz"), []int32{256})},
		{"json.gz", map[string][]byte{"c4-train.00000-of-01024.json.gz": gz("{\"text\": \"q\", \"url\": \"u\"}\n")}, "c4-train.00000-of-01024.json.gz", noSep, ids("q")},
		{"npy uint16", map[string][]byte{"t.npy": npyBytes(1, npyDict("<u2", "(3,)"), u16)}, "t.npy", tokenVocab, []int32{1, 2, 65535}},
		{"npy int32", map[string][]byte{"t.npy": npyBytes(1, npyDict("<i4", "(3,)"), le(4, 7, 0, 1<<31-1))}, "t.npy", LoadOptions{Separator: -1}, []int32{7, 0, 1<<31 - 1}},
		{"npy uint32", map[string][]byte{"t.npy": npyBytes(1, npyDict("<u4", "(2,)"), le(4, 31999, 5))}, "t.npy", LoadOptions{VocabSize: 32000, Separator: -1}, []int32{31999, 5}},
		{"npy int64", map[string][]byte{"t.npy": npyBytes(1, npyDict("<i8", "(2,)"), le(8, 4, 31999))}, "t.npy", LoadOptions{VocabSize: 32000, Separator: -1}, []int32{4, 31999}},
		{"npy 2-D flattened in C order", map[string][]byte{"t.npy": npyBytes(1, npyDict("<u2", "(2, 3)"), le(2, 1, 2, 3, 4, 5, 6))}, "t.npy", tokenVocab, []int32{1, 2, 3, 4, 5, 6}},
		{"npy version 2.0", map[string][]byte{"t.npy": npyBytes(2, npyDict("<u2", "(2,)"), le(2, 9, 8))}, "t.npy", tokenVocab, []int32{9, 8}},
		{"npy version 3.0", map[string][]byte{"t.npy": npyBytes(3, npyDict("<u2", "(1,)"), le(2, 9))}, "t.npy", tokenVocab, []int32{9}},
		{"npy scalar", map[string][]byte{"t.npy": npyBytes(1, npyDict("<i8", "()"), le(8, 42))}, "t.npy", tokenVocab, []int32{42}},
		{"npy Fortran order 1-D", map[string][]byte{"t.npy": npyBytes(1, "{'descr': '<u2', 'fortran_order': True, 'shape': (1, 2)}", le(2, 5, 6))}, "t.npy", tokenVocab, []int32{5, 6}},
		{"npy Python 2 header", map[string][]byte{"t.npy": npyBytes(1, `{"shape": (2L,), "fortran_order": False, "descr": "<u2"}`, le(2, 5, 6))}, "t.npy", tokenVocab, []int32{5, 6}},
		{"bin gpt-2", map[string][]byte{"s.bin": binBytes(20240520, 1, 3, u16)}, "s.bin", tokenVocab, []int32{1, 2, 65535}},
		{"bin llama-3", map[string][]byte{"s.bin": binBytes(20240801, 7, 2, le(4, 128000, 3))}, "s.bin", LoadOptions{VocabSize: 128256, Separator: -1}, []int32{128000, 3}},
		{"directory in name order", map[string][]byte{
			"d/b.npy":       npyBytes(1, npyDict("<u2", "(1,)"), le(2, 20)),
			"d/a.bin":       binBytes(20240520, 1, 2, le(2, 10, 11)),
			"d/c.txt":       []byte("z"),
			"d/e.txt":       {},
			"d/notes.md":    []byte("ignored"),
			"d/.hidden.txt": []byte("ignored"),
			"d/sub/x.txt":   []byte("not recursive"),
		}, "d", bigVocab, []int32{10, 11, 20, 'z', 256}},
		{"glob in sorted order", map[string][]byte{
			"g/shard_2.bin":  binBytes(20240520, 1, 1, le(2, 2)),
			"g/shard_10.bin": binBytes(20240520, 1, 1, le(2, 10)),
			"g/shard_1.bin":  binBytes(20240520, 1, 1, le(2, 1)),
			"g/val_0.bin":    binBytes(20240520, 1, 1, le(2, 99)),
		}, "g/shard_*.bin", tokenVocab, []int32{1, 10, 2}},
		{"glob over directories", map[string][]byte{
			"h/1/a.txt": []byte("a"),
			"h/0/a.txt": []byte("b"),
		}, "h/*/a.txt", noSep, ids("ba")},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, t.TempDir(), c.files)
			got, err := Load(filepath.Join(dir, filepath.FromSlash(c.path)), c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	bin := func(tokens ...int64) []byte { return binBytes(20240520, 1, int32(len(tokens)), le(2, tokens...)) }
	for _, c := range []struct {
		name  string
		files map[string][]byte
		path  string
		opt   LoadOptions
		want  []string // substrings of the message, besides the path
	}{
		{"missing file", nil, "nope.bin", tokenVocab, []string{"nope.bin", "does not exist"}},
		{"missing directory", nil, "none/x.txt", tokenVocab, []string{"does not exist"}},
		{"unknown format", map[string][]byte{"x.csv": []byte("1,2")}, "x.csv", tokenVocab, []string{"x.csv", "unknown data format"}},
		{"empty txt", map[string][]byte{"e.txt": {}}, "e.txt", byteVocab, []string{"e.txt", "no tokens"}},
		{"empty bin", map[string][]byte{"e.bin": bin()}, "e.bin", tokenVocab, []string{"e.bin", "no tokens"}},
		{"empty jsonl", map[string][]byte{"e.jsonl": []byte("\n \n")}, "e.jsonl", bigVocab, []string{"no tokens"}},
		{"empty npy", map[string][]byte{"e.npy": npyBytes(1, npyDict("<u2", "(0,)"), nil)}, "e.npy", tokenVocab, []string{"no tokens"}},
		{"empty directory", map[string][]byte{"d/readme.md": []byte("x")}, "d", tokenVocab, []string{"no data files"}},
		{"glob without match", nil, "*.bin", tokenVocab, []string{"no file matches"}},
		{"bad glob", nil, "x[", tokenVocab, []string{"bad glob pattern"}},
		{"glob with unknown format", map[string][]byte{"a.bin": bin(1), "a.bak": {1}}, "a.b*", tokenVocab, []string{"a.bak", "unknown data format"}},
		{"bin bad magic", map[string][]byte{"s.bin": binBytes(12345, 1, 1, le(2, 1))}, "s.bin", tokenVocab, []string{"s.bin", "bad magic 12345"}},
		{"bin bad version", map[string][]byte{"s.bin": binBytes(20240520, 2, 1, le(2, 1))}, "s.bin", tokenVocab, []string{"s.bin", "version 2"}},
		{"bin negative count", map[string][]byte{"s.bin": binBytes(20240520, 1, -1, nil)}, "s.bin", tokenVocab, []string{"negative token count"}},
		{"bin truncated header", map[string][]byte{"s.bin": binBytes(20240520, 1, 1, nil)[:100]}, "s.bin", tokenVocab, []string{"s.bin", "truncated"}},
		{"bin truncated data", map[string][]byte{"s.bin": binBytes(20240520, 1, 10, le(2, 1, 2, 3))}, "s.bin", tokenVocab, []string{"s.bin", "truncated", "10 tokens"}},
		{"bin trailing bytes", map[string][]byte{"s.bin": binBytes(20240520, 1, 1, le(2, 1, 2))}, "s.bin", tokenVocab, []string{"s.bin", "2 bytes after the 1 tokens"}},
		{"bin id >= vocab", map[string][]byte{"s.bin": bin(1, 2, 3, 500, 4)}, "s.bin", LoadOptions{VocabSize: 100, Separator: -1}, []string{"s.bin", "token 3", "id 500", "vocabulary size 100"}},
		{"id >= vocab in the second chunk", map[string][]byte{"s.bin": bin(append(make([]int64, chunkBytes/2+7), 9)...)}, "s.bin", LoadOptions{VocabSize: 9, Separator: -1}, []string{"token 524295", "id 9"}},
		{"npy bad magic", map[string][]byte{"t.npy": []byte("PK\x03\x04 this is a zip file")}, "t.npy", tokenVocab, []string{"t.npy", "not a .npy file"}},
		{"npy short file", map[string][]byte{"t.npy": []byte("\x93NUM")}, "t.npy", tokenVocab, []string{"t.npy", "truncated"}},
		{"npy truncated header", map[string][]byte{"t.npy": npyBytes(1, npyDict("<u2", "(1,)"), nil)[:40]}, "t.npy", tokenVocab, []string{"truncated .npy header"}},
		{"npy truncated data", map[string][]byte{"t.npy": npyBytes(1, npyDict("<u2", "(4,)"), le(2, 1, 2, 3))}, "t.npy", tokenVocab, []string{"t.npy", "truncated", "4 tokens"}},
		{"npy float32", map[string][]byte{"t.npy": npyBytes(1, npyDict("<f4", "(1,)"), le(4, 0))}, "t.npy", tokenVocab, []string{"t.npy", `dtype "<f4" is not supported`}},
		{"npy int16", map[string][]byte{"t.npy": npyBytes(1, npyDict("<i2", "(1,)"), le(2, 0))}, "t.npy", tokenVocab, []string{`dtype "<i2"`}},
		{"npy big-endian", map[string][]byte{"t.npy": npyBytes(1, npyDict(">u2", "(1,)"), le(2, 0))}, "t.npy", tokenVocab, []string{`dtype ">u2"`}},
		{"npy version 4", map[string][]byte{"t.npy": npyBytes(4, npyDict("<u2", "(1,)"), le(2, 0))}, "t.npy", tokenVocab, []string{"version 4.0"}},
		{"npy Fortran 2-D", map[string][]byte{"t.npy": npyBytes(1, "{'descr': '<u2', 'fortran_order': True, 'shape': (2, 2)}", le(2, 1, 2, 3, 4))}, "t.npy", tokenVocab, []string{"Fortran order"}},
		{"npy negative id", map[string][]byte{"t.npy": npyBytes(1, npyDict("<i8", "(2,)"), le(8, 1, -3))}, "t.npy", tokenVocab, []string{"t.npy", "token 1", "id -3 is negative"}},
		{"npy id beyond int32", map[string][]byte{"t.npy": npyBytes(1, npyDict("<i8", "(1,)"), le(8, 1<<33))}, "t.npy", LoadOptions{Separator: -1}, []string{"token 0", "id 8589934592 does not fit an int32"}},
		{"npy uint32 beyond vocab", map[string][]byte{"t.npy": npyBytes(1, npyDict("<u4", "(1,)"), le(4, 1<<32-1))}, "t.npy", tokenVocab, []string{"id 4294967295", "70000"}},
		{"txt byte >= vocab", map[string][]byte{"a.txt": []byte("abx")}, "a.txt", LoadOptions{VocabSize: 100, Separator: -1}, []string{"a.txt", "byte 2", "id 120", "vocabulary size 100"}},
		{"jsonl without text", map[string][]byte{"d.jsonl": []byte("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n")}, "d.jsonl", bigVocab, []string{"d.jsonl:2:", `no "text" field`}},
		{"jsonl null text", map[string][]byte{"d.jsonl": []byte(`{"text": null}`)}, "d.jsonl", bigVocab, []string{"d.jsonl:1:", `no "text" field`}},
		{"jsonl not JSON", map[string][]byte{"d.jsonl": []byte("{\"text\": \"a\"}\n\n{\"text\": \"b\n")}, "d.jsonl", bigVocab, []string{"d.jsonl:3:", "not JSON"}},
		{"json array file", map[string][]byte{"d.json": []byte("[\n{\"text\": \"a\"}\n]\n")}, "d.json", bigVocab, []string{"d.json:1:", "not JSON"}},
		{"jsonl text not a string", map[string][]byte{"d.jsonl": []byte(`{"text": 5}`)}, "d.jsonl", bigVocab, []string{"d.jsonl:1:", `field "text" is a JSON number`}},
		{"jsonl line not an object", map[string][]byte{"d.jsonl": []byte(`["a"]`)}, "d.jsonl", bigVocab, []string{"d.jsonl:1:", "JSON object"}},
		{"jsonl byte >= vocab", map[string][]byte{"d.jsonl": []byte("{\"text\": \"a\"}\n{\"text\": \"aé\"}")}, "d.jsonl", LoadOptions{VocabSize: 128, Separator: 10}, []string{"d.jsonl:2:", "byte 1", "id 195"}},
		{"gz not gzip", map[string][]byte{"d.jsonl.gz": []byte(`{"text": "a"}`)}, "d.jsonl.gz", bigVocab, []string{"d.jsonl.gz", "not gzip"}},
		{"gz truncated", map[string][]byte{"d.jsonl.gz": gz(`{"text": "abcdefgh"}` + "\n")[:20]}, "d.jsonl.gz", bigVocab, []string{"d.jsonl.gz", "gzip"}},
		{"separator beyond vocab", map[string][]byte{"a.txt": []byte("a")}, "a.txt", LoadOptions{VocabSize: 256, Separator: 256}, []string{"separator id 256"}},
		{"separator below -1", map[string][]byte{"a.txt": []byte("a")}, "a.txt", LoadOptions{VocabSize: 256, Separator: -2}, []string{"separator id -2"}},
		{"negative vocab", map[string][]byte{"a.txt": []byte("a")}, "a.txt", LoadOptions{VocabSize: -1, Separator: -1}, []string{"vocabulary size"}},
		{"bad shard in a directory", map[string][]byte{"d/a.bin": bin(1), "d/b.bin": binBytes(7, 1, 0, nil)}, "d", tokenVocab, []string{"b.bin", "bad magic 7"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, t.TempDir(), c.files)
			got, err := Load(filepath.Join(dir, filepath.FromSlash(c.path)), c.opt)
			if err == nil {
				t.Fatalf("no error; got %d tokens", len(got))
			}
			if miss := containsAll(err.Error(), c.want...); miss != "" {
				t.Fatalf("error %q does not contain %q", err, miss)
			}
		})
	}
}

func TestLoadMissingIsErrNotExist(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "x.txt"), byteVocab)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
}

// TestLoadTinyShakespeare reads the corpus the project ships: one document, the
// bytes of the file followed by the separator.
func TestLoadTinyShakespeare(t *testing.T) {
	const path = "../testdata/tinyshakespeare.txt"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, byteVocab)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(raw)+1 || len(raw) != 1115394 {
		t.Fatalf("got %d tokens from %d bytes, want 1115394+1", len(got), len(raw))
	}
	if !slices.Equal(got[:len(raw)], ids(string(raw))) || got[len(raw)] != '\n' {
		t.Fatal("tokens are not the file's bytes followed by the separator")
	}
	if cap(got) != len(got) {
		t.Errorf("capacity %d for %d tokens: the result was not sized from the file", cap(got), len(got))
	}
}

// TestLoadTokenFileMemory checks that a token file is read into a result sized
// once, through a small buffer: the bytes allocated stay near the result's size
// instead of adding a copy of the file.
func TestLoadTokenFileMemory(t *testing.T) {
	const n = 2 << 20 // 4 MiB of uint16, 8 MiB of int32
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = int64(i % 50000)
	}
	dir := writeFiles(t, t.TempDir(), map[string][]byte{
		"s.bin": binBytes(20240520, 1, n, le(2, vals...)),
		"t.npy": npyBytes(1, npyDict("<u2", "(2097152,)"), le(2, vals...)),
	})
	for _, name := range []string{"s.bin", "t.npy"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := Load(filepath.Join(dir, name), tokenVocab)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n || got[n-1] != int32((n-1)%50000) {
			t.Fatalf("%s: got %d tokens", name, len(got))
		}
		result := uint64(4 * n)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > result+chunkBytes+256<<10 {
			t.Errorf("%s: allocated %d bytes for a %d-byte result", name, alloc, result)
		}
	}
}

func BenchmarkLoadTinyShakespeare(b *testing.B) {
	const path = "../testdata/tinyshakespeare.txt"
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	for b.Loop() {
		if _, err := Load(path, byteVocab); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadBin reads a 32 MiB llm.c shard (16M tokens).
func BenchmarkLoadBin(b *testing.B) {
	const n = 16 << 20
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = int64(i * 7 % 50257)
	}
	dir := writeFiles(b, b.TempDir(), map[string][]byte{"s.bin": binBytes(20240520, 1, n, le(2, vals...))})
	path := filepath.Join(dir, "s.bin")
	b.SetBytes(2 * n)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Load(path, LoadOptions{VocabSize: 50257, Separator: -1}); err != nil {
			b.Fatal(err)
		}
	}
}
