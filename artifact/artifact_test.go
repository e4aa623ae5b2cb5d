package artifact

import (
	"bytes"
	"crypto/sha256"
	irfbs "gitee.com/gidean/conv-linn/ir/fbs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact/fbs"
	"gitee.com/gidean/conv-linn/ir"
)

// sample returns a small artifact that exercises every field: two programs
// sharing a state tensor, every slot kind, scalar and shaped types, steps with
// and without arguments, outputs with and without Updates.
func sample(t testing.TB) *Artifact {
	t.Helper()
	b := ir.NewBuilder("train")
	w := b.AddInput("w", ir.T(ir.F32, 2, 3), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.02, Seed: 7})
	b.Output("y", b.Unary("Neg", w))
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	mod, err := (&ir.Module{Meta: map[string]string{"model": "tiny"}, Graphs: []*ir.Graph{b.G}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &Artifact{
		CompilerVersion: "0.1.0",
		Target:          Target{Kind: TargetCPU, Triple: "x86_64-unknown-linux-gnu", CPU: "znver4", Features: "+avx2,+fma,-avx512f"},
		Module:          mod,
		Code:            []byte("\x7fELF not really"),
		Programs: []*Program{
			{
				Name: "train", ArenaBytes: 256, ScratchBytes: 4096,
				Slots: []Slot{
					{Name: "w", Type: ir.T(ir.F32, 2, 3), Kind: SlotState},
					{Name: "tokens", Type: ir.T(ir.I64, 4, 8), Kind: SlotData},
					{Name: "lr", Type: ir.T(ir.F32), Kind: SlotScalar},
					{Name: "v0", Type: ir.T(ir.F32, 2, 3), Kind: SlotArena, Offset: 64},
					{Name: "loss", Type: ir.T(ir.F32), Kind: SlotArena, Offset: 128},
					{Name: "m", Type: ir.T(ir.BF16, 0, 5), Kind: SlotState},
				},
				Steps: []Step{
					{Kernel: "k_embed", Args: []int32{0, 1, 3}, Label: "embed_tokens forward Gather"},
					{Kernel: "k_loss", Args: []int32{3, 4}, Grid: 132, Block: 256, SharedBytes: 1024, ScratchBytes: 64, Flops: 1 << 40, Bytes: 1 << 33, TensorCore: true},
					{Kernel: "k_nop"},
				},
				Outputs: []Output{
					{Name: "loss", Slot: 4},
					{Name: "w_new", Slot: 3, Updates: "w"},
					{Name: "m_new", Slot: 5, Updates: "m"},
				},
			},
			{
				Name:  "eval",
				Slots: []Slot{{Name: "w", Type: ir.T(ir.F32, 2, 3), Kind: SlotState}},
				Steps: []Step{{Kernel: "k_eval", Args: []int32{0}}},
			},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	a := sample(t)
	data, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data[8:12]); got != FileIdentifier {
		t.Errorf("identifier %q, want %q", got, FileIdentifier)
	}
	b, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	a.CodeSHA256 = sha256.Sum256(a.Code) // what the file records
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip changed the artifact:\n got %+v\nwant %+v", b, a)
	}
	again, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Error("Marshal is not deterministic across a round trip")
	}
	// The result must not alias the input.
	data[len(data)-1] ^= 0xff
	for i := range data {
		data[i] = 0
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("Unmarshal's result shares memory with its input")
	}
	if b.Program("eval") != b.Programs[1] || b.Program("nope") != nil {
		t.Error("Program does not find programs by name")
	}
	m, err := ir.ParseBinary(b.Module)
	if err != nil || m.Graph("train") == nil {
		t.Errorf("embedded module does not parse: %v", err)
	}
}

func TestRoundTripEmpty(t *testing.T) {
	a := &Artifact{Target: Target{Kind: TargetCUDA}}
	data, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	a.CodeSHA256 = sha256.Sum256(nil)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("got %+v, want %+v", b, a)
	}
}

// TestEnumsMatch checks that the schema's enums carry the Go constants' numbers,
// since Marshal converts between them with plain casts.
func TestEnumsMatch(t *testing.T) {
	if fbs.FileIdentifier != FileIdentifier {
		t.Errorf("fbs.FileIdentifier %q != %q", fbs.FileIdentifier, FileIdentifier)
	}
	for _, k := range []SlotKind{SlotState, SlotData, SlotScalar, SlotArena} {
		name := fbs.EnumNamesSlotKind[fbs.SlotKind(k)]
		if !strings.EqualFold(name, k.String()) {
			t.Errorf("slot kind %d is %q in the schema, %q in Go", k, name, k)
		}
	}
	for d := ir.F32; d <= ir.I64; d++ {
		name := fbs.EnumNamesDType[fbs.DType(d)]
		if !strings.EqualFold(name, d.String()) {
			t.Errorf("dtype %d is %q in the schema, %q in Go", d, name, d)
		}
	}
}

