package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// sample is a file with every dtype, a scalar, an empty tensor and metadata.
func sample() *File {
	return &File{
		Metadata: map[string]string{"format": "pt", "note": "<é & \"q\">"},
		Tensors: []Tensor{
			FromFloat32s("model.embed_tokens.weight", ir.F32, []int{2, 3}, []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 1e-30}),
			FromFloat32s("b", ir.BF16, []int{3}, []float32{1, 0.1, -3}),
			FromFloat32s("h", ir.F16, []int{2}, []float32{65504, -0.5}),
			FromFloat64s("d", ir.F64, []int{1, 1}, []float64{math.Pi}),
			FromInt64s("i", ir.I64, []int{3}, []int64{0, 1 << 40, -7}),
			FromInt64s("j", ir.I32, []int{2}, []int64{5, -5}),
			FromFloat32s("scalar", ir.F32, nil, []float32{42}),
			FromFloat32s("empty", ir.F32, []int{0, 4}, nil),
		},
	}
}

func sameFile(t *testing.T, got, want *File) {
	t.Helper()
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("got %d tensors %v, want %d %v", len(got.Tensors), got.Names(), len(want.Tensors), want.Names())
	}
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || g.DType != w.DType || !ir.ShapeEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("tensor %d: got %s %v%v %x, want %s %v%v %x", i, g.Name, g.DType, g.Shape, g.Data, w.Name, w.DType, w.Shape, w.Data)
		}
	}
	if len(got.Metadata)+len(want.Metadata) > 0 && !reflect.DeepEqual(got.Metadata, want.Metadata) {
		t.Errorf("metadata %v, want %v", got.Metadata, want.Metadata)
	}
}

func TestRoundTrip(t *testing.T) {
	f := sample()
	data, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(data)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	g, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, g, f)

	// Through a file, twice over the same path.
	path := filepath.Join(t.TempDir(), "x.safetensors")
	for range 2 {
		if err := Write(path, f); err != nil {
			t.Fatal(err)
		}
		h, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		sameFile(t, h, f)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after Write, want only the file", len(entries))
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v (%v), want 0644", st.Mode(), err)
	}
	if got := f.Get("i"); got == nil || got.Name != "i" {
		t.Errorf("Get(i) = %v", got)
	}
	if f.Get("nope") != nil {
		t.Error("Get of a missing name is not nil")
	}
}

func TestEmptyFile(t *testing.T) {
	data, err := Marshal(&File{})
	if err != nil {
		t.Fatal(err)
	}
	if string(data[8:]) != "{}      " {
		t.Errorf("empty file header %q", data[8:])
	}
	f, err := Parse(data)
	if err != nil || len(f.Tensors) != 0 {
		t.Fatalf("Parse(empty) = %v, %v", f, err)
	}
}

// header makes a file from a raw header and data section.
func header(h string, body int) []byte {
	b := make([]byte, 8, 8+len(h)+body)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	b = append(b, h...)
	return append(b, make([]byte, body)...)
}

