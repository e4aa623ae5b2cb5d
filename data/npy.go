package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// maxNpyHeader bounds the header length a file may claim, so that a corrupt
// length is an error rather than a huge allocation. NumPy writes a few hundred
// bytes at most for a 1-D array.
const maxNpyHeader = 1 << 16

// maxTokens bounds a token count read from a header (2^40 tokens, 8 TiB of
// int64), so that size arithmetic never overflows.
const maxTokens = 1 << 40

// npyHeader is what a .npy header says about the array that follows it.
type npyHeader struct {
	major, minor uint8
	descr        string // e.g. "<u2"
	kind         elemKind
	fortran      bool
	shape        []int64
	count        int64 // elements: the product of shape (1 for shape ())
	offset       int64 // bytes from the start of the file to the data
}

// npyDtypes maps the accepted descr strings to element kinds.
var npyDtypes = map[string]elemKind{"<u2": elemU16, "<i4": elemI32, "<u4": elemU32, "<i8": elemI64}

// readNpyHeader reads a .npy header from r and leaves r at the first data byte.
func readNpyHeader(r io.Reader) (npyHeader, error) {
	pre := make([]byte, 12)
	if _, err := io.ReadFull(r, pre[:10]); err != nil {
		return npyHeader{}, npyReadError(err)
	}
	n := 10
	if string(pre[:6]) == npyMagic && (pre[6] == 2 || pre[6] == 3) {
		if _, err := io.ReadFull(r, pre[10:12]); err != nil {
			return npyHeader{}, npyReadError(err)
		}
		n = 12
	}
	hlen, _, err := npyPrefix(pre[:n])
	if err != nil {
		return npyHeader{}, err
	}
	b := make([]byte, n+hlen)
	copy(b, pre[:n])
	if _, err := io.ReadFull(r, b[n:]); err != nil {
		return npyHeader{}, npyReadError(err)
	}
	return parseNpyHeader(b)
}

func npyReadError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated .npy header")
	}
	return err
}

// npyPrefix checks the magic string and version at the start of b and returns
// the header length and the offset of the header text.
func npyPrefix(b []byte) (hlen, off int, err error) {
	if len(b) < 10 || string(b[:6]) != npyMagic {
		return 0, 0, errors.New("not a .npy file (no \\x93NUMPY magic)")
	}
	major, minor := b[6], b[7]
	switch {
	case minor != 0 || major < 1 || major > 3:
		return 0, 0, fmt.Errorf(".npy format version %d.%d is not supported (want 1.0, 2.0 or 3.0)", major, minor)
	case major == 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:])), 10
	case len(b) < 12:
		return 0, 0, errors.New("truncated .npy header")
	default:
		h := binary.LittleEndian.Uint32(b[8:])
		if h > maxNpyHeader {
			return 0, 0, fmt.Errorf(".npy header length %d is implausible (more than %d bytes)", h, maxNpyHeader)
		}
		hlen, off = int(h), 12
	}
	return hlen, off, nil
}

// parseNpyHeader parses the header at the start of b (a prefix of a .npy file
// holding at least the whole header; later bytes are ignored). The header is a
// Python dict literal with exactly the keys 'descr', 'fortran_order' and 'shape'.
func parseNpyHeader(b []byte) (npyHeader, error) {
	hlen, off, err := npyPrefix(b)
	if err != nil {
		return npyHeader{}, err
	}
	if len(b)-off < hlen {
		return npyHeader{}, errors.New("truncated .npy header")
	}
	h := npyHeader{major: b[6], minor: b[7], offset: int64(off + hlen)}
	p := &pyLexer{s: b[off : off+hlen]}
	if err := h.parseDict(p); err != nil {
		return npyHeader{}, fmt.Errorf(".npy header %q: %w", b[off:off+hlen], err)
	}
	if err := h.check(); err != nil {
		return npyHeader{}, err
	}
	return h, nil
}

