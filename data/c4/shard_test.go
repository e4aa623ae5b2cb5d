package c4

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gz compresses s.
func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// writeFile writes a file under dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readAll reads a shard's documents and the error that ended them (nil at
// io.EOF).
func readAll(t testing.TB, path string, maxLine int) ([]Doc, error) {
	t.Helper()
	s, err := OpenShard(path, maxLine)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var docs []Doc
	for {
		d, err := s.Next()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, d)
	}
}

const threeDocs = `{"text": "one", "url": "a"}

{"text": "two\nlines", "timestamp": "2019-04-25T12:57:54Z"}
  ` + "\r" + `
{"text": "thr\u00e9e"}`

func TestShardFormats(t *testing.T) {
	dir := t.TempDir()
	want := []Doc{{Text: "one", Line: 1, Index: 0}, {Text: "two\nlines", Line: 3, Index: 1}, {Text: "thrée", Line: 5, Index: 2}}
	for _, name := range []string{"a.json", "a.jsonl", "a.json.gz", "a.JSONL.GZ", "crlf.jsonl", "newline.jsonl.gz"} {
		data := []byte(threeDocs)
		switch {
		case strings.HasPrefix(name, "crlf"):
			data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
		case strings.HasPrefix(name, "newline"):
			data = append(data, '\n')
		}
		if strings.HasSuffix(strings.ToLower(name), ".gz") {
			data = gz(string(data))
		}
		path := writeFile(t, dir, name, data)
		docs, err := readAll(t, path, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(docs) != len(want) {
			t.Fatalf("%s: %d documents, want %d", name, len(docs), len(want))
		}
		for i, d := range docs {
			w := want[i]
			w.File = path
			if d != w {
				t.Errorf("%s: document %d = %+v, want %+v", name, i, d, w)
			}
		}
	}
}

// A gzip file of several members (as `cat a.gz b.gz` makes) is one stream.
func TestShardMultiMember(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "m.json.gz", append(gz("{\"text\": \"a\"}\n"), gz("{\"text\": \"b\"}\n")...))
	docs, err := readAll(t, path, 0)
	if err != nil || len(docs) != 2 || docs[1].Text != "b" || docs[1].Line != 2 {
		t.Fatalf("got %+v, %v", docs, err)
	}
}

func TestShardEmpty(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty.jsonl":    nil,
		"blank.jsonl":    []byte("\n  \n\n"),
		"empty.json.gz":  gz(""),
		"blank.jsonl.gz": gz("\n\n"),
	} {
		docs, err := readAll(t, writeFile(t, dir, name, data), 0)
		if err != nil || len(docs) != 0 {
			t.Errorf("%s: %d documents, %v; want none and no error", name, len(docs), err)
		}
	}
}

func TestShardErrors(t *testing.T) {
	dir := t.TempDir()
	good := "{\"text\": \"ok\"}\n"
	long := `{"text": "` + strings.Repeat("x", 200<<10) + `"}` + "\n"
	full := gz(good + good + good)
	corrupt := bytes.Clone(full)
	corrupt[len(corrupt)-6] ^= 0xff // the CRC-32 in the trailer
	var many strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&many, "{\"text\": \"document %d of many\"}\n", i)
	}
	half := gz(many.String())
	for _, tc := range []struct {
		name string
		data []byte
		want string // with "F" for the path
		docs int    // documents delivered before the error
	}{
		{"notext.jsonl", []byte(good + `{"url": "u"}`), `F:2: no "text" field`, 1},
		{"null.jsonl", []byte(`{"text": null}`), `F:1: field "text" is a JSON null, want a string`, 0},
		{"number.jsonl", []byte(good + "\n" + `{"text": 7}`), `F:3: field "text" is a JSON number, want a string`, 1},
		{"array.jsonl", []byte(`[1, 2]`), `F:1: want a JSON object with a "text" field, got a JSON array`, 0},
		{"notjson.jsonl", []byte(good + "text: x\n"), `F:2: not JSON (want one object per line): invalid character 'e' in literal true (expecting 'r') at byte 2`, 1},
		{"long.jsonl", []byte(good + long + good), `F:2: line longer than 100000 bytes`, 1},
		{"empty.json.gz", nil, `F: empty file, not gzip data (an empty shard is a gzip stream of no lines)`, 0},
		{"plain.json.gz", []byte(good), `F: not gzip data`, 0},
		{"header.json.gz", full[:5], `F: truncated gzip header`, 0},
		{"truncated.json.gz", full[:len(full)-10], `F:4: truncated gzip data (the file ends inside its compressed stream)`, 3},
		{"half.json.gz", half[:len(half)/2], `F:L: truncated gzip data (the file ends inside its compressed stream)`, -1},
		{"crc.json.gz", corrupt, `F:4: corrupt gzip data: checksum mismatch`, 3},
		{"trailing.json.gz", append(bytes.Clone(full), "this is not gzip"...), `F:4: corrupt gzip data: bytes after the gzip stream are not gzip data`, 3},
		{"garbage.jsonl.gz", append(bytes.Clone(full[:10]), bytes.Repeat([]byte{0xff}, 40)...), `F:1: corrupt gzip data: flate: corrupt input before offset 1`, 0},
		{"shard.txt", []byte(good), `F: not a shard (want .json.gz, .jsonl.gz, .json or .jsonl)`, 0},
	} {
		path := writeFile(t, dir, tc.name, tc.data)
		docs, err := readAll(t, path, 100000)
		if tc.docs < 0 { // wherever the data broke off, after the last document
			if len(docs) == 0 || len(docs) >= 2000 {
				t.Errorf("%s: %d documents before the break", tc.name, len(docs))
			}
			tc.docs = len(docs)
			tc.want = strings.Replace(tc.want, "L", fmt.Sprint(len(docs)+1), 1)
		}
		want := strings.Replace(tc.want, "F", path, 1)
		if err == nil || err.Error() != want || len(docs) != tc.docs {
			t.Errorf("%s: %d documents, error %v; want %d, %q", tc.name, len(docs), err, tc.docs, want)
		}
	}
	if _, err := OpenShard(filepath.Join(dir, "missing.jsonl"), 0); err == nil || err.Error() != filepath.Join(dir, "missing.jsonl")+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
}