func TestParseErrors(t *testing.T) {
	long := make([]byte, 8)
	binary.LittleEndian.PutUint64(long, MaxHeaderBytes+1)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"short", []byte{1, 2, 3}, "too short"},
		{"huge header", long, "exceeds the limit"},
		{"header past end", header(`{}`, 0)[:9], "does not fit"},
		{"not object", header(`[1]`, 0), "not a JSON object"},
		{"bad json", header(`{"a":`, 0), "not JSON"},
		{"bad utf8", header("{\"\xff\":1}", 0), "UTF-8"},
		{"trailing", header(`{} x`, 0), "trailing bytes"},
		{"duplicate", header(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}`, 8), `"a": duplicate`},
		{"entry not object", header(`{"a":3}`, 0), `tensor "a": entry is not a JSON object`},
		{"no dtype", header(`{"a":{"shape":[],"data_offsets":[0,4]}}`, 4), `"dtype" is missing`},
		{"no shape", header(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), `"shape" is missing`},
		{"no offsets", header(`{"a":{"dtype":"F32","shape":[]}}`, 4), `"data_offsets" is missing`},
		{"unknown dtype", header(`{"a":{"dtype":"I8","shape":[],"data_offsets":[0,1]}}`, 1), `tensor "a": unsupported dtype "I8"`},
		{"dtype not string", header(`{"a":{"dtype":3,"shape":[],"data_offsets":[0,1]}}`, 1), `field "dtype"`},
		{"negative dim", header(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "out of range"},
		{"fractional dim", header(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), `field "shape"`},
		{"huge shape", header(`{"a":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,4]}}`, 4), "too large"},
		{"offsets reversed", header(`{"a":{"dtype":"F32","shape":[],"data_offsets":[4,0]}}`, 4), "begin <= end"},
		{"offsets three", header(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4,8]}}`, 4), "[begin, end]"},
		{"size mismatch", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "needs 8 bytes"},
		{"past end", header(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 2), "outside the 2-byte data section"},
		{"gap", header(`{"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}`, 8), "gap"},
		{"overlap", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}`, 8), `"b"`},
		{"tail", header(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 6), "2 bytes after the last tensor"},
		{"metadata not strings", header(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
		{"metadata array", header(`{"__metadata__":[]}`, 0), "__metadata__"},
		{"empty name", header(`{"":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 4), "empty tensor name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		n    int
	}{
		{"null metadata", header(`{"__metadata__":null}`, 0), 0},
		{"padding", header(`{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}   `, 4), 1},
		{"unknown field", header(`{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), 1},
		{"out of order", header(`{"b":{"dtype":"I32","shape":[],"data_offsets":[4,8]},"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}`, 8), 2},
		{"zero-size", header(`{"z":{"dtype":"F64","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}`, 2), 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(c.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != c.n {
				t.Errorf("%d tensors, want %d", len(f.Tensors), c.n)
			}
		})
	}
	f, _ := Parse(header(`{"b":{"dtype":"I32","shape":[],"data_offsets":[4,8]},"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}`, 8))
	if got := f.Names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("tensors in %v, want data order [a b]", got)
	}
}

func TestReadErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	os.WriteFile(path, header(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`, 8), 0o644)
	_, err := Read(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("Read = %v, want an error naming %s and the tensor", err, path)
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Read(missing) = %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	good := &File{Tensors: []Tensor{FromFloat32s("a", ir.F32, []int{1}, []float32{1})}}
	if err := Write(path, good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    *File
		want string
	}{
		{"nil", nil, "no file"},
		{"short data", &File{Tensors: []Tensor{FromFloat32s("a", ir.F32, []int{2}, []float32{1})}}, `"a"`},
		{"bad dtype", &File{Tensors: []Tensor{{Name: "a", DType: ir.InvalidDType}}}, "no safetensors name"},
		{"duplicate", &File{Tensors: []Tensor{good.Tensors[0], good.Tensors[0]}}, "duplicate"},
		{"reserved", &File{Tensors: []Tensor{{Name: "__metadata__", DType: ir.F32, Shape: []int{0}}}}, "reserved"},
		{"empty name", &File{Tensors: []Tensor{{DType: ir.F32, Shape: []int{0}}}}, "empty name"},
		{"negative", &File{Tensors: []Tensor{{Name: "n", DType: ir.F32, Shape: []int{-1}}}}, "negative"},
		{"i32 overflow", &File{Tensors: []Tensor{FromInt64s("i", ir.I32, []int{1}, []int64{1 << 40})}}, `"i"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Write(path, c.f)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Write = %v, want an error naming the path and containing %q", err, c.want)
			}
			f, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			sameFile(t, f, good) // untouched
		})
	}
	// A directory that does not exist: error, nothing created.
	if err := Write(filepath.Join(dir, "no", "x.safetensors"), good); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries left in the directory, want 1", len(entries))
	}
}

