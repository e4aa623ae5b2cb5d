package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/tokenizer"
)

const (
	unigramModel = "../../tokenizer/testdata/unigram_identity.model"
	bpeModel     = "../../tokenizer/testdata/bpe_rules.model"
)

// tokenizeInputs writes three synthetic shards of perShard bytes of JSON, a
// .jsonl shard with escapes and invalid UTF-8, and an empty shard.
func tokenizeInputs(t *testing.T, perShard int64) string {
	t.Helper()
	dir := t.TempDir()
	corpus, err := os.ReadFile("../../testdata/tinyshakespeare.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c4.WriteSynthetic(dir, c4.Synthetic{Corpus: corpus, Shards: 3, Bytes: perShard, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	odd := "{\"text\": \"caf\\u00e9 \\ud83d\\ude00 \\\"quoted\\\"\\nline\"}\n\n" +
		"{\"url\": \"u\", \"text\": \"bad \xff\xfe bytes and a cut \xe4\xb8\"}\n" +
		"{\"text\": \"\"}\n"
	if err := os.WriteFile(filepath.Join(dir, "odd.jsonl"), []byte(odd), 0o644); err != nil {
		t.Fatal(err)
	}
	var empty bytes.Buffer
	gzip.NewWriter(&empty).Close()
	if err := os.WriteFile(filepath.Join(dir, "empty.json.gz"), empty.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// wantTokens is what slc tokenize must write for a shard: each document's
// ids, then the end-of-text id.
func wantTokens(t *testing.T, m *tokenizer.Model, shard string) []int32 {
	t.Helper()
	s, err := c4.OpenShard(shard, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []int32
	for {
		d, err := s.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(append(out, m.Encode(d.Text)...), m.EOSID())
	}
}

func TestTokenize(t *testing.T) {
	in := tokenizeInputs(t, 300<<10)
	out := filepath.Join(t.TempDir(), "tokens")
	stdout, stderr, code := slc(t, "tokenize", in, "--tokenizer", unigramModel, "-o", out, "--threads", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "tokenized 5 shards into "+out+": ") || !strings.Contains(stdout, "uint16 tokens (end-of-text id 2 after each document)") {
		t.Errorf("stdout %q", stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "tokenize: 1/5 "+filepath.Join(out, "c4-train.00000-of-00003.bin")+": ") {
		t.Errorf("stderr %q", stderr)
	}
	m, err := tokenizer.Load(unigramModel)
	if err != nil {
		t.Fatal(err)
	}
	files, err := c4.Files(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		bin := filepath.Join(out, c4.Base(f)+".bin")
		want := wantTokens(t, m, f)
		if len(want) == 0 {
			b, err := os.ReadFile(bin)
			if err != nil || len(b) != 1024 || binary.LittleEndian.Uint32(b) != 20240520 || binary.LittleEndian.Uint32(b[8:]) != 0 {
				t.Errorf("%s: not an empty llm.c shard (%d bytes, %v)", bin, len(b), err)
			}
			continue
		}
		got, err := data.Load(bin, data.LoadOptions{VocabSize: m.VocabSize(), Separator: -1})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %d tokens differ from Encode of each document + EOS (%d tokens)", bin, len(got), len(want))
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != len(files) {
		t.Errorf("%d files in %s, want %d", len(ents), out, len(files))
	}
}

// The bytes written do not depend on the thread count, for either model and
// token width.
func TestTokenizeThreads(t *testing.T) {
	in := tokenizeInputs(t, 700<<10) // several batches a shard
	for _, tc := range []struct{ model, dtype string }{{unigramModel, "auto"}, {bpeModel, "uint32"}} {
		var ref map[string][]byte
		for _, threads := range []string{"1", "2", "5"} {
			out := t.TempDir()
			if _, stderr, code := slc(t, "tokenize", filepath.Join(in, "*"), "--tokenizer", tc.model, "-o", out, "--threads", threads, "--dtype", tc.dtype); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := map[string][]byte{}
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				got[e.Name()], _ = os.ReadFile(filepath.Join(out, e.Name()))
			}
			if ref == nil {
				ref = got
				continue
			}
			if len(got) != len(ref) {
				t.Fatalf("%s, %s threads: %d files, want %d", tc.model, threads, len(got), len(ref))
			}
			for name, b := range ref {
				if !bytes.Equal(got[name], b) {
					t.Errorf("%s, %s threads: %s differs from 1 thread's", tc.model, threads, name)
				}
			}
		}
		if tc.dtype == "uint32" {
			b := ref["c4-train.00000-of-00003.bin"]
			m, _ := tokenizer.Load(tc.model)
			want := wantTokens(t, m, filepath.Join(in, "c4-train.00000-of-00003.json.gz"))
			if binary.LittleEndian.Uint32(b) != 20240801 || binary.LittleEndian.Uint32(b[4:]) != 7 || len(b) != 1024+4*len(want) {
				t.Errorf("--dtype uint32: header %v, %d bytes for %d tokens", b[:12], len(b), len(want))
			}
		}
	}
}

// Bad input ends with one line naming the file and line, exit 1, and no
// output for the bad shard (nor a temporary file).
func TestTokenizeBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		io.WriteString(w, s)
		w.Close()
		return b.Bytes()
	}
	good := strings.Repeat("{\"text\": \"To be, or not to be\"}\n", 3000)
	full := gz(good)
	a := write("a.jsonl", []byte(good))
	for _, tc := range []struct {
		name string
		data []byte
		want string // "F" for the path
	}{
		{"notext.jsonl", []byte(good + `{"txt": "x"}` + "\n" + good), `F:3001: no "text" field`},
		{"number.json", []byte(`{"text": 12}`), `F:1: field "text" is a JSON number, want a string`},
		{"notjson.jsonl.gz", gz(good + "{oops\n"), `F:3001: not JSON (want one object per line): invalid character 'o' looking for beginning of object key string at byte 2`},
		{"truncated.json.gz", full[:len(full)/2], `F:L: truncated gzip data (the file ends inside its compressed stream)`},
		{"plain.json.gz", []byte(good), `F: not gzip data`},
		{"zero.json.gz", nil, `F: empty file, not gzip data (an empty shard is a gzip stream of no lines)`},
	} {
		bad := write(tc.name, tc.data)
		out := t.TempDir()
		_, stderr, code := slc(t, "tokenize", a, bad, "--tokenizer", unigramModel, "-o", out)
		want := "slc: " + strings.Replace(tc.want, "F", bad, 1) + "\n"
		// a.jsonl is done first (the inputs are sorted), and its line printed.
		lines := strings.SplitAfter(stderr, "\n")
		if prefix, suffix, ok := strings.Cut(want, ":L:"); ok && len(lines) == 3 {
			// Where the data breaks off depends on the compressor: any line.
			if strings.HasPrefix(lines[1], prefix+":") && strings.HasSuffix(lines[1], suffix) {
				want = lines[1]
			}
		}
		if code != 1 || len(lines) != 3 || !strings.HasPrefix(lines[0], "tokenize: 1/2 ") || lines[1] != want {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and %q after a's line", tc.name, code, stderr, want)
		}
		ents, _ := os.ReadDir(out)
		if len(ents) != 1 || ents[0].Name() != "a.bin" {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s: output holds %q, want a.bin only", tc.name, names)
		}
	}
}

func TestTokenizeUsage(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.jsonl")
	os.WriteFile(a, []byte("{\"text\": \"x\"}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.json"), []byte("{\"text\": \"y\"}\n"), 0o644)
	txt := filepath.Join(dir, "a.txt")
	os.WriteFile(txt, []byte("x"), 0o644)
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tokenize", "--tokenizer", unigramModel, "-o", out}, 2, "missing DATA argument (run 'slc tokenize --help')"},
		{[]string{"tokenize", a, "-o", out}, 2, "missing --tokenizer FILE.model (run 'slc tokenize --help')"},
		{[]string{"tokenize", a, "--tokenizer", unigramModel}, 2, "missing -o DIR (run 'slc tokenize --help')"},
		{[]string{"tokenize", a, "--tokenizer", unigramModel, "-o", out, "--threads", "0"}, 2, "flag --threads: must be between 1 and 1024, got 0 (run 'slc tokenize --help')"},
		{[]string{"tokenize", a, "--tokenizer", unigramModel, "-o", out, "--dtype", "int8"}, 2, `flag --dtype: "int8" is not auto, uint16 or uint32 (run 'slc tokenize --help')`},
		{[]string{"tokenize", txt, "--tokenizer", unigramModel, "-o", out}, 1, txt + ": not a shard (want .json.gz, .jsonl.gz, .json or .jsonl)"},
		{[]string{"tokenize", dir, "--tokenizer", unigramModel, "-o", out}, 1, filepath.Join(dir, "a.json") + " and " + a + " would both be written to " + filepath.Join(out, "a.bin")},
		{[]string{"tokenize", a, "--tokenizer", filepath.Join(dir, "none.model"), "-o", out}, 1, "tokenizer: open " + filepath.Join(dir, "none.model") + ": no such file or directory"},
		{[]string{"tokenize", a, "--tokenizer", unigramModel, "-o", filepath.Join(a, "out")}, 1, filepath.Join(a, "out") + ": not a directory"},
	} {
		_, stderr, code := slc(t, tc.args...)
		if code != tc.code || stderr != "slc: "+tc.want+"\n" {
			t.Errorf("slc %q: exit %d, stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed command created %s", out)
	}
	help := mustSlc(t, "tokenize", "--help")
	for _, want := range []string{"USAGE:", "slc tokenize [command options] DATA...", "--tokenizer FILE", "--output DIR, -o DIR", "--threads N", "--dtype TYPE", "magic 20240520"} {
		if !strings.Contains(help, want) {
			t.Errorf("tokenize --help lacks %q", want)
		}
	}
}
