package fbs

// The checks that make reading an untrusted, size-prefixed FlatBuffer safe:
// the generated Go accessors trust every offset and panic (or read garbage) on
// a corrupt file, so slc's readers (binary IR here, .slc artifacts in package
// artifact) check the header and each table before touching its fields.

import (
	"encoding/binary"
	"fmt"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"
)

// HeaderSize is the size prefix (4 bytes), the root offset (4) and the file
// identifier (4) of a size-prefixed FlatBuffer with an identifier.
const HeaderSize = 12

// CheckHeader checks that data is a whole size-prefixed FlatBuffer with the
// identifier ident. notA names the format for a foreign file ("a .slc
// artifact" → "not a .slc artifact: …"); corrupt starts the other messages
// ("corrupt artifact").
func CheckHeader(data []byte, ident, notA, corrupt string) error {
	if len(data) < HeaderSize {
		return fmt.Errorf("not %s: %d bytes is too short for the header", notA, len(data))
	}
	if id := string(data[8:12]); id != ident {
		return fmt.Errorf("not %s: identifier %q, want %q", notA, id, ident)
	}
	if len(data) > math.MaxInt32 {
		return fmt.Errorf("%s: %d bytes is over the 2 GiB FlatBuffers limit", corrupt, len(data))
	}
	if size := int64(binary.LittleEndian.Uint32(data)) + 4; size != int64(len(data)) {
		if size > int64(len(data)) {
			return fmt.Errorf("%s: truncated: %d bytes, the header says %d", corrupt, len(data), size)
		}
		return fmt.Errorf("%s: %d bytes of trailing data after the %d the header declares", corrupt, int64(len(data))-size, size)
	}
	return nil
}

// CheckTable checks that a table and its vtable lie inside buf, so that the
// generated accessors of its fields read in range. The error reads after the
// table's name ("graph table at offset …").
func CheckTable(buf []byte, t flatbuffers.Table) error {
	le := binary.LittleEndian
	n := int64(len(buf))
	pos := int64(t.Pos)
	if pos < HeaderSize || pos+4 > n {
		return fmt.Errorf("table at offset %d is outside the %d-byte file", pos, n)
	}
	vt := pos - int64(int32(le.Uint32(buf[pos:])))
	if vt < HeaderSize || vt+4 > n {
		return fmt.Errorf("table at offset %d has its vtable outside the file", pos)
	}
	vtLen, objLen := int64(le.Uint16(buf[vt:])), int64(le.Uint16(buf[vt+2:]))
	if vtLen < 4 || vtLen%2 != 0 || vt+vtLen > n || objLen < 4 || pos+objLen > n {
		return fmt.Errorf("table at offset %d has a malformed vtable", pos)
	}
	for i := int64(4); i < vtLen; i += 2 {
		if off := int64(le.Uint16(buf[vt+i:])); off != 0 && (off < 4 || off >= objLen) {
			return fmt.Errorf("table at offset %d: field %d lies outside the table", pos, i/2-2)
		}
	}
	return nil
}

// CheckCount checks a vector length read from the file before anything is
// allocated for it: n elements of elemSize bytes must fit in buf.
func CheckCount(buf []byte, n, elemSize int) error {
	if n < 0 || n > len(buf)/elemSize {
		return fmt.Errorf("has %d elements, more than the file can hold", n)
	}
	return nil
}
