// Package tokenizer encodes text to token ids and decodes them back with a
// SentencePiece model (.model file), giving the same ids and text as
// SentencePiece 0.1.97 (Debian's python3-sentencepiece) for unigram and BPE
// models: the precompiled normalization rule, user-defined symbols, byte
// fallback and the special pieces all behave as there.
//
// The model file is read with protowire alone; no generated protobuf code.
package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"os"
)

// Model is a loaded SentencePiece model. It is immutable and safe for
// concurrent use.
type Model struct {
	pieces []pieceProto
	index  map[string]int32 // normal, user-defined and unused pieces
	other  map[string]int32 // unknown, control and byte pieces

	bpe          bool
	byteFallback bool
	byteIDs      [256]int32 // id of <0xXX>, when byteFallback
	unkID        int32      // the UNKNOWN piece
	unkSurface   string

	norm   normalizer
	denorm *normalizer // nil unless the model has a denormalization rule

	// unigram: every normal, user-defined and unused piece; scores.
	lattice            *trie
	minScore, maxScore float32

	// bpe: user-defined symbols, kept whole when splitting into characters.
	user *trie

	// Special ids as SentencePieceProcessor reports them (-1 when absent).
	bosID, eosID, padID int32
}

// Load reads a SentencePiece model file.
func Load(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return m, nil
}

// Parse builds a Model from the bytes of a .model file (a serialized
// ModelProto). It rejects models SentencePiece would reject: no unknown piece,
// duplicate pieces, byte pieces without byte_fallback, and so on.
func Parse(b []byte) (*Model, error) {
	p, err := parseModelProto(b)
	if err != nil {
		return nil, fmt.Errorf("malformed model: %w", err)
	}
	if len(p.pieces) == 0 {
		return nil, errors.New("no pieces (not a SentencePiece model?)")
	}
	if len(p.pieces) > math.MaxInt32 {
		return nil, fmt.Errorf("too many pieces: %d", len(p.pieces))
	}
	m := &Model{
		pieces:       p.pieces,
		index:        make(map[string]int32, len(p.pieces)),
		other:        make(map[string]int32),
		byteFallback: p.trainer.byteFallback,
		unkID:        -1,
		unkSurface:   p.trainer.unkSurface,
	}
	switch p.trainer.modelType {
	case modelUnigram:
	case modelBPE:
		m.bpe = true
	case modelWord:
		return nil, errors.New("model_type WORD is not supported (only UNIGRAM and BPE)")
	case modelChar:
		return nil, errors.New("model_type CHAR is not supported (only UNIGRAM and BPE)")
	default:
		return nil, fmt.Errorf("unknown model_type %d", p.trainer.modelType)
	}

	var userKeys []string
	var userIDs []int32
	var bytesFound [256]bool
	for i, sp := range p.pieces {
		id := int32(i)
		if sp.piece == "" {
			return nil, fmt.Errorf("piece %d is empty", i)
		}
		dst := m.other
		switch sp.typ {
		case typeNormal, typeUserDefined, typeUnused:
			dst = m.index
		}
		if prev, dup := m.index[sp.piece]; dup {
			return nil, fmt.Errorf("piece %d %q is already defined as piece %d", i, sp.piece, prev)
		}
		if prev, dup := m.other[sp.piece]; dup {
			return nil, fmt.Errorf("piece %d %q is already defined as piece %d", i, sp.piece, prev)
		}
		dst[sp.piece] = id
		switch sp.typ {
		case typeUserDefined:
			userKeys = append(userKeys, sp.piece)
			userIDs = append(userIDs, id)
		case typeUnknown:
			if m.unkID >= 0 {
				return nil, fmt.Errorf("piece %d %q: unknown piece is already defined as piece %d", i, sp.piece, m.unkID)
			}
			m.unkID = id
		case typeByte:
			if !m.byteFallback {
				return nil, fmt.Errorf("piece %d: byte piece %q found although byte_fallback is false", i, sp.piece)
			}
			c, ok := pieceToByte(sp.piece)
			if !ok {
				return nil, fmt.Errorf("piece %d: %q is not a byte piece <0xXX>", i, sp.piece)
			}
			bytesFound[c] = true
			m.byteIDs[c] = id
		}
	}
	if m.unkID < 0 {
		return nil, fmt.Errorf("no unknown piece (type UNKNOWN)")
	}
	if m.byteFallback {
		for c, ok := range bytesFound {
			if !ok {
				return nil, fmt.Errorf("byte_fallback is true but byte piece <0x%02X> is missing", c)
			}
		}
	}
	if len(userKeys) > 0 {
		m.user = newTrie(userKeys, userIDs)
	}

	m.norm, err = newNormalizer(&p.norm, m.user, p.trainer.treatWhitespaceSuffix)
	if err != nil {
		return nil, fmt.Errorf("normalizer_spec: %w", err)
	}
	if p.denorm != nil && len(p.denorm.charsmap) > 0 {
		d, err := newNormalizer(p.denorm, nil, false)
		if err != nil {
			return nil, fmt.Errorf("denormalizer_spec: %w", err)
		}
		m.denorm = &d
	}

	if !m.bpe {
		// Scores range over normal pieces only; max starts at FLT_MIN (the
		// smallest positive float), as in SentencePiece, which matters for the
		// bonus given to user-defined symbols.
		m.minScore, m.maxScore = math.MaxFloat32, math.Float32frombits(0x00800000)
		keys := make([]string, 0, len(m.index))
		ids := make([]int32, 0, len(m.index))
		for i, sp := range p.pieces {
			if sp.typ == typeNormal {
				m.minScore = min(m.minScore, sp.score)
				m.maxScore = max(m.maxScore, sp.score)
			}
			switch sp.typ {
			case typeNormal, typeUserDefined, typeUnused:
				keys = append(keys, sp.piece)
				ids = append(ids, int32(i))
			}
		}
		m.lattice = newTrie(keys, ids)
	}

	m.bosID = m.specialID(p.trainer.bosPiece, typeControl)
	m.eosID = m.specialID(p.trainer.eosPiece, typeControl)
	m.padID = m.specialID(p.trainer.padPiece, typeControl)
	return m, nil
}

