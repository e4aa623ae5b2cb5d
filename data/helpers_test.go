package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The helpers below write the test files byte by byte, from the format
// definitions, so that the loaders are checked against the formats and not
// against a writer that shares their code.

// npyBytes builds a .npy file: magic, version, a little-endian header length,
// the dict text padded with spaces and ended by '\n' to a multiple of 64, then
// data.
func npyBytes(major byte, dict string, data []byte) []byte {
	pre := 10
	if major >= 2 {
		pre = 12
	}
	text := dict
	for (pre+len(text)+1)%64 != 0 {
		text += " "
	}
	text += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY")
	b.WriteByte(major)
	b.WriteByte(0)
	if major >= 2 {
		binary.Write(&b, binary.LittleEndian, uint32(len(text)))
	} else {
		binary.Write(&b, binary.LittleEndian, uint16(len(text)))
	}
	b.WriteString(text)
	b.Write(data)
	return b.Bytes()
}

// npyDict is the dict NumPy writes for a C-order array.
func npyDict(descr, shape string) string {
	return fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape)
}

// le encodes values little-endian with the given byte width (2, 4 or 8).
func le(width int, vals ...int64) []byte {
	b := make([]byte, width*len(vals))
	for i, v := range vals {
		switch width {
		case 2:
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
		}
	}
	return b
}

// binBytes builds an llm.c shard: 256 int32 header words (magic, version,
// count, zeros), then the token bytes.
func binBytes(magic, version, count int32, tokens []byte) []byte {
	h := make([]int64, 256)
	h[0], h[1], h[2] = int64(magic), int64(version), int64(count)
	return append(le(4, h...), tokens...)
}

// gz compresses s.
func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// writeFiles writes name → content under dir (names may contain '/') and
// returns dir.
func writeFiles(t testing.TB, dir string, files map[string][]byte) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ids converts a string to its byte-level ids.
func ids(s string) []int32 {
	out := make([]int32, len(s))
	for i := range len(s) {
		out[i] = int32(s[i])
	}
	return out
}

// cat concatenates id slices.
func cat(parts ...[]int32) []int32 {
	var out []int32
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// containsAll reports the first of want missing from s, or "".
func containsAll(s string, want ...string) string {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return w
		}
	}
	return ""
}
