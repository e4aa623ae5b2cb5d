package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LoadOptions says how byte-level text becomes ids and which ids are valid.
type LoadOptions struct {
	// VocabSize bounds the ids: every id must be < VocabSize, and one that is not
	// is an error naming the file, the position and the id. 0 checks only that
	// ids are non-negative and fit an int32.
	VocabSize int
	// Separator is the token id appended after each text document (see the
	// package doc), or -1 for none. The trainer passes 256 when the vocabulary
	// has more than 256 ids, else '\n'; with a Tokenizer, its end-of-text id.
	Separator int
	// Tokenizer, when set, turns each text document into ids instead of its
	// bytes (a SentencePiece model: slc train --tokenizer). Token files are
	// read as they are either way.
	Tokenizer Encoder
}

// Encoder turns a text into token ids (tokenizer.Model does).
type Encoder interface {
	Encode(text string) []int32
}

// format is a data file format, chosen by the file name's extension.
type format uint8

const (
	formatUnknown format = iota
	formatText           // .txt
	formatJSONL          // .json, .jsonl
	formatJSONLGz        // .json.gz, .jsonl.gz
	formatNpy            // .npy
	formatBin            // .bin (llm.c)
)

// formatList names the accepted extensions, for error messages.
const formatList = ".txt, .json, .jsonl, .json.gz, .jsonl.gz, .npy or .bin"

// formatOf returns the format a file name's extension selects.
func formatOf(name string) format {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".txt"):
		return formatText
	case strings.HasSuffix(n, ".json"), strings.HasSuffix(n, ".jsonl"):
		return formatJSONL
	case strings.HasSuffix(n, ".json.gz"), strings.HasSuffix(n, ".jsonl.gz"):
		return formatJSONLGz
	case strings.HasSuffix(n, ".npy"):
		return formatNpy
	case strings.HasSuffix(n, ".bin"):
		return formatBin
	}
	return formatUnknown
}

// Load reads the token stream at path: one data file, every data file of a
// directory (sorted by name), or every file a glob pattern matches (sorted),
// concatenated. The formats and the document separator are described in the
// package doc. Token files are read in chunks straight into the result, which is
// sized from their headers up front, so a large shard costs its int32 tokens and
// a small read buffer, not a second copy.
func Load(path string, opt LoadOptions) ([]int32, error) {
	if opt.VocabSize < 0 {
		return nil, fmt.Errorf("data: vocabulary size must be >= 0, got %d", opt.VocabSize)
	}
	if opt.Separator < -1 || opt.Separator > math.MaxInt32 || (opt.VocabSize > 0 && opt.Separator >= opt.VocabSize) {
		return nil, fmt.Errorf("data: separator id %d is outside the vocabulary of %d ids (want -1 for none or an id below it)", opt.Separator, opt.VocabSize)
	}
	files, err := resolve(path)
	if err != nil {
		return nil, err
	}
	// Size the result once from what each file's size or header says, so that
	// concatenating shards never regrows (and copies) the whole stream.
	var hint int64
	for _, f := range files {
		n, err := sizeHint(f.path, f.format)
		if err != nil {
			return nil, err
		}
		hint += n
	}
	if hint > math.MaxInt-1 {
		return nil, fmt.Errorf("%s: %d tokens do not fit in memory", path, hint)
	}
	out := make([]int32, 0, hint)
	for _, f := range files {
		if out, err = loadFile(out, f.path, f.format, opt); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return out, nil
}

// dataFile is one file Load reads, with its format.
type dataFile struct {
	path   string
	format format
}

// resolve lists the data files a path names: the file itself, a directory's data
// files or a glob pattern's matches.
func resolve(path string) ([]dataFile, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fileError(path, err)
		}
		var files []dataFile
		for _, e := range entries { // ReadDir sorts by name
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if f := formatOf(e.Name()); f != formatUnknown {
				files = append(files, dataFile{filepath.Join(path, e.Name()), f})
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: directory holds no data files (%s)", path, formatList)
		}
		return files, nil
	case err == nil:
		return one(path)
	case errors.Is(err, fs.ErrNotExist) && strings.ContainsAny(path, `*?[`):
		matches, gerr := filepath.Glob(path)
		if gerr != nil {
			return nil, fmt.Errorf("%s: bad glob pattern: %w", path, gerr)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("%s: no file matches the pattern", path)
		}
		slices.Sort(matches)
		var files []dataFile
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				return nil, fmt.Errorf("%s: pattern %s matches a directory", m, path)
			}
			f, err := one(m)
			if err != nil {
				return nil, err
			}
			files = append(files, f...)
		}
		return files, nil
	default:
		return nil, fileError(path, err)
	}
}

// one returns a single named file with its format, or an error for an unknown
// extension.
func one(path string) ([]dataFile, error) {
	f := formatOf(path)
	if f == formatUnknown {
		return nil, fmt.Errorf("%s: unknown data format (want %s)", path, formatList)
	}
	return []dataFile{{path, f}}, nil
}

