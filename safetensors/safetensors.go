// Package safetensors reads and writes the Hugging Face safetensors format, the
// file format of slc's checkpoints and exported weights.
//
// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
//
//	{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …,
//	 "__metadata__": {"key": "value", …}}
//
// (offsets relative to the first byte after the header), then the tensors' raw
// little-endian, row-major bytes. Write lays the tensors out in order without
// gaps and pads the header with spaces to a multiple of 8 bytes, as the
// reference implementation does; Read accepts exactly what that implementation
// accepts for the dtypes slc has (F64, F32, F16, BF16, I64, I32, U8) and rejects
// everything else with an error that names the file and the tensor.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"gitee.com/gidean/conv-linn/atomicfile"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"unicode/utf8"

	"gitee.com/gidean/conv-linn/ir"
)

// MaxHeaderBytes bounds the JSON header (the reference implementation's limit),
// so a corrupt length cannot make Parse allocate or scan gigabytes.
const MaxHeaderBytes = 100 << 20

// metadataKey is the reserved header entry holding the string→string metadata.
const metadataKey = "__metadata__"

// Tensor is one named tensor: its dtype, shape (nil or empty for a scalar) and
// its elements as little-endian bytes in row-major order.
type Tensor struct {
	Name  string
	DType ir.DType
	Shape []int
	Data  []byte
}

// File is the contents of a safetensors file: tensors in file order and the
// optional metadata.
type File struct {
	Tensors  []Tensor
	Metadata map[string]string
}

// dtypeNames maps slc's dtypes to the format's names.
var dtypeNames = map[ir.DType]string{
	ir.F64: "F64", ir.F32: "F32", ir.F16: "F16", ir.BF16: "BF16", ir.I64: "I64", ir.I32: "I32", ir.U8: "U8",
}

// DTypeName returns the safetensors name of d ("F32", "BF16", …), or "" when
// the format has no name for it.
func DTypeName(d ir.DType) string { return dtypeNames[d] }

// ParseDTypeName reads a safetensors dtype name. Names of the format that slc
// has no type for (BOOL, I8, I16, F8_*, …) are errors.
func ParseDTypeName(s string) (ir.DType, error) {
	for d, n := range dtypeNames {
		if n == s {
			return d, nil
		}
	}
	return ir.InvalidDType, fmt.Errorf("unsupported dtype %q (want F64, F32, F16, BF16, I64, I32 or U8)", s)
}

// Type returns the tensor's ir type.
func (t *Tensor) Type() ir.Type { return ir.Type{DType: t.DType, Shape: t.Shape} }

// NumElements is the product of the dimensions (1 for a scalar).
func (t *Tensor) NumElements() int64 { return t.Type().NumElements() }

// Get returns the tensor of that name, or nil.
func (f *File) Get(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// Names returns the tensor names in file order.
func (f *File) Names() []string {
	names := make([]string, len(f.Tensors))
	for i, t := range f.Tensors {
		names[i] = t.Name
	}
	return names
}

// Read reads and validates a safetensors file. Errors start with the path.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// entry is one tensor's header record.
type entry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// span is a validated tensor record awaiting its data.
type span struct {
	name       string
	dtype      ir.DType
	shape      []int
	begin, end int64
}

// Parse decodes a safetensors file held in memory. It checks the header length,
// that the header is a UTF-8 JSON object without duplicate names, every
// tensor's dtype, shape and offsets, that the byte counts match the shapes, and
// that the tensors cover the data section contiguously, without gaps or
// overlaps. The tensors' Data alias data. Tensors are returned in the order of
// their data in the file.
func Parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("too short for a safetensors header: %d bytes", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderBytes {
		return nil, fmt.Errorf("header length %d exceeds the limit of %d bytes", n, MaxHeaderBytes)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("header length %d does not fit the file (%d bytes)", n, len(data))
	}
	header, body := data[8:8+n], data[8+n:]
	spans, meta, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(spans, int64(len(body))); err != nil {
		return nil, err
	}
	f := &File{Metadata: meta, Tensors: make([]Tensor, len(spans))}
	for i, s := range spans {
		f.Tensors[i] = Tensor{Name: s.name, DType: s.dtype, Shape: s.shape, Data: body[s.begin:s.end:s.end]}
	}
	return f, nil
}

// parseHeader decodes and checks the JSON header; spans are in header order.
func parseHeader(header []byte) ([]span, map[string]string, error) {
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, errors.New("header is not a JSON object")
	}
	if !utf8.Valid(header) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, nil, fmt.Errorf("header is not JSON: %v", err)
	}
	var spans []span
	var meta map[string]string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header is not JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header is not JSON: unexpected %v", tok)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("tensor %q: duplicate name in the header", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: header is not JSON: %v", name, err)
		}
		if name == metadataKey {
			if meta, err = parseMetadata(raw); err != nil {
				return nil, nil, err
			}
			continue
		}
		s, err := parseEntry(name, raw)
		if err != nil {
			return nil, nil, err
		}
		spans = append(spans, s)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, fmt.Errorf("header is not JSON: %v", err)
	}
	// Only the padding may follow the object.
	rest := header[dec.InputOffset():]
	if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
		return nil, nil, errors.New("header has trailing bytes after the JSON object")
	}
	return spans, meta, nil
}

