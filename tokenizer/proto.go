package tokenizer

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file reads SentencePiece's ModelProto (sentencepiece_model.proto, proto2)
// straight from the wire format: only the fields that encoding and decoding use
// are kept, every other field is skipped as a protobuf parser would skip it.

// Piece types, as numbered in ModelProto.SentencePiece.Type.
const (
	typeNormal      = 1
	typeUnknown     = 2
	typeControl     = 3
	typeUserDefined = 4
	typeUnused      = 5
	typeByte        = 6
)

// Model types, as numbered in TrainerSpec.ModelType.
const (
	modelUnigram = 1
	modelBPE     = 2
	modelWord    = 3
	modelChar    = 4
)

type pieceProto struct {
	piece string
	score float32
	typ   int32
}

type trainerProto struct {
	modelType             int32
	byteFallback          bool
	treatWhitespaceSuffix bool
	unkPiece, bosPiece    string
	eosPiece, padPiece    string
	unkSurface            string
}

type normalizerProto struct {
	name                   string
	charsmap               []byte
	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
}

type modelProto struct {
	pieces  []pieceProto
	trainer trainerProto
	norm    normalizerProto
	denorm  *normalizerProto // nil when the model has no denormalizer_spec
}

// fieldFunc is called for each field of a message with the bytes after the
// tag; it returns how many of them the field's value took, or 0 to have the
// field skipped (an unknown field, or a known one of an unexpected wire type).
type fieldFunc func(num protowire.Number, typ protowire.Type, b []byte) (int, error)

// walk calls f for every field of the message b.
func walk(b []byte, f fieldFunc) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad field tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		m, err := f(num, typ, b)
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		if m == 0 {
			m = protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("field %d: %v", num, protowire.ParseError(m))
			}
		}
		b = b[m:]
	}
	return nil
}

// Scalar readers: each checks the wire type (a field of another wire type is
// skipped, as protobuf does) and returns the bytes consumed.

func readVarint(typ protowire.Type, b []byte, dst *uint64) (int, error) {
	if typ != protowire.VarintType {
		return 0, nil
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	*dst = v
	return n, nil
}

func readInt32(typ protowire.Type, b []byte, dst *int32) (int, error) {
	var v uint64
	n, err := readVarint(typ, b, &v)
	if n > 0 {
		*dst = int32(v) // proto int32: negative values are sign-extended to 64 bits
	}
	return n, err
}

func readBool(typ protowire.Type, b []byte, dst *bool) (int, error) {
	var v uint64
	n, err := readVarint(typ, b, &v)
	if n > 0 {
		*dst = v != 0
	}
	return n, err
}

func readBytes(typ protowire.Type, b []byte, dst *[]byte) (int, error) {
	if typ != protowire.BytesType {
		return 0, nil
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	*dst = v
	return n, nil
}

func readString(typ protowire.Type, b []byte, dst *string) (int, error) {
	var v []byte
	n, err := readBytes(typ, b, &v)
	if n > 0 {
		*dst = string(v)
	}
	return n, err
}

func readFloat(typ protowire.Type, b []byte, dst *float32) (int, error) {
	if typ != protowire.Fixed32Type {
		return 0, nil
	}
	v, n := protowire.ConsumeFixed32(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	*dst = math.Float32frombits(v)
	return n, nil
}

// readMessage reads a length-delimited submessage and parses it with f.
func readMessage(typ protowire.Type, b []byte, f fieldFunc) (int, error) {
	var v []byte
	n, err := readBytes(typ, b, &v)
	if n <= 0 || err != nil {
		return n, err
	}
	return n, walk(v, f)
}

// parseModelProto decodes a serialized ModelProto, filling in proto2 defaults
// for absent fields.
func parseModelProto(b []byte) (*modelProto, error) {
	m := &modelProto{
		trainer: trainerProto{
			modelType:  modelUnigram,
			unkPiece:   "<unk>",
			bosPiece:   "<s>",
			eosPiece:   "</s>",
			padPiece:   "<pad>",
			unkSurface: " \u2047 ",
		},
		norm: defaultNormalizerProto(),
	}
	err := walk(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1: // pieces
			p := pieceProto{typ: typeNormal}
			n, err := readMessage(typ, b, p.field)
			if err != nil {
				return 0, fmt.Errorf("piece %d: %w", len(m.pieces), err)
			}
			if n > 0 {
				m.pieces = append(m.pieces, p)
			}
			return n, nil
		case 2: // trainer_spec
			n, err := readMessage(typ, b, m.trainer.field)
			if err != nil {
				return 0, fmt.Errorf("trainer_spec: %w", err)
			}
			return n, nil
		case 3: // normalizer_spec
			n, err := readMessage(typ, b, m.norm.field)
			if err != nil {
				return 0, fmt.Errorf("normalizer_spec: %w", err)
			}
			return n, nil
		case 5: // denormalizer_spec
			d := defaultNormalizerProto()
			n, err := readMessage(typ, b, d.field)
			if err != nil {
				return 0, fmt.Errorf("denormalizer_spec: %w", err)
			}
			if n > 0 {
				m.denorm = &d
			}
			return n, nil
		}
		return 0, nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func defaultNormalizerProto() normalizerProto {
	return normalizerProto{addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true}
}

func (p *pieceProto) field(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
	switch num {
	case 1:
		return readString(typ, b, &p.piece)
	case 2:
		return readFloat(typ, b, &p.score)
	case 3:
		n, err := readInt32(typ, b, &p.typ)
		if n > 0 && (p.typ < typeNormal || p.typ > typeByte) {
			return 0, fmt.Errorf("unknown piece type %d", p.typ)
		}
		return n, err
	}
	return 0, nil
}

func (t *trainerProto) field(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
	switch num {
	case 3:
		return readInt32(typ, b, &t.modelType)
	case 24:
		return readBool(typ, b, &t.treatWhitespaceSuffix)
	case 35:
		return readBool(typ, b, &t.byteFallback)
	case 44:
		return readString(typ, b, &t.unkSurface)
	case 45:
		return readString(typ, b, &t.unkPiece)
	case 46:
		return readString(typ, b, &t.bosPiece)
	case 47:
		return readString(typ, b, &t.eosPiece)
	case 48:
		return readString(typ, b, &t.padPiece)
	}
	return 0, nil
}

func (s *normalizerProto) field(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
	switch num {
	case 1:
		return readString(typ, b, &s.name)
	case 2:
		return readBytes(typ, b, &s.charsmap)
	case 3:
		return readBool(typ, b, &s.addDummyPrefix)
	case 4:
		return readBool(typ, b, &s.removeExtraWhitespaces)
	case 5:
		return readBool(typ, b, &s.escapeWhitespaces)
	}
	return 0, nil
}