// parseDict reads the header dict and fills descr, fortran and shape.
func (h *npyHeader) parseDict(p *pyLexer) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	seen := map[string]bool{}
	for !p.peek('}') {
		key, err := p.str()
		if err != nil {
			return err
		}
		if seen[key] {
			return fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		if err := p.expect(':'); err != nil {
			return err
		}
		switch key {
		case "descr":
			if h.descr, err = p.str(); err != nil {
				return fmt.Errorf("descr: %w", err)
			}
		case "fortran_order":
			if h.fortran, err = p.boolean(); err != nil {
				return fmt.Errorf("fortran_order: %w", err)
			}
		case "shape":
			if h.shape, err = p.tuple(); err != nil {
				return fmt.Errorf("shape: %w", err)
			}
		default:
			return fmt.Errorf("unknown key %q", key)
		}
		if !p.peek('}') {
			if err := p.expect(','); err != nil {
				return err
			}
		}
	}
	p.i++ // the '}' peek saw
	if p.skipSpace(); p.i != len(p.s) {
		return fmt.Errorf("unexpected %q after the dict", p.s[p.i:])
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return fmt.Errorf("no %q key", k)
		}
	}
	return nil
}

// check validates the dtype and the shape and computes the element count.
func (h *npyHeader) check() error {
	k, ok := npyDtypes[h.descr]
	if !ok {
		return fmt.Errorf(".npy dtype %q is not supported (want little-endian uint16 '<u2', int32 '<i4', uint32 '<u4' or int64 '<i8')", h.descr)
	}
	h.kind = k
	h.count = 1
	big := 0
	for _, d := range h.shape {
		if d > 1 {
			big++
		}
		if d != 0 && h.count > maxTokens/d {
			return fmt.Errorf(".npy shape %v holds more than %d elements", h.shape, int64(maxTokens))
		}
		h.count *= d
	}
	if h.fortran && big > 1 {
		return fmt.Errorf(".npy array of shape %v is in Fortran order; save it in C order (np.ascontiguousarray)", h.shape)
	}
	return nil
}

// loadNpy appends the tokens of a .npy file.
func loadNpy(out []int32, r *os.File, path string, opt LoadOptions) ([]int32, error) {
	h, err := readNpyHeader(r)
	if err != nil {
		return out, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkSize(r, path, h.offset, h.count, h.kind.size()); err != nil {
		return out, err
	}
	return readTokens(out, r, path, h.count, h.kind, opt)
}

// pyLexer reads the small subset of Python literals a .npy header uses:
// strings, True/False, non-negative integers and tuples of them.
type pyLexer struct {
	s []byte
	i int
}

func (p *pyLexer) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

// peek reports whether the next non-space byte is c, without consuming it.
func (p *pyLexer) peek(c byte) bool {
	p.skipSpace()
	return p.i < len(p.s) && p.s[p.i] == c
}

func (p *pyLexer) expect(c byte) error {
	if !p.peek(c) {
		return fmt.Errorf("want %q at byte %d", c, p.i)
	}
	p.i++
	return nil
}

// str reads a quoted string without escapes.
func (p *pyLexer) str() (string, error) {
	p.skipSpace()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", fmt.Errorf("want a string at byte %d", p.i)
	}
	q := p.s[p.i]
	end := bytes.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", errors.New("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	if bytes.IndexByte(v, '\\') >= 0 {
		return "", errors.New("escapes in strings are not supported")
	}
	p.i += end + 2
	return string(v), nil
}

func (p *pyLexer) boolean() (bool, error) {
	p.skipSpace()
	for _, c := range []struct {
		word string
		v    bool
	}{{"True", true}, {"False", false}} {
		if bytes.HasPrefix(p.s[p.i:], []byte(c.word)) {
			p.i += len(c.word)
			return c.v, nil
		}
	}
	return false, fmt.Errorf("want True or False at byte %d", p.i)
}

// tuple reads a tuple of non-negative integers; a one-element tuple needs its
// trailing comma, as in Python.
func (p *pyLexer) tuple() ([]int64, error) {
	if err := p.expect('('); err != nil {
		return nil, err
	}
	dims := []int64{}
	comma := false
	for !p.peek(')') {
		p.skipSpace()
		start := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == start {
			return nil, fmt.Errorf("want a non-negative integer at byte %d", p.i)
		}
		d, err := strconv.ParseInt(string(p.s[start:p.i]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dimension %s is too large", p.s[start:p.i])
		}
		if p.i < len(p.s) && (p.s[p.i] == 'L' || p.s[p.i] == 'l') { // Python 2 long
			p.i++
		}
		dims = append(dims, d)
		comma = false
		if !p.peek(')') {
			if err := p.expect(','); err != nil {
				return nil, err
			}
			comma = true
		}
	}
	p.i++ // ')'
	if len(dims) == 1 && !comma {
		return nil, errors.New("(n) is not a tuple; want (n,)")
	}
	return dims, nil
}