// parseMetadata reads the "__metadata__" entry: null or an object of strings.
func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var m map[string]string
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return nil, fmt.Errorf("%q must be an object mapping strings to strings", metadataKey)
	}
	return m, nil
}

// parseEntry checks one tensor's record.
func parseEntry(name string, raw json.RawMessage) (span, error) {
	bad := func(format string, args ...any) (span, error) {
		return span{}, fmt.Errorf("tensor %q: %s", name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return bad("empty tensor name")
	}
	var e entry
	if len(raw) == 0 || raw[0] != '{' {
		return bad("entry is not a JSON object")
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return bad("field %q: cannot hold a JSON %s", te.Field, te.Value)
		}
		return bad("%v", err)
	}
	switch {
	case e.DType == nil:
		return bad(`field "dtype" is missing`)
	case e.Shape == nil:
		return bad(`field "shape" is missing`)
	case e.DataOffsets == nil:
		return bad(`field "data_offsets" is missing`)
	}
	dt, err := ParseDTypeName(*e.DType)
	if err != nil {
		return bad("%v", err)
	}
	shape := make([]int, len(*e.Shape))
	elems := int64(1)
	for i, d := range *e.Shape {
		if d < 0 || d > math.MaxInt32 {
			return bad("shape %v: dimension %d is out of range", *e.Shape, d)
		}
		shape[i] = int(d)
		if d != 0 && elems > math.MaxInt64/8/d {
			return bad("shape %v is too large", *e.Shape)
		}
		elems *= d
	}
	if len(shape) == 0 {
		shape = nil
	}
	offs := *e.DataOffsets
	if len(offs) != 2 || offs[0] < 0 || offs[1] < offs[0] {
		return bad("data_offsets %v must be [begin, end] with 0 <= begin <= end", offs)
	}
	if want := elems * int64(dt.Size()); offs[1]-offs[0] != want {
		return bad("%s%v needs %d bytes, data_offsets %v give %d", *e.DType, shapeString(shape), want, offs, offs[1]-offs[0])
	}
	return span{name: name, dtype: dt, shape: shape, begin: offs[0], end: offs[1]}, nil
}

// checkLayout sorts spans by offset and checks that they tile [0, size).
func checkLayout(spans []span, size int64) error {
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	var at int64
	for _, s := range spans {
		switch {
		case s.end > size:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] outside the %d-byte data section", s.name, s.begin, s.end, size)
		case s.begin > at:
			return fmt.Errorf("tensor %q: gap in the data section before offset %d (previous data ends at %d)", s.name, s.begin, at)
		case s.begin < at:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap the previous tensor (ending at %d)", s.name, s.begin, s.end, at)
		}
		at = s.end
	}
	if at != size {
		return fmt.Errorf("data section has %d bytes after the last tensor (%d bytes)", size-at, size)
	}
	return nil
}

func shapeString(s []int) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(d), 10)
	}
	return string(append(b, ']'))
}

