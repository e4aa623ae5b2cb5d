package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// appendBytes appends the byte-level ids of text to out. It returns the index
// of the first byte that is not a valid id, or -1.
func appendBytes[S string | []byte](out []int32, text S, limit uint64) ([]int32, int) {
	start := len(out)
	out = append(out, make([]int32, len(text))...)
	dst := out[start:]
	if limit >= 256 {
		for i := range len(text) {
			dst[i] = int32(text[i])
		}
		return out, -1
	}
	for i := range len(text) {
		if uint64(text[i]) >= limit {
			return out[:start+i], i
		}
		dst[i] = int32(text[i])
	}
	return out, -1
}

// loadText appends a .txt file, one document, byte by byte and then the
// separator (nothing for an empty file).
func loadText(out []int32, r io.Reader, path string, opt LoadOptions) ([]int32, error) {
	if opt.Tokenizer != nil {
		text, err := io.ReadAll(r)
		if err != nil {
			return out, fileError(path, err)
		}
		if len(text) == 0 {
			return out, nil
		}
		if out, err = appendEncoded(out, string(text), path, opt); err != nil {
			return out, err
		}
		if opt.Separator >= 0 {
			out = append(out, int32(opt.Separator))
		}
		return out, nil
	}
	buf := make([]byte, chunkBytes)
	limit := idLimit(opt)
	var pos int64
	for {
		n, err := io.ReadFull(r, buf)
		var bad int
		if out, bad = appendBytes(out, buf[:n], limit); bad >= 0 {
			return out, fmt.Errorf("%s: byte %d: id %d is not below the vocabulary size %d", path, pos+int64(bad), buf[bad], opt.VocabSize)
		}
		pos += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return out, fileError(path, err)
		}
	}
	if pos > 0 && opt.Separator >= 0 {
		out = append(out, int32(opt.Separator))
	}
	return out, nil
}

// maxLine bounds one JSON line, so that a corrupt file is an error, not an
// exhausted memory.
const maxLine = 1 << 30

// loadJSONL appends a C4-style JSON-lines file: each non-blank line is an object
// whose string field "text" is one document, followed by the separator.
func loadJSONL(out []int32, r io.Reader, path string, gz bool, opt LoadOptions) ([]int32, error) {
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return out, fmt.Errorf("%s: not gzip data: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	// A read error (a truncated gzip stream) reaches the scanner after the
	// partial line before it; er keeps it so that the error, not the broken
	// line's JSON, is reported.
	er := &errReader{r: r}
	sc := bufio.NewScanner(er)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	limit := idLimit(opt)
	var doc struct {
		Text *string `json:"text"`
	}
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		doc.Text = nil
		if err := json.Unmarshal(b, &doc); err != nil {
			if er.err != nil {
				break
			}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field == "text" {
				return out, fmt.Errorf("%s:%d: field \"text\" is a JSON %s, want a string", path, line, te.Value)
			}
			if errors.As(err, &te) {
				return out, fmt.Errorf("%s:%d: want a JSON object with a \"text\" field, got a JSON %s", path, line, te.Value)
			}
			return out, fmt.Errorf("%s:%d: not JSON (want one object per line): %v", path, line, err)
		}
		if doc.Text == nil {
			return out, fmt.Errorf("%s:%d: no \"text\" field", path, line)
		}
		text := *doc.Text
		if opt.Tokenizer != nil {
			var err error
			if out, err = appendEncoded(out, text, fmt.Sprintf("%s:%d", path, line), opt); err != nil {
				return out, err
			}
		} else {
			var bad int
			if out, bad = appendBytes(out, text, limit); bad >= 0 {
				return out, fmt.Errorf("%s:%d: byte %d of \"text\": id %d is not below the vocabulary size %d", path, line, bad, text[bad], opt.VocabSize)
			}
		}
		if opt.Separator >= 0 {
			out = append(out, int32(opt.Separator))
		}
	}
	err := sc.Err()
	if err == nil {
		err = er.err
	}
	if err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, fmt.Errorf("%s:%d: line longer than %d bytes", path, line+1, maxLine)
		}
		if gz {
			return out, fmt.Errorf("%s: reading gzip data: %w", path, err)
		}
		return out, fileError(path, err)
	}
	return out, nil
}

// appendEncoded appends opt.Tokenizer's ids of text; an id the model's
// vocabulary lacks (a tokenizer larger than the model) is an error naming
// where (file or file:line).
func appendEncoded(out []int32, text, where string, opt LoadOptions) ([]int32, error) {
	ids := opt.Tokenizer.Encode(text)
	limit := idLimit(opt)
	for _, id := range ids {
		if id < 0 || uint64(id) >= limit {
			return out, fmt.Errorf("%s: the tokenizer gives id %d, not below the model's vocabulary size %d", where, id, opt.VocabSize)
		}
	}
	return append(out, ids...), nil
}

// errReader remembers the first error other than io.EOF its reader returned.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