func newNormalizer(s *normalizerProto, user *trie, suffix bool) (normalizer, error) {
	n := normalizer{
		user:                   user,
		addDummyPrefix:         s.addDummyPrefix,
		removeExtraWhitespaces: s.removeExtraWhitespaces,
		escapeWhitespaces:      s.escapeWhitespaces,
		suffix:                 suffix,
	}
	if len(s.charsmap) > 0 {
		cm, err := parseCharsmap(s.charsmap)
		if err != nil {
			return n, err
		}
		n.cm = cm
	}
	return n, nil
}

// specialID is the id of piece when it has type typ, else -1: SentencePiece
// finds bos/eos/pad by their piece names, not by the ids in trainer_spec.
func (m *Model) specialID(piece string, typ int32) int32 {
	id := m.PieceToID(piece)
	if m.pieces[id].typ != typ {
		return -1
	}
	return id
}

// VocabSize is the number of pieces; ids run from 0 to VocabSize()-1.
func (m *Model) VocabSize() int { return len(m.pieces) }

// UnkID is the id of the unknown piece, which every model has.
func (m *Model) UnkID() int32 { return m.unkID }

// BOSID is the id of the beginning-of-sentence control piece, or -1.
func (m *Model) BOSID() int32 { return m.bosID }

// EOSID is the id of the end-of-sentence control piece, or -1.
func (m *Model) EOSID() int32 { return m.eosID }

// PadID is the id of the padding control piece, or -1.
func (m *Model) PadID() int32 { return m.padID }

// PieceToID returns the id of piece, or UnkID when the model has no such
// piece (as SentencePiece does).
func (m *Model) PieceToID(piece string) int32 {
	if id, ok := m.other[piece]; ok {
		return id
	}
	if id, ok := m.index[piece]; ok {
		return id
	}
	return m.unkID
}

// IDToPiece returns the piece of id, or "" when id is out of range.
func (m *Model) IDToPiece(id int32) string {
	if id < 0 || int(id) >= len(m.pieces) {
		return ""
	}
	return m.pieces[id].piece
}

// Score returns the score of id (a log probability for unigram models, a
// merge rank for BPE), or 0 when id is out of range.
func (m *Model) Score(id int32) float32 {
	if id < 0 || int(id) >= len(m.pieces) {
		return 0
	}
	return m.pieces[id].score
}

// IsControl reports whether id is a control piece (such as <s> and </s>),
// which encoding never produces and decoding drops.
func (m *Model) IsControl(id int32) bool { return m.typeOf(id) == typeControl }

// IsByte reports whether id is a byte piece <0xXX> (byte_fallback models).
func (m *Model) IsByte(id int32) bool { return m.typeOf(id) == typeByte }

// IsUnused reports whether id is an unused piece, which encoding never produces.
func (m *Model) IsUnused(id int32) bool { return m.typeOf(id) == typeUnused }

func (m *Model) typeOf(id int32) int32 {
	if id < 0 || int(id) >= len(m.pieces) {
		return 0
	}
	return m.pieces[id].typ
}

// pieceToByte parses a byte piece "<0xXX>" (upper-case hex, as SentencePiece
// writes them).
func pieceToByte(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	var c byte
	for _, h := range []byte(p[3:5]) {
		switch {
		case '0' <= h && h <= '9':
			c = c<<4 | (h - '0')
		case 'A' <= h && h <= 'F':
			c = c<<4 | (h - 'A' + 10)
		default:
			return 0, false
		}
	}
	return c, true
}
