package data

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The fuzz target runs its seed corpus (testdata/fuzz/FuzzNpyHeader and the f.Add
// calls) as an ordinary test; run it for real with
//
//	go test ./data -run XXX -fuzz FuzzNpyHeader -fuzztime 60s
//
// and add every input it finds to the corpus.

// encodeNpyHeader writes a header that says what h says, in h's format version.
func encodeNpyHeader(h npyHeader) []byte {
	dims := make([]string, len(h.shape))
	for i, d := range h.shape {
		dims[i] = fmt.Sprint(d)
	}
	shape := "(" + strings.Join(dims, ", ") + ")"
	if len(dims) == 1 {
		shape = "(" + dims[0] + ",)"
	}
	order := "False"
	if h.fortran {
		order = "True"
	}
	return npyBytes(h.major, fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", h.descr, order, shape), nil)
}

func FuzzNpyHeader(f *testing.F) {
	f.Add(npyBytes(1, npyDict("<u2", "(1000,)"), le(2, 1, 2)))
	f.Add(npyBytes(2, npyDict("<i8", "(3, 4)"), nil))
	f.Add(npyBytes(3, `{"descr":"<u4","shape":(),"fortran_order":True}`, nil))
	f.Add(npyBytes(1, npyDict("<f4", "(1,)"), nil))
	f.Add([]byte("\x93NUMPY\x01\x00\xff\xff{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseNpyHeader(data)
		if err != nil {
			return
		}
		if h.offset > int64(len(data)) || h.count < 0 || h.count > maxTokens {
			t.Fatalf("accepted header with offset %d (of %d bytes), count %d", h.offset, len(data), h.count)
		}
		// Whatever the parser accepts, a header written from its reading must
		// read back the same, and readNpyHeader must agree with parseNpyHeader.
		enc := encodeNpyHeader(h)
		back, err := parseNpyHeader(enc)
		if err != nil {
			t.Fatalf("re-encoded header does not parse: %v\n%q", err, enc)
		}
		if back.descr != h.descr || back.kind != h.kind || back.fortran != h.fortran || !slices.Equal(back.shape, h.shape) || back.count != h.count {
			t.Fatalf("round trip changed the header: %+v vs %+v", h, back)
		}
		r, err := readNpyHeader(bytes.NewReader(data))
		if err != nil || r.offset != h.offset || r.count != h.count {
			t.Fatalf("readNpyHeader gives %+v, %v; parseNpyHeader %+v", r, err, h)
		}
	})
}

func TestParseNpyHeader(t *testing.T) {
	for _, c := range []struct {
		name, dict string
		major      byte
		want       string // error substring; "" for success
		shape      []int64
		count      int64
	}{
		{"numpy's own form", npyDict("<u2", "(7,)"), 1, "", []int64{7}, 7},
		{"keys in any order, no trailing comma", `{'shape': (2, 3), 'descr': '<i4', 'fortran_order': False}`, 2, "", []int64{2, 3}, 6},
		{"zero dimension", npyDict("<u2", "(4, 0)"), 1, "", []int64{4, 0}, 0},
		{"scalar", npyDict("<u2", "()"), 1, "", []int64{}, 1},
		{"(n) is not a tuple", npyDict("<u2", "(7)"), 1, "not a tuple", nil, 0},
		{"negative dimension", npyDict("<u2", "(-1,)"), 1, "non-negative integer", nil, 0},
		{"huge shape", npyDict("<u2", "(1099511627776, 2)"), 1, "more than", nil, 0},
		{"dimension overflows int64", npyDict("<u2", "(99999999999999999999,)"), 1, "too large", nil, 0},
		{"missing key", `{'descr': '<u2', 'shape': (1,)}`, 1, `no "fortran_order" key`, nil, 0},
		{"unknown key", `{'descr': '<u2', 'fortran_order': False, 'shape': (1,), 'x': 1}`, 1, `unknown key "x"`, nil, 0},
		{"duplicate key", `{'descr': '<u2', 'descr': '<u2', 'fortran_order': False, 'shape': (1,)}`, 1, "twice", nil, 0},
		{"structured dtype", `{'descr': [('a', '<u2')], 'fortran_order': False, 'shape': (1,)}`, 1, "descr", nil, 0},
		{"bad boolean", `{'descr': '<u2', 'fortran_order': 0, 'shape': (1,)}`, 1, "True or False", nil, 0},
		{"garbage after the dict", npyDict("<u2", "(1,)") + "x", 1, "after the dict", nil, 0},
		{"unterminated string", `{'descr: '<u2'}`, 1, "", nil, 0}, // some error
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := parseNpyHeader(npyBytes(c.major, c.dict, nil))
			if c.shape == nil {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %+v, %v; want an error containing %q", h, err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(h.shape, c.shape) || h.count != c.count || h.offset%64 != 0 {
				t.Fatalf("got shape %v count %d offset %d", h.shape, h.count, h.offset)
			}
		})
	}
}

func TestParseNpyHeaderLength(t *testing.T) {
	b := []byte("\x93NUMPY\x02\x00\x00\x00\x00\x01") // version 2, 16 MiB header
	if _, err := parseNpyHeader(b); err == nil || !strings.Contains(err.Error(), "implausible") {
		t.Fatalf("got %v", err)
	}
	if _, err := readNpyHeader(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "implausible") {
		t.Fatalf("got %v", err)
	}
}
