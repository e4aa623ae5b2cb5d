package ir

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir/fbs"
)

// The fuzz targets run their seed corpora (testdata/fuzz/<target>/ and the f.Add
// calls) as ordinary tests; run them for real with
//
//	go test ./ir -run XXX -fuzz FuzzParseBinary -fuzztime 60s
//
// and add every input they find to the corpus.

// seedModule is a small valid module built without a *testing.T, for f.Add.
func seedModule() *Module {
	b := NewBuilder("forward")
	x := b.AddInput("x", T(F32, 2, 4), Data, nil)
	w := b.AddInput("w", T(F32, 3, 4), Param, &Init{Kind: InitNormal, Std: 0.02, Seed: 1})
	g := b.AddInput("w.m", T(F32, 3, 4), OptState, &Init{Kind: InitZeros})
	b.G.Inputs[2].Of = w
	y := b.Op("Linear", nil, x, w)
	y = b.Op("Softmax", Attrs{"axis": Int(-1)}, b.Mul(y, b.Const(math.Inf(1), T(F32))))
	b.Output("y", y)
	b.Output("new_m", b.Add(g, b.Scalar(math.Copysign(0, -1), g)))
	b.G.Outputs[1].Updates = g
	if b.Err() != nil {
		panic(b.Err())
	}
	return &Module{Meta: map[string]string{"model": "seed"}, Graphs: []*Graph{b.G}}
}

func FuzzParseText(f *testing.F) {
	f.Add(seedModule().MarshalText())
	f.Add([]byte(`{"format": "slc-ir/1"}`))
	f.Add([]byte(`{"format": "slc-ir/1", "graphs": [{"name": "g", "inputs": [{"name": "a: b", "type": "f32[]", "role": "param", "init": {"kind": "ones", "seed": 3}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseText(data)
		if err != nil {
			return
		}
		// Every module ParseText accepts, verified or not, must print and read
		// back exactly, in both forms.
		text := m.MarshalText()
		back, err := ParseText(text)
		if err != nil {
			t.Fatalf("printed text does not parse: %v\n%s", err, text)
		}
		if !back.Equal(m) {
			t.Fatalf("text round trip changed the module:\n%s\nvs\n%s", text, back.MarshalText())
		}
		checkBinaryRoundTrip(t, m)
		if err := m.Verify(); err == nil {
			if err := back.Verify(); err != nil {
				t.Fatalf("verified module fails Verify after the round trip: %v", err)
			}
		}
	})
}

func FuzzParseBinary(f *testing.F) {
	bin, err := seedModule().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bin)
	f.Add(bin[:len(bin)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParseBinary(t, data)
		// Almost every mutation breaks the size prefix, which ParseBinary checks
		// first; repair the header so the fuzzer reaches the tables too.
		if len(data) >= fbs.HeaderSize {
			fixed := bytes.Clone(data)
			binary.LittleEndian.PutUint32(fixed, uint32(len(fixed)-4))
			copy(fixed[8:], fbs.FileIdentifier)
			checkParseBinary(t, fixed)
		}
	})
}

// checkParseBinary checks that a module read from binary writes back exactly and
// prints text that reads back.
func checkParseBinary(t *testing.T, data []byte) {
	t.Helper()
	m, err := ParseBinary(data)
	if err != nil {
		return
	}
	checkBinaryRoundTrip(t, m)
	// The text form cannot keep a NaN's payload, so the module need not come
	// back Equal; the text must still read back and print the same.
	text := m.MarshalText()
	back, err := ParseText(text)
	if err != nil {
		t.Fatalf("a module read from binary prints text that does not parse: %v\n%s", err, text)
	}
	if again := back.MarshalText(); !bytes.Equal(again, text) {
		t.Fatalf("text of a binary module is not stable:\n%s\nvs\n%s", text, again)
	}
}

// checkBinaryRoundTrip checks that a parsed module writes, reads back Equal, and
// writes the same bytes again.
func checkBinaryRoundTrip(t *testing.T, m *Module) {
	t.Helper()
	bin, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("a parsed module cannot be written: %v", err)
	}
	back, err := ParseBinary(bin)
	if err != nil {
		t.Fatalf("written binary does not parse: %v", err)
	}
	if !back.Equal(m) {
		t.Fatalf("binary round trip changed the module:\n%s\nvs\n%s", m.MarshalText(), back.MarshalText())
	}
	again, err := back.MarshalBinary()
	if err != nil || !bytes.Equal(again, bin) {
		t.Fatalf("binary form is not canonical (err %v)", err)
	}
}

// The corpus files named valid-* must stay valid as the formats evolve, or the
// fuzzers lose their best starting points without anyone noticing.
func TestFuzzCorpusValidSeeds(t *testing.T) {
	for target, parse := range map[string]func([]byte) (*Module, error){
		"FuzzParseText":   ParseText,
		"FuzzParseBinary": ParseBinary,
	} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "valid-*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no valid-* seeds (%v)", target, err)
		}
		for _, file := range files {
			data, err := readCorpusFile(file)
			if err != nil {
				t.Fatal(err)
			}
			m, err := parse(data)
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			if err := m.Verify(); err != nil {
				t.Errorf("%s: %v", file, err)
			}
		}
	}
}

// readCorpusFile reads a one-value "go test fuzz v1" file holding a []byte.
func readCorpusFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		return nil, &os.PathError{Op: "read corpus", Path: path, Err: os.ErrInvalid}
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	return []byte(s), err
}
