package c4

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/ir"
)

// Synthetic describes C4-format shards cut from a text corpus, for tests and
// measurements: each line is {"text": ..., "timestamp": ..., "url": ...} like
// C4's, the text being a run of 1 to 24 consecutive paragraphs (blank-line
// separated; about 2 KB on average for the Shakespeare corpus, close to C4's
// mean) of the corpus, starting at a random paragraph.
type Synthetic struct {
	Corpus []byte // the text documents are cut from; required
	Shards int    // number of shards; 0 means 1
	// A shard holds Docs documents, or when Docs is 0, documents until its
	// JSON reaches Bytes bytes (uncompressed); one of the two is required.
	Docs  int
	Bytes int64
	Seed  uint64
	// Ext is the file extension, which chooses gzip or plain JSON lines;
	// "" means ".json.gz". Shards are named c4-train.XXXXX-of-NNNNN<Ext>.
	Ext string
	// Level is the gzip compression level; 0 means gzip.DefaultCompression.
	Level int
}

// synthParagraphs is the most paragraphs one synthetic document joins.
const synthParagraphs = 24

// WriteSynthetic writes the shards s describes into dir (created if missing),
// each atomically, and returns their paths in name order. The contents depend
// only on s.
func WriteSynthetic(dir string, s Synthetic) ([]string, error) {
	ext := s.Ext
	if ext == "" {
		ext = ".json.gz"
	}
	gz, ok := isShard(ext)
	switch {
	case !ok:
		return nil, fmt.Errorf("c4: synthetic shard extension %q, want %s", ext, extList)
	case s.Docs < 0 || s.Bytes < 0 || s.Docs == 0 && s.Bytes == 0:
		return nil, errors.New("c4: a synthetic shard needs Docs > 0 or Bytes > 0")
	case s.Shards < 0:
		return nil, fmt.Errorf("c4: %d synthetic shards", s.Shards)
	}
	paras := bytes.Split(bytes.TrimSpace(s.Corpus), []byte("\n\n"))
	if len(paras) == 0 || len(paras[0]) == 0 {
		return nil, errors.New("c4: empty synthetic corpus")
	}
	shards := max(s.Shards, 1)
	level := s.Level
	if level == 0 {
		level = gzip.DefaultCompression
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fileError(dir, err)
	}
	var paths []string
	for k := range shards {
		path := filepath.Join(dir, fmt.Sprintf("c4-train.%05d-of-%05d%s", k, shards, ext))
		rng := ir.NewRNG(ir.SeedFor(s.Seed, fmt.Sprintf("c4/synthetic/%d", k)))
		err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
			var zw *gzip.Writer
			if gz {
				var err error
				if zw, err = gzip.NewWriterLevel(w, level); err != nil {
					return err
				}
				w = zw
			}
			if err := writeSynthetic(w, s, k, paras, rng); err != nil {
				return err
			}
			if zw != nil {
				return zw.Close()
			}
			return nil
		})
		if err != nil {
			return nil, fileError(path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// writeSynthetic writes shard k's JSON lines.
func writeSynthetic(w io.Writer, s Synthetic, k int, paras [][]byte, rng *ir.RNG) error {
	cw := &countingWriter{w: w}
	enc := json.NewEncoder(cw)
	enc.SetEscapeHTML(false)
	var text []byte
	for i := 0; s.Docs > 0 && i < s.Docs || s.Docs == 0 && cw.n < s.Bytes; i++ {
		start := int(rng.Uint64n(uint64(len(paras))))
		n := 1 + int(rng.Uint64n(synthParagraphs))
		text = text[:0]
		for j := start; j < min(start+n, len(paras)); j++ {
			if j > start {
				text = append(text, '\n')
			}
			text = append(text, paras[j]...)
		}
		t := rng.Uint64n(365 * 24 * 3600)
		doc := struct {
			Text      string `json:"text"`
			Timestamp string `json:"timestamp"`
			URL       string `json:"url"`
		}{
			Text:      string(text),
			Timestamp: fmt.Sprintf("2019-%02d-%02dT%02d:%02d:%02dZ", 1+t/(30*24*3600)%12, 1+t/(24*3600)%28, t/3600%24, t/60%60, t%60),
			URL:       fmt.Sprintf("https://synthetic.example/shakespeare/%05d/%d", k, i),
		}
		if err := enc.Encode(doc); err != nil {
			return err
		}
	}
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
