package tokenizer

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Helpers that write ModelProto messages by hand.

func pbPiece(piece string, score float32, typ int32) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, piece)
	b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, math.Float32bits(score))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(typ))
	return b
}

func pbField(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func pbVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// pbModel is a model of the given pieces; trainer and norm are the encoded
// trainer_spec and normalizer_spec, left out when nil.
func pbModel(pieces [][]byte, trainer, norm []byte) []byte {
	var b []byte
	for _, p := range pieces {
		b = pbField(b, 1, p)
	}
	if trainer != nil {
		b = pbField(b, 2, trainer)
	}
	if norm != nil {
		b = pbField(b, 3, norm)
	}
	return b
}

func basicPieces() [][]byte {
	return [][]byte{pbPiece("<unk>", 0, typeUnknown), pbPiece("<s>", 0, typeControl), pbPiece("</s>", 0, typeControl),
		pbPiece("▁", -1, typeNormal), pbPiece("a", -2, typeNormal), pbPiece("b", -3, typeNormal), pbPiece("▁ab", -1.5, typeNormal)}
}

func TestParseHandWritten(t *testing.T) {
	for _, bpe := range []bool{false, true} {
		var trainer []byte
		if bpe {
			trainer = pbVarint(nil, 3, modelBPE)
		}
		m, err := Parse(pbModel(basicPieces(), trainer, nil))
		if err != nil {
			t.Fatal(err)
		}
		if m.VocabSize() != 7 || m.UnkID() != 0 || m.BOSID() != 1 || m.EOSID() != 2 || m.PadID() != -1 {
			t.Errorf("bpe=%v: vocab %d unk %d bos %d eos %d pad %d", bpe, m.VocabSize(), m.UnkID(), m.BOSID(), m.EOSID(), m.PadID())
		}
		ids := m.Encode("  ab  c a ")
		// Normalized: "▁ab▁c▁a"; "c" is unknown.
		want := []int32{6, 3, 0, 3, 4}
		if bpe {
			// BPE could reach "▁ab" only through "▁a" or "ab", which are missing.
			want = []int32{3, 4, 5, 3, 0, 3, 4}
		}
		if !equalIDs(ids, want) {
			t.Errorf("bpe=%v: Encode = %v, want %v", bpe, ids, want)
		}
		text, err := m.Decode(ids)
		if err != nil || text != "ab  ⁇  a" {
			t.Errorf("bpe=%v: Decode(%v) = %q, %v", bpe, ids, text, err)
		}
		if _, err := m.Decode([]int32{7}); err == nil {
			t.Errorf("Decode of an id past the vocabulary gave no error")
		}
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseErrors(t *testing.T) {
	p := basicPieces
	withPiece := func(extra ...[]byte) [][]byte { return append(p(), extra...) }
	badType := pbPiece("x", 0, typeNormal)
	badType = pbVarint(badType, 3, 9)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty file", nil, "no pieces"},
		{"not protobuf", []byte("hello, this is text\n"), "malformed model"},
		{"truncated tag", []byte{0x80}, "malformed model"},
		{"truncated piece", pbModel(p(), nil, nil)[:20], "malformed model"},
		{"empty piece", pbModel(withPiece(pbPiece("", 0, typeNormal)), nil, nil), "piece 7 is empty"},
		{"duplicate piece", pbModel(withPiece(pbPiece("a", 0, typeNormal)), nil, nil), `"a" is already defined`},
		{"duplicate control", pbModel(withPiece(pbPiece("<s>", 0, typeUserDefined)), nil, nil), `"<s>" is already defined`},
		{"second unk", pbModel(withPiece(pbPiece("<unk2>", 0, typeUnknown)), nil, nil), "unknown piece is already defined"},
		{"no unk", pbModel(p()[1:], nil, nil), "no unknown piece"},
		{"bad piece type", pbModel(withPiece(badType), nil, nil), "unknown piece type 9"},
		{"byte without fallback", pbModel(withPiece(pbPiece("<0x41>", 0, typeByte)), nil, nil), "byte_fallback is false"},
		{"bad byte piece", pbModel(withPiece(pbPiece("<0x4g>", 0, typeByte)), pbVarint(nil, 35, 1), nil), "not a byte piece"},
		{"missing bytes", pbModel(withPiece(pbPiece("<0x41>", 0, typeByte)), pbVarint(nil, 35, 1), nil), "<0x00> is missing"},
		{"word model", pbModel(p(), pbVarint(nil, 3, modelWord), nil), "WORD is not supported"},
		{"unknown model type", pbModel(p(), pbVarint(nil, 3, 17), nil), "unknown model_type 17"},
		{"short charsmap", pbModel(p(), nil, pbField(nil, 2, []byte{1, 2})), "precompiled_charsmap is too short"},
		{"charsmap size", pbModel(p(), nil, pbField(nil, 2, []byte{0xff, 0, 0, 0, 1, 2, 3, 4})), "trie size out of range"},
		{"truncated trainer", append(pbModel(p(), nil, nil), 0x12, 0x05, 0x18), "trainer_spec"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".model")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load gave no error")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q should name %s and say %q", err, path, c.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.model")); err == nil || !strings.Contains(err.Error(), "missing.model") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// Every truncation of a real model either fails with an error naming the file
// or gives a model that encodes and decodes without panicking.
func TestLoadTruncated(t *testing.T) {
	for _, name := range []string{"bpe_rules", "unigram_identity"} {
		b, err := os.ReadFile("testdata/" + name + ".model")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".model")
		failed := 0
		for n := 0; n < len(b); n += 1 + n/64 {
			if err := os.WriteFile(path, b[:n], 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path)
			if err != nil {
				failed++
				if !strings.Contains(err.Error(), path) {
					t.Errorf("truncated to %d bytes: error %q does not name the file", n, err)
				}
				continue
			}
			exercise(t, m, "Truncated, ﬁne ＡＢＣ 你好 \xff.")
		}
		if failed == 0 {
			t.Errorf("%s: no truncation was rejected", name)
		}
	}
}

// exercise encodes and decodes text, failing on ids out of range or a decode
// error.
func exercise(t *testing.T, m *Model, text string) {
	t.Helper()
	ids := m.Encode(text)
	for _, id := range ids {
		if id < 0 || int(id) >= m.VocabSize() {
			t.Fatalf("Encode(%q) gave id %d, vocabulary %d", text, id, m.VocabSize())
		}
	}
	if _, err := m.Decode(ids); err != nil {
		t.Fatalf("Decode(Encode(%q)): %v", text, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"bpe_rules", "unigram_identity"} {
		b, err := os.ReadFile("testdata/" + name + ".model")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(pbModel(basicPieces(), pbVarint(nil, 3, modelBPE), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		exercise(t, m, "Fuzzed text: ab ﬁ ＡＢＣ 你好 \xff  <sep>")
	})
}

func FuzzEncode(f *testing.F) {
	var models []*Model
	for _, name := range []string{"bpe_rules", "unigram_identity"} {
		m, err := Load("testdata/" + name + ".model")
		if err != nil {
			f.Fatal(err)
		}
		models = append(models, m)
	}
	for _, s := range []string{"", " ", "hello world", "ﬁ ＡＢＣ\u3000x", "\xff\xfe", "<sep>ing", "▁▁", "你好😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range models {
			exercise(t, m, s)
		}
	})
}