func TestConversions(t *testing.T) {
	// BF16: ties to even, NaN kept, overflow to Inf.
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{float32(math.Copysign(0, -1)), 0x8000},
		{math.MaxFloat32, 0x7f80},
	} {
		if got := ir.BF16FromFloat32(c.in); got != c.want {
			t.Errorf("ir.BF16FromFloat32(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if h := ir.BF16FromFloat32(float32(math.NaN())); ir.BF16ToFloat32(h) == ir.BF16ToFloat32(h) {
		t.Errorf("NaN became %#04x", h)
	}
	// F16.
	for _, c := range []struct {
		in   float64
		want uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {0x1p-24, 0x0001},
		{0x1p-25, 0x0000}, {0x1.8p-24, 0x0002}, {1 + 0x1p-11, 0x3c00}, {1 + 3*0x1p-11, 0x3c02},
		{math.Inf(-1), 0xfc00}, {0x1.ffcp-15, 0x0400}, {0x1.ff8p-15, 0x03ff},
	} {
		if got := ir.F16FromFloat64(c.in); got != c.want {
			t.Errorf("ir.F16FromFloat64(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
		if c.want&0x7c00 != 0x7c00 && ir.F16FromFloat64(ir.F16ToFloat64(c.want)) != c.want {
			t.Errorf("F16 %#04x does not round-trip", c.want)
		}
	}
	// Every finite half widens and narrows back to itself.
	for h := range 0x10000 {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := ir.F16FromFloat64(ir.F16ToFloat64(uint16(h))); got != uint16(h) {
			t.Fatalf("half %#04x round-trips to %#04x", h, got)
		}
	}

	f := sample()
	for _, c := range []struct {
		name string
		want []float32
	}{
		{"model.embed_tokens.weight", []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 1e-30}},
		{"b", []float32{1, ir.BF16ToFloat32(ir.BF16FromFloat32(0.1)), -3}},
		{"h", []float32{65504, -0.5}},
		{"d", []float32{float32(math.Pi)}},
	} {
		got, err := f.Get(c.name).Float32s()
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s.Float32s() = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if d, _ := f.Get("d").Float64s(); d[0] != math.Pi {
		t.Errorf("F64 Float64s = %v", d)
	}
	if v, err := f.Get("i").Int64s(); err != nil || !reflect.DeepEqual(v, []int64{0, 1 << 40, -7}) {
		t.Errorf("Int64s = %v, %v", v, err)
	}
	if v, err := f.Get("j").Int64s(); err != nil || !reflect.DeepEqual(v, []int64{5, -5}) {
		t.Errorf("I32 Int64s = %v, %v", v, err)
	}
	if _, err := f.Get("i").Float32s(); err == nil {
		t.Error("Float32s of an integer tensor succeeded")
	}
	if _, err := f.Get("b").Int64s(); err == nil {
		t.Error("Int64s of a float tensor succeeded")
	}
	bad := Tensor{Name: "x", DType: ir.F32, Shape: []int{3}, Data: make([]byte, 4)}
	if _, err := bad.Float32s(); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("Float32s of a short tensor = %v", err)
	}
	if x := FromFloat32s("x", ir.I64, []int{1}, []float32{1}); x.Data != nil {
		t.Error("FromFloat32s to I64 gave data")
	}
	if x := FromFloat32s("x", ir.F32, []int{2}, []float32{1}); x.Data != nil {
		t.Error("FromFloat32s with a short slice gave data")
	}

	// Convert: same dtype copies bits; F64 → BF16 rounds through F32 (as
	// PyTorch does), so 1 + 2⁻⁸ + 2⁻³⁰ becomes the tie 1 + 2⁻⁸, then 1.
	x := FromFloat64s("x", ir.F64, []int{2}, []float64{1 + 0x1p-8 + 0x1p-30, -1})
	y, err := x.Convert(ir.BF16)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := y.Float32s(); got[0] != 1 || got[1] != -1 {
		t.Errorf("Convert to BF16 = %v", got)
	}
	if _, err := f.Get("i").Convert(ir.F32); err == nil {
		t.Error("Convert of an integer tensor to F32 succeeded")
	}
	if z, err := f.Get("i").Convert(ir.I64); err != nil || !bytes.Equal(z.Data, f.Get("i").Data) {
		t.Errorf("Convert to its own dtype = %v", err)
	}
}

func TestEncodeFunc(t *testing.T) {
	f := sample()
	want, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	lazy := &File{Metadata: f.Metadata}
	for _, x := range f.Tensors {
		lazy.Tensors = append(lazy.Tensors, Tensor{Name: x.Name, DType: x.DType, Shape: x.Shape})
	}
	var calls []int
	var buf bytes.Buffer
	err = EncodeFunc(&buf, lazy, func(i int) ([]byte, error) {
		calls = append(calls, i)
		return f.Tensors[i].Data, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Error("EncodeFunc differs from Marshal")
	}
	if len(calls) != len(f.Tensors) || calls[0] != 0 || calls[len(calls)-1] != len(f.Tensors)-1 {
		t.Errorf("data called for %v", calls)
	}
	boom := errors.New("boom")
	if err := EncodeFunc(io.Discard, lazy, func(int) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("EncodeFunc with a failing producer = %v", err)
	}
	err = EncodeFunc(io.Discard, lazy, func(i int) ([]byte, error) { return []byte{1}, nil })
	if err == nil || !strings.Contains(err.Error(), "model.embed_tokens.weight") {
		t.Errorf("EncodeFunc with a short tensor = %v", err)
	}
}