// check reports a tensor that cannot be written; lazy tensors (for
// EncodeFunc) have no Data yet, so only their shape is checked.
func (t *Tensor) check(lazy bool) error {
	if t.Name == "" {
		return errors.New("a tensor has an empty name")
	}
	if t.Name == metadataKey {
		return fmt.Errorf("tensor name %q is reserved for the metadata", t.Name)
	}
	if !utf8.ValidString(t.Name) {
		return fmt.Errorf("tensor name %q is not valid UTF-8", t.Name)
	}
	if DTypeName(t.DType) == "" {
		return fmt.Errorf("tensor %q: dtype %v has no safetensors name", t.Name, t.DType)
	}
	elems := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && elems > math.MaxInt64/8/int64(d) {
			return fmt.Errorf("tensor %q: shape %v is too large", t.Name, t.Shape)
		}
		elems *= int64(d)
	}
	if want := elems * int64(t.DType.Size()); !lazy && int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: %v%v needs %d bytes, has %d", t.Name, t.DType, shapeString(t.Shape), want, len(t.Data))
	}
	return nil
}

// header builds the padded JSON header for f, tensors in order, with each
// tensor's size taken from its shape.
func (f *File) header(lazy bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	str := func(s string) {
		enc.Encode(s) // a string always encodes
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteByte('{')
	first := true
	if len(f.Metadata) > 0 {
		keys := make([]string, 0, len(f.Metadata))
		for k, v := range f.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("metadata %q: not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		str(metadataKey)
		buf.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			str(k)
			buf.WriteByte(':')
			str(f.Metadata[k])
		}
		buf.WriteByte('}')
		first = false
	}
	seen := make(map[string]bool, len(f.Tensors))
	var off int64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if err := t.check(lazy); err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tensor %q: duplicate name", t.Name)
		}
		seen[t.Name] = true
		if !first {
			buf.WriteByte(',')
		}
		first = false
		str(t.Name)
		size := t.NumElements() * int64(t.DType.Size())
		fmt.Fprintf(&buf, `:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, DTypeName(t.DType), shapeString(t.Shape), off, off+size)
		off += size
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len() > MaxHeaderBytes {
		return nil, fmt.Errorf("header would take %d bytes, more than the format's limit of %d", buf.Len(), MaxHeaderBytes)
	}
	return buf.Bytes(), nil
}

// Check reports what would make Encode or Write fail on f: a tensor with an
// unknown dtype, Data of the wrong size, an empty, reserved or repeated name,
// metadata that is not UTF-8.
func (f *File) Check() error {
	_, err := f.header(false)
	return err
}

// Encode writes f in the safetensors format to w: the tensors in f's order,
// without gaps, the metadata keys sorted. It checks every tensor (a known
// dtype, Data the size its shape needs, unique non-empty names) before writing
// anything.
func Encode(w io.Writer, f *File) error {
	if f == nil {
		return errors.New("no file to encode")
	}
	return encode(w, f, false, func(i int) ([]byte, error) { return f.Tensors[i].Data, nil })
}

// EncodeFunc is Encode for tensors whose data is produced one at a time, so
// that a file larger than memory can be written: f's tensors give the names,
// dtypes and shapes (their Data is ignored), and data(i) returns tensor i's
// bytes when its turn comes, in order. A data error, or bytes of the wrong
// size, stops the encoding with that error.
func EncodeFunc(w io.Writer, f *File, data func(i int) ([]byte, error)) error {
	if f == nil {
		return errors.New("no file to encode")
	}
	return encode(w, f, true, data)
}

func encode(w io.Writer, f *File, lazy bool, data func(i int) ([]byte, error)) error {
	h, err := f.header(lazy)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		b, err := data(i)
		if err != nil {
			return err
		}
		if want := t.NumElements() * int64(t.DType.Size()); int64(len(b)) != want {
			return fmt.Errorf("tensor %q: %v%v needs %d bytes, got %d", t.Name, t.DType, shapeString(t.Shape), want, len(b))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Marshal returns f encoded as by Encode.
func Marshal(f *File) ([]byte, error) {
	var buf bytes.Buffer
	if err := Encode(&buf, f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write writes f to path atomically: into a temporary file in the same
// directory, fsynced, renamed over path, and the directory fsynced, so a crash
// or an error (a full disk) leaves either the old file or the new one, never a
// torn one. Errors name the path.
func Write(path string, f *File) (err error) {
	if f == nil {
		return fmt.Errorf("%s: no file to write", path)
	}
	if err := f.Check(); err != nil { // before touching the disk
		return fmt.Errorf("%s: %w", path, err)
	}
	err = atomicfile.Write(path, 0o644, func(w io.Writer) error { return Encode(w, f) })
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