// fileError reports an operating-system error as "path: reason", without the
// os package's repetition of the operation and the path.
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// sizeHint estimates a file's token count for sizing the result: exact for
// token files (from the header), the byte count plus a separator for plain
// text, and the compressed or JSON size (a rough guess) for the rest.
func sizeHint(path string, f format) (int64, error) {
	switch f {
	case formatNpy, formatBin:
		r, err := os.Open(path)
		if err != nil {
			return 0, fileError(path, err)
		}
		defer r.Close()
		var n int64
		if f == formatNpy {
			h, err := readNpyHeader(r)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", path, err)
			}
			n = h.count
		} else {
			h, err := readBinHeader(r)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", path, err)
			}
			n = h.count
		}
		return n, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fileError(path, err)
	}
	return fi.Size() + 1, nil
}

// loadFile appends one file's tokens to out.
func loadFile(out []int32, path string, f format, opt LoadOptions) ([]int32, error) {
	r, err := os.Open(path)
	if err != nil {
		return out, fileError(path, err)
	}
	defer r.Close()
	switch f {
	case formatText:
		return loadText(out, r, path, opt)
	case formatJSONL, formatJSONLGz:
		return loadJSONL(out, r, path, f == formatJSONLGz, opt)
	case formatNpy:
		return loadNpy(out, r, path, opt)
	case formatBin:
		return loadBin(out, r, path, opt)
	}
	return out, fmt.Errorf("%s: unknown data format (want %s)", path, formatList)
}

// elemKind is the little-endian integer type of a token file's elements.
type elemKind uint8

const (
	elemU16 elemKind = iota
	elemI32
	elemU32
	elemI64
)

func (k elemKind) size() int64 {
	switch k {
	case elemU16:
		return 2
	case elemI32, elemU32:
		return 4
	}
	return 8
}

// idLimit is the exclusive upper bound on ids the options allow.
func idLimit(opt LoadOptions) uint64 {
	if opt.VocabSize > 0 {
		return uint64(opt.VocabSize)
	}
	return math.MaxInt32 + 1
}

// idError describes an id outside [0, limit) at a position of a file.
func idError(path string, pos int64, id int64, opt LoadOptions) error {
	switch {
	case id < 0:
		return fmt.Errorf("%s: token %d: id %d is negative", path, pos, id)
	case opt.VocabSize > 0:
		return fmt.Errorf("%s: token %d: id %d is not below the vocabulary size %d", path, pos, id, opt.VocabSize)
	}
	return fmt.Errorf("%s: token %d: id %d does not fit an int32", path, pos, id)
}

// decode converts len(dst) little-endian elements of src into dst. It returns
// the index of the first element outside [0, limit) and its value, or -1.
// The switch sits outside the loops so that each loop is a tight conversion.
func decode(dst []int32, src []byte, k elemKind, limit uint64) (int, int64) {
	le := binary.LittleEndian
	switch k {
	case elemU16:
		src = src[:2*len(dst)]
		for i := range dst {
			v := uint64(le.Uint16(src[2*i:]))
			if v >= limit {
				return i, int64(v)
			}
			dst[i] = int32(v)
		}
	case elemI32:
		src = src[:4*len(dst)]
		for i := range dst {
			v := int64(int32(le.Uint32(src[4*i:])))
			if uint64(v) >= limit {
				return i, v
			}
			dst[i] = int32(v)
		}
	case elemU32:
		src = src[:4*len(dst)]
		for i := range dst {
			v := uint64(le.Uint32(src[4*i:]))
			if v >= limit {
				return i, int64(v)
			}
			dst[i] = int32(v)
		}
	case elemI64:
		src = src[:8*len(dst)]
		for i := range dst {
			v := int64(le.Uint64(src[8*i:]))
			if uint64(v) >= limit {
				return i, v
			}
			dst[i] = int32(v)
		}
	}
	return -1, 0
}

// chunkBytes is the read buffer size for token files and text.
const chunkBytes = 1 << 20

// readTokens reads count elements of kind k from r (positioned at the first
// one) and appends them to out, checking every id. The data must end exactly
// there: the caller has checked the file size against the header.
func readTokens(out []int32, r io.Reader, path string, count int64, k elemKind, opt LoadOptions) ([]int32, error) {
	size := k.size()
	if int64(cap(out)-len(out)) < count {
		out = slices.Grow(out, int(count))
	}
	buf := make([]byte, min(chunkBytes, count*size))
	limit := idLimit(opt)
	for done := int64(0); done < count; {
		n := min(count-done, int64(len(buf))/size)
		if _, err := io.ReadFull(r, buf[:n*size]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return out, fmt.Errorf("%s: truncated: the header promises %d tokens, the file ends after fewer", path, count)
			}
			return out, fileError(path, err)
		}
		start := len(out)
		out = out[:start+int(n)]
		if i, id := decode(out[start:], buf, k, limit); i >= 0 {
			return out, idError(path, done+int64(i), id, opt)
		}
		done += n
	}
	return out, nil
}

// checkSize verifies that a token file holds exactly the data its header
// promises: fewer bytes is a truncated file, more is a corrupt one.
func checkSize(r *os.File, path string, offset, count, elemSize int64) error {
	fi, err := r.Stat()
	if err != nil {
		return fileError(path, err)
	}
	want := offset + count*elemSize
	switch got := fi.Size(); {
	case got < want:
		return fmt.Errorf("%s: truncated: the header promises %d tokens (%d bytes of data), the file has %d", path, count, count*elemSize, max(got-offset, 0))
	case got > want:
		return fmt.Errorf("%s: %d bytes after the %d tokens the header promises", path, got-want, count)
	}
	return nil
}
