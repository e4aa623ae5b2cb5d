package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Decode turns ids back into text as SentencePiece's DecodeIds does: U+2581
// becomes a space; the first piece loses the space of the dummy prefix (when
// the model removes extra whitespace, every piece does until some text has
// appeared); control pieces vanish; the unknown piece reads " ⁇ " (the model's
// unk_surface); runs of byte pieces are reassembled into UTF-8, with U+FFFD
// for each byte that is not part of a valid character. An id outside
// [0, VocabSize()) is an error, as in SentencePiece.
func (m *Model) Decode(ids []int32) (string, error) {
	var out strings.Builder
	var pending []byte // bytes of consecutive byte pieces
	flush := func() {
		for b := pending; len(b) > 0; {
			r, n := utf8.DecodeRune(b)
			if r == utf8.RuneError && n == 1 {
				out.WriteString(replacementChar)
			} else {
				out.Write(b[:n])
			}
			b = b[n:]
		}
		pending = pending[:0]
	}
	// The space of the dummy prefix is dropped from the first piece. When the
	// model removes extra whitespace, every leading space is dropped: the
	// first pieces that are only U+2581 vanish until some text appears.
	strip := m.norm.addDummyPrefix || m.norm.removeExtraWhitespaces
	atStart, stripped := true, false
	for _, id := range ids {
		if id < 0 || int(id) >= len(m.pieces) {
			return "", fmt.Errorf("tokenizer: decode: id %d out of range [0, %d)", id, len(m.pieces))
		}
		p := &m.pieces[id]
		if p.typ == typeByte {
			c, _ := pieceToByte(p.piece)
			pending = append(pending, c)
			continue
		}
		flush()
		if atStart && (stripped || out.Len() > 0) {
			atStart = false
		}
		stripped = false
		switch p.typ {
		case typeControl:
			continue
		case typeUnknown:
			out.WriteString(m.unkSurface)
			continue
		}
		piece := p.piece
		if atStart && strip {
			var ok bool
			piece, ok = strings.CutPrefix(piece, space)
			stripped = ok && !m.norm.removeExtraWhitespaces
		}
		out.WriteString(strings.ReplaceAll(piece, space, " "))
	}
	flush()
	if m.denorm != nil {
		return m.denorm.normalize(out.String()), nil
	}
	return out.String(), nil
}