// A line up to the limit is read, newline or not; one byte more is an error.
func TestShardLineLimit(t *testing.T) {
	dir := t.TempDir()
	line := `{"text": "` + strings.Repeat("é", 100<<10) + `"}`
	n := len(line)
	for _, tc := range []struct {
		data  string
		limit int
		ok    bool
	}{
		{line + "\n", n, true}, {line, n, true}, {line + "\n", n - 1, false}, {line, n - 1, false},
		{line + "\n" + line + "\n", n, true},
	} {
		docs, err := readAll(t, writeFile(t, dir, "l.jsonl", []byte(tc.data)), tc.limit)
		if (err == nil) != tc.ok || tc.ok && docs[0].Text != strings.Repeat("é", 100<<10) {
			t.Errorf("line of %d bytes, limit %d: %d documents, %v", n, tc.limit, len(docs), err)
		}
	}
}

func TestBase(t *testing.T) {
	for in, want := range map[string]string{
		"d/c4-train.00000-of-01024.json.gz": "c4-train.00000-of-01024",
		"x.JSONL.GZ":                        "x", "a.b.json": "a.b", "/t/y.jsonl": "y",
	} {
		if got := Base(in); got != want {
			t.Errorf("Base(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.json.gz", "a.jsonl", "c.txt", ".hidden.json", "d.JSON"} {
		writeFile(t, dir, n, nil)
	}
	os.Mkdir(filepath.Join(dir, "sub.json"), 0o755)
	j := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(dir, n))
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{dir}, j("a.jsonl", "b.json.gz", "d.JSON")},
		{j("[ab].json*"), j("a.jsonl", "b.json.gz")},
		{j("b.json.gz", "a.jsonl"), j("a.jsonl", "b.json.gz")},
	} {
		got, err := Files(tc.args...)
		if err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Files(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "c4: no shards given"},
		{[]string{empty}, empty + ": directory holds no shards (.json.gz, .jsonl.gz, .json or .jsonl)"},
		{j("c.txt"), j("c.txt")[0] + ": not a shard (want .json.gz, .jsonl.gz, .json or .jsonl)"},
		{j("*.txt"), j("c.txt")[0] + ": pattern " + j("*.txt")[0] + " matches a file that is not a shard (want .json.gz, .jsonl.gz, .json or .jsonl)"},
		{j("sub*"), j("sub.json")[0] + ": pattern " + j("sub*")[0] + " matches a directory"},
		{j("*.nothing"), j("*.nothing")[0] + ": no file matches the pattern"},
		{j("missing.json"), j("missing.json")[0] + ": no such file or directory"},
		{j("a.jsonl", "a.jsonl"), j("a.jsonl")[0] + ": shard named twice"},
		{[]string{dir, j("a.jsonl")[0]}, j("a.jsonl")[0] + ": shard named twice"},
	} {
		_, err := Files(tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Files(%q): %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := Files(j("missing.json")...); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file's error %v is not ErrNotExist", err)
	}
}
