package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// llm.c shard headers: 256 little-endian int32, header[0] the magic,
// header[1] the version, header[2] the token count; the tokens follow.
const (
	binHeaderBytes = 256 * 4
	binMagicGPT2   = 20240520 // version 1, uint16 tokens
	binMagicLlama3 = 20240801 // version 7, uint32 tokens
)

// binHeader is what an llm.c shard header says.
type binHeader struct {
	kind  elemKind
	count int64
}

// readBinHeader reads an llm.c header and leaves r at the first token.
func readBinHeader(r io.Reader) (binHeader, error) {
	var b [binHeaderBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return binHeader{}, fmt.Errorf("truncated: an llm.c shard starts with a %d-byte header", binHeaderBytes)
		}
		return binHeader{}, err
	}
	word := func(i int) int32 { return int32(binary.LittleEndian.Uint32(b[4*i:])) }
	magic, version, count := word(0), word(1), word(2)
	var h binHeader
	switch {
	case magic == binMagicGPT2 && version == 1:
		h.kind = elemU16
	case magic == binMagicLlama3 && version == 7:
		h.kind = elemU32
	case magic == binMagicGPT2 || magic == binMagicLlama3:
		return binHeader{}, fmt.Errorf("llm.c shard version %d is not supported for magic %d (want %d version 1 or %d version 7)", version, magic, binMagicGPT2, binMagicLlama3)
	default:
		return binHeader{}, fmt.Errorf("bad magic %d: not an llm.c shard (want %d, or %d for llama-3)", magic, binMagicGPT2, binMagicLlama3)
	}
	if count < 0 {
		return binHeader{}, fmt.Errorf("llm.c header has a negative token count %d", count)
	}
	h.count = int64(count)
	return h, nil
}

// loadBin appends the tokens of an llm.c shard.
func loadBin(out []int32, r *os.File, path string, opt LoadOptions) ([]int32, error) {
	h, err := readBinHeader(r)
	if err != nil {
		return out, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkSize(r, path, binHeaderBytes, h.count, h.kind.size()); err != nil {
		return out, err
	}
	return readTokens(out, r, path, h.count, h.kind, opt)
}