// TestTruncated cuts a valid file at every length: each must fail cleanly.
func TestTruncated(t *testing.T) {
	data, err := sample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(data); n++ {
		if _, err := Unmarshal(data[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(data))
		}
	}
	if _, err := Unmarshal(append(data[:len(data):len(data)], 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("trailing byte: got %v", err)
	}
}

// TestBitFlipsRefused flips every bit of a whole file in turn: the checksum
// must refuse each one (never a panic, never a silently different artifact).
func TestBitFlipsRefused(t *testing.T) {
	data, err := sample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for bit := range 8 {
			buf := bytes.Clone(data)
			buf[i] ^= 1 << bit
			if _, err := Unmarshal(buf); err == nil {
				t.Fatalf("byte %d bit %d flipped: accepted", i, bit)
			} else if !strings.HasPrefix(err.Error(), "corrupt artifact") && !strings.HasPrefix(err.Error(), "not a .slc artifact") {
				t.Fatalf("byte %d bit %d: error %q does not say the file is corrupt", i, bit, err)
			}
		}
	}
	t.Logf("%d single-bit flips of a %d-byte artifact refused", 8*len(data), len(data))
	if _, err := Unmarshal(data[:len(data)-TrailerSize]); err == nil || !strings.Contains(err.Error(), "no checksum") {
		t.Errorf("file without a trailer: got %v", err)
	}
	a := sample(t)
	b, _ := Unmarshal(data)
	b.Code[0] ^= 1
	if err := b.CheckCode(); err == nil {
		t.Error("CheckCode accepted code changed after loading")
	}
	if err := a.CheckCode(); err != nil {
		t.Errorf("CheckCode of an artifact never stored: %v", err)
	}
}

