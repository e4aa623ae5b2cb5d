package c4

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// DefaultMaxLine is the longest JSON line (one document with its other
// fields) a shard may hold unless the caller sets another limit. C4's longest
// documents are well under 1 MiB; a longer line is most likely a corrupt
// file, and the limit keeps it from exhausting memory.
const DefaultMaxLine = 64 << 20

// readBuffer is the size of the buffered reader over a shard's (decompressed)
// lines; a line longer than this is gathered in a growing buffer.
const readBuffer = 64 << 10

// Doc is one document of a shard.
type Doc struct {
	Text  string // the "text" field, its bytes as the file holds them
	File  string // the shard's path
	Line  int    // the 1-based line number in the (decompressed) shard
	Index int64  // the 0-based document number in the shard; blank lines do not count
}

// Shard reads the documents of one shard in file order, one line at a time,
// holding a 64 KiB read buffer, the gzip decompressor's state and the
// longest line seen (bounded by the line limit).
type Shard struct {
	path    string
	f       *os.File
	zr      *gzip.Reader // nil for .json and .jsonl
	br      *bufio.Reader
	read    countingReader
	maxLine int
	long    []byte // a line longer than the read buffer
	line    int    // lines read
	docs    int64  // documents (non-blank lines) read
	err     error  // sticky: io.EOF or the first error
}

// OpenShard opens a shard for reading. maxLine bounds the length of a line in
// bytes (0 means DefaultMaxLine). A .json.gz or .jsonl.gz file must be gzip
// data: an empty shard is a gzip stream of nothing, not an empty file.
func OpenShard(path string, maxLine int) (*Shard, error) {
	gz, ok := isShard(path)
	if !ok {
		return nil, fmt.Errorf("%s: not a shard (want %s)", path, extList)
	}
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	s := &Shard{path: path, f: f, maxLine: maxLine}
	s.read.r = f
	var r io.Reader = &s.read
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: empty file, not gzip data (an empty shard is a gzip stream of no lines)", path)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%s: truncated gzip header", path)
			}
			if errors.Is(err, gzip.ErrHeader) {
				return nil, fmt.Errorf("%s: not gzip data", path)
			}
			return nil, fileError(path, err)
		}
		s.zr = zr
		r = zr
	}
	s.br = bufio.NewReaderSize(r, readBuffer)
	return s, nil
}

// Path returns the shard's path.
func (s *Shard) Path() string { return s.path }

// BytesRead returns how many bytes of the file (compressed, for gzip) have
// been read so far. It is safe to call from another goroutine, for progress.
func (s *Shard) BytesRead() int64 { return s.read.n.Load() }

// Next returns the next document, or io.EOF after the last. An error names
// the file and the line; after one, Next returns it again.
func (s *Shard) Next() (Doc, error) { return s.next(true) }

// skip passes over the next document without decoding its JSON (another
// rank's document); it returns io.EOF after the last.
func (s *Shard) skip() error {
	_, err := s.next(false)
	return err
}

func (s *Shard) next(decode bool) (Doc, error) {
	for s.err == nil {
		b, err := s.readLine()
		if err != nil {
			s.err = err
			break
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		d := Doc{File: s.path, Line: s.line, Index: s.docs}
		s.docs++
		if !decode {
			return d, nil
		}
		if d.Text, err = textField(b); err != nil {
			s.err = fmt.Errorf("%s:%d: %w", s.path, s.line, err)
			break
		}
		return d, nil
	}
	return Doc{}, s.err
}

// readLine returns the next line, its newline included, or io.EOF.
func (s *Shard) readLine() ([]byte, error) {
	if cap(s.long) > 1<<20 {
		s.long = nil // do not keep a huge line's buffer for the rest of the shard
	}
	s.long = s.long[:0]
	for {
		b, err := s.br.ReadSlice('\n')
		n := len(s.long) + len(b)
		if len(b) > 0 && b[len(b)-1] == '\n' {
			n-- // the limit is on the line's contents
		}
		if n > s.maxLine {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", s.path, s.line+1, s.maxLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			s.long = append(s.long, b...)
			continue
		}
		if len(s.long) > 0 {
			s.long = append(s.long, b...)
			b = s.long
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) && len(b) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF): // a last line without a newline
		default:
			return nil, s.readError(err)
		}
		s.line++
		return b, nil
	}
}

// readError reports a failed read as "file:line: reason", the line being the
// one the data broke off in.
func (s *Shard) readError(err error) error {
	at := fmt.Sprintf("%s:%d", s.path, s.line+1)
	var ce flate.CorruptInputError
	switch {
	case s.zr != nil && errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: truncated gzip data (the file ends inside its compressed stream)", at)
	case errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("%s: corrupt gzip data: checksum mismatch", at)
	case errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("%s: corrupt gzip data: bytes after the gzip stream are not gzip data", at)
	case errors.As(err, &ce):
		return fmt.Errorf("%s: corrupt gzip data: %v", at, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", at, err)
}

// Close releases the file.
func (s *Shard) Close() error {
	if s.zr != nil {
		s.zr.Close()
	}
	return s.f.Close()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// extList names the accepted shard extensions, for error messages.
const extList = ".json.gz, .jsonl.gz, .json or .jsonl"

// isShard reports whether name has a shard extension, and whether it is
// gzip-compressed.
func isShard(name string) (gz, ok bool) {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".json.gz"), strings.HasSuffix(n, ".jsonl.gz"):
		return true, true
	case strings.HasSuffix(n, ".json"), strings.HasSuffix(n, ".jsonl"):
		return false, true
	}
	return false, false
}

// Base returns a shard's file name without its directory and extension:
// "c4-train.00000-of-01024" for ".../c4-train.00000-of-01024.json.gz".
func Base(path string) string {
	name := filepath.Base(path)
	n := strings.ToLower(name)
	for _, ext := range []string{".json.gz", ".jsonl.gz", ".json", ".jsonl"} {
		if strings.HasSuffix(n, ext) {
			return name[:len(name)-len(ext)]
		}
	}
	return name
}

// fileError reports an operating-system error as "path: reason", without the
// os package's repetition of the operation and the path.
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}
