package tokenizer

import (
	"encoding/binary"
	"errors"
	"strings"
	"unicode/utf8"
)

// space is the meta symbol U+2581 that stands for a space inside pieces.
const space = "\u2581"

// replacementChar is what SentencePiece puts for a byte that is not valid UTF-8.
const replacementChar = "\uFFFD"

// maxCharsmapResults bounds the prefix matches considered per position, as
// SentencePiece's normalizer does (it keeps the longest of the first 32).
const maxCharsmapResults = 32

// charsmap is a precompiled normalization rule: a darts-clone double array
// mapping UTF-8 byte strings to offsets into a blob of NUL-terminated
// replacement strings.
type charsmap struct {
	units []uint32
	blob  string
}

// parseCharsmap decodes precompiled_charsmap: a little-endian uint32 byte
// length of the trie, the trie's units, then the replacement blob.
func parseCharsmap(b []byte) (*charsmap, error) {
	if len(b) <= 4 {
		return nil, errors.New("precompiled_charsmap is too short")
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) >= uint64(len(b)-4) || n%4 != 0 || n == 0 {
		return nil, errors.New("precompiled_charsmap: trie size out of range")
	}
	b = b[4:]
	cm := &charsmap{units: make([]uint32, n/4), blob: string(b[n:])}
	for i := range cm.units {
		cm.units[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return cm, nil
}

// Fields of a darts-clone unit.
func unitHasLeaf(u uint32) bool  { return (u>>8)&1 == 1 }
func unitValue(u uint32) uint32  { return u & (1<<31 - 1) }
func unitLabel(u uint32) uint32  { return u & (1<<31 | 0xFF) }
func unitOffset(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }
func (c *charsmap) unit(p uint32) (uint32, bool) {
	if p >= uint32(len(c.units)) {
		return 0, false
	}
	return c.units[p], true
}

// lookup finds the longest key that is a prefix of s (among the first
// maxCharsmapResults matches) and returns its length and replacement. A
// malformed trie or blob offset just ends the search: no panic, no match.
func (c *charsmap) lookup(s string) (int, string) {
	u, ok := c.unit(0)
	if !ok {
		return 0, ""
	}
	pos := unitOffset(u)
	best, bestValue, found := 0, uint32(0), 0
	for i := 0; i < len(s) && found < maxCharsmapResults; i++ {
		pos ^= uint32(s[i])
		if u, ok = c.unit(pos); !ok || unitLabel(u) != uint32(s[i]) {
			break
		}
		pos ^= unitOffset(u)
		if unitHasLeaf(u) {
			leaf, ok := c.unit(pos)
			if !ok {
				break
			}
			found++
			best, bestValue = i+1, unitValue(leaf)
		}
	}
	if best == 0 || bestValue >= uint32(len(c.blob)) {
		return 0, ""
	}
	r := c.blob[bestValue:]
	if end := strings.IndexByte(r, 0); end >= 0 {
		r = r[:end]
	}
	return best, r
}

// normalizer applies a NormalizerSpec: the charsmap, whitespace clean-up, the
// dummy prefix (or suffix) and the escaping of spaces to U+2581.
type normalizer struct {
	cm                     *charsmap // nil: identity
	user                   *trie     // user-defined symbols, never normalized; may be nil
	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
	suffix                 bool // treat_whitespace_as_suffix: the dummy space goes last
}

// prefix normalizes the first character (or user-defined symbol, or charsmap
// key) of s; it returns the replacement and the number of bytes consumed.
func (n *normalizer) prefix(s string) (string, int) {
	if n.user != nil {
		if l, _ := n.user.longestPrefix(s); l > 0 {
			return s[:l], l
		}
	}
	if n.cm != nil {
		if l, r := n.cm.lookup(s); l > 0 {
			return r, l
		}
	}
	r, l := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && l == 1 {
		return replacementChar, 1
	}
	return s[:l], l
}

// normalize returns s normalized as SentencePiece's Normalizer::Normalize does.
func (n *normalizer) normalize(s string) string {
	if n.removeExtraWhitespaces {
		for len(s) > 0 {
			r, l := n.prefix(s)
			if r != " " {
				break
			}
			s = s[l:]
		}
	}
	if len(s) == 0 {
		return ""
	}
	ws := " "
	if n.escapeWhitespaces {
		ws = space
	}
	var out strings.Builder
	out.Grow(len(s) * 3 / 2)
	if !n.suffix && n.addDummyPrefix {
		out.WriteString(ws)
	}
	prevSpace := n.removeExtraWhitespaces
	for len(s) > 0 {
		r, l := n.prefix(s)
		s = s[l:]
		if prevSpace {
			r = strings.TrimLeft(r, " ")
		}
		if len(r) > 0 {
			if n.escapeWhitespaces {
				for i := 0; i < len(r); i++ {
					if r[i] == ' ' {
						out.WriteString(space)
					} else {
						out.WriteByte(r[i])
					}
				}
			} else {
				out.WriteString(r)
			}
			prevSpace = r[len(r)-1] == ' '
		}
		if !n.removeExtraWhitespaces {
			prevSpace = false
		}
	}
	res := out.String()
	if n.removeExtraWhitespaces {
		for strings.HasSuffix(res, ws) {
			res = res[:len(res)-len(ws)]
		}
	}
	if n.suffix && n.addDummyPrefix {
		res += ws
	}
	return res
}