// TestCorrupt flips bytes of the FlatBuffer one at a time and reseals the
// checksum (keeping the size prefix and the identifier, so the decoder
// itself is exercised, as by a hostile file with a valid checksum), and
// also patches the size prefix of truncated files to look whole. Unmarshal
// must never panic; a flip it accepts must still give a valid artifact.
func TestCorrupt(t *testing.T) {
	sealed, err := sample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	data := sealed[:len(sealed)-TrailerSize]
	check := func(buf []byte, what string) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%s: panic: %v", what, r)
			}
		}()
		a, err := unmarshalBody(buf)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "corrupt artifact") && !strings.HasPrefix(err.Error(), "not a .slc artifact") {
				t.Errorf("%s: error %q does not say the file is corrupt", what, err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Errorf("%s: accepted an invalid artifact: %v", what, err)
		}
	}
	for i := 12; i < len(data); i++ {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			buf := bytes.Clone(data)
			buf[i] ^= x
			check(buf, "flip")
		}
	}
	for n := irfbs.HeaderSize; n < len(data); n++ {
		buf := bytes.Clone(data[:n])
		buf[0], buf[1], buf[2], buf[3] = byte(n-4), byte((n-4)>>8), 0, 0
		check(buf, "truncated with patched size")
	}
	if _, err := Unmarshal([]byte("hello, world, this is not flatbuffers")); err == nil || !strings.Contains(err.Error(), "not a .slc artifact") {
		t.Errorf("foreign file: got %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(a *Artifact)
		want   string
	}{
		{"target", func(a *Artifact) { a.Target.Kind = "tpu" }, `unknown target kind "tpu"`},
		{"nil program", func(a *Artifact) { a.Programs[1] = nil }, "program 1 is nil"},
		{"program name", func(a *Artifact) { a.Programs[1].Name = "" }, "empty name"},
		{"duplicate program", func(a *Artifact) { a.Programs[1].Name = "train" }, "two programs"},
		{"arena size", func(a *Artifact) { a.Programs[0].ArenaBytes = -1 }, "arena size -1"},
		{"scratch size", func(a *Artifact) { a.Programs[0].ScratchBytes = -5 }, "scratch size -5"},
		{"dtype", func(a *Artifact) { a.Programs[0].Slots[0].Type.DType = 0 }, "unknown dtype"},
		{"negative dim", func(a *Artifact) { a.Programs[0].Slots[1].Type.Shape[0] = -4 }, "negative dimension"},
		{"huge", func(a *Artifact) { a.Programs[0].Slots[1].Type.Shape = []int{1 << 40, 1 << 40} }, "too large"},
		{"slot kind", func(a *Artifact) { a.Programs[0].Slots[1].Kind = 9 }, "unknown slot kind"},
		{"scalar shape", func(a *Artifact) { a.Programs[0].Slots[2].Type = ir.T(ir.F32, 2) }, "not one element"},
		{"arena misaligned", func(a *Artifact) { a.Programs[0].Slots[3].Offset = 8 }, "not a non-negative multiple of 64"},
		{"arena overflow", func(a *Artifact) { a.Programs[0].Slots[4].Offset = 256 }, "ends past the 256-byte arena"},
		{"duplicate data", func(a *Artifact) { a.Programs[0].Slots[2].Name = "tokens" }, `scalar "tokens": another state, data or scalar slot has this name`},
		{"state types", func(a *Artifact) { a.Programs[1].Slots[0].Type = ir.T(ir.F32, 3, 2) }, `state "w" is f32[3,2] here but f32[2,3]`},
		{"kernel name", func(a *Artifact) { a.Programs[0].Steps[0].Kernel = "" }, "empty kernel name"},
		{"arg range", func(a *Artifact) { a.Programs[0].Steps[1].Args[1] = 6 }, "argument 1 names slot 6 of 6"},
		{"negative arg", func(a *Artifact) { a.Programs[0].Steps[1].Args[0] = -1 }, "names slot -1"},
		{"launch grid", func(a *Artifact) { a.Programs[0].Steps[1].Grid = 0 }, "launch of 0 blocks"},
		{"launch block", func(a *Artifact) { a.Programs[0].Steps[1].Block = 2048 }, "2048 threads per block"},
		{"launch shared", func(a *Artifact) { a.Programs[0].Steps[1].SharedBytes = -1 }, "dynamic shared memory -1"},
		{"launch scratch", func(a *Artifact) { a.Programs[0].Steps[1].ScratchBytes = 1 << 20 }, "scratch of 1048576 bytes per thread for 132×256"},
		{"output name", func(a *Artifact) { a.Programs[0].Outputs[0].Name = "" }, "empty name"},
		{"output twice", func(a *Artifact) { a.Programs[0].Outputs[1].Name = "loss" }, `"loss" appears twice`},
		{"output slot", func(a *Artifact) { a.Programs[0].Outputs[0].Slot = 10 }, "names slot 10"},
		{"updates unknown", func(a *Artifact) { a.Programs[0].Outputs[1].Updates = "q" }, `updates "q", which is no state`},
		{"updates type", func(a *Artifact) { a.Programs[0].Outputs[1].Slot = 4 }, `a f32[] value cannot update state "w"`},
		{"updates twice", func(a *Artifact) { a.Programs[0].Outputs[2].Updates = "w"; a.Programs[0].Outputs[2].Slot = 0 }, `state "w" is updated twice`},
	}
	if err := sample(t).Validate(); err != nil {
		t.Fatalf("sample: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := sample(t)
			tc.change(a)
			err := a.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, err := a.Marshal(); err == nil || !strings.HasPrefix(err.Error(), "cannot write artifact") {
				t.Errorf("Marshal: got %v, want a refusal", err)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.slc")
	a := sample(t)
	if err := WriteFile(path, a); err != nil {
		t.Fatal(err)
	}
	b, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a.CodeSHA256 = sha256.Sum256(a.Code)
	if !reflect.DeepEqual(a, b) {
		t.Error("file round trip changed the artifact")
	}
	before, _ := os.ReadFile(path)

	// A failed write leaves the existing file and no temporary behind.
	bad := sample(t)
	bad.Target.Kind = ""
	if err := WriteFile(path, bad); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("invalid artifact: got %v, want an error naming %s", err, path)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x.slc"), a); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing directory: got %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("a failed write changed the existing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only model.slc", names)
	}

	// Read errors name the path.
	if _, err := ReadFile(filepath.Join(dir, "nope.slc")); err == nil || !strings.Contains(err.Error(), "nope.slc") {
		t.Errorf("missing file: got %v", err)
	}
	junk := filepath.Join(dir, "junk.slc")
	os.WriteFile(junk, before[:len(before)/2], 0o644)
	if _, err := ReadFile(junk); err == nil || !strings.Contains(err.Error(), junk) || !strings.Contains(err.Error(), "corrupt artifact") {
		t.Errorf("truncated file: got %v", err)
	}
}

// FuzzUnmarshal checks that no input makes Unmarshal panic, and that whatever
// it accepts survives a Marshal round trip.
func FuzzUnmarshal(f *testing.F) {
	data, err := sample(f).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, 0, byte(0))
	f.Add(data, 40, byte(3))
	// Besides arbitrary bytes (which the checksum refuses), pos > 0 flips bit
	// bit of byte pos of the FlatBuffer and decodes it as if its checksum
	// held, so that the decoder behind the checksum is exercised too.
	f.Fuzz(func(t *testing.T, data []byte, pos int, bit byte) {
		decode := Unmarshal
		if len(data) > TrailerSize && pos > 0 {
			data = bytes.Clone(data[:len(data)-TrailerSize])
			data[pos%len(data)] ^= 1 << (bit % 8)
			decode = unmarshalBody
		}
		a, err := decode(data)
		if err != nil {
			return
		}
		a.CodeSHA256 = sha256.Sum256(a.Code)
		out, err := a.Marshal()
		if err != nil {
			t.Fatalf("accepted artifact does not marshal: %v", err)
		}
		b, err := Unmarshal(out)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip of an accepted artifact failed: %v", err)
		}
	})
}
