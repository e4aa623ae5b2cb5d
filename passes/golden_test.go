package passes

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const goldenDir = "testdata/golden"

// goldenAnalyses print the results that analysis passes record in the State,
// next to the IR golden of the pass (as <pass>.<ext>).
var goldenAnalyses = []struct {
	pass, ext string
	dump      func(s *State) []byte
}{
	{"fuse-groups", "groups.txt", func(s *State) []byte {
		var b bytes.Buffer
		for _, g := range s.Module.Graphs {
			b.WriteString("graph " + g.Name + "\n" + FormatGroups(s.Groups[g.Name]) + "\n")
		}
		return b.Bytes()
	}},
	{"memory-plan", "plan.txt", func(s *State) []byte {
		var b bytes.Buffer
		WriteMemoryReport(&b, NamedUsage{"llama_tiny sltrain", s.Memory})
		for _, g := range s.Module.Graphs {
			b.WriteString("\n" + FormatPlan(s.Plans[g.Name]))
		}
		return b.Bytes()
	}},
}

// TestGoldenAfterEachPass runs the whole pipeline on llama_tiny (batch 2,
// sequence 8, SLTrain r 4, δ 0.1) with verification and compares the IR text
// after every pass with testdata/golden/<pass>.json, and the analyses' results
// with their own files. A pass that leaves the IR as it was has a one-line
// golden, {"same_as": "<pass>"}, naming the file that holds that text, so
// the directory stays reviewable. go test ./passes -update rewrites them; a pass added
// to Pipeline gets its golden file the same way.
func TestGoldenAfterEachPass(t *testing.T) {
	s := llamaState(t, "llama_tiny", "sltrain", 2, 8)
	s.Verify = true
	want := map[string]bool{}
	var prev []byte   // the IR text after the previous pass
	var holder string // the pass whose golden file holds prev in full
	for _, p := range Pipeline {
		if err := Run(s, []Pass{p}); err != nil {
			t.Fatal(err)
		}
		name := p.Name + ".json"
		want[name] = true
		text := s.Module.MarshalText()
		if bytes.Equal(text, prev) {
			compareGolden(t, name, []byte(`{"same_as": "`+holder+`"}`+"\n"))
		} else {
			compareGolden(t, name, text)
			prev, holder = text, p.Name
		}
		for _, a := range goldenAnalyses {
			if a.pass == p.Name {
				name := p.Name + "." + a.ext
				want[name] = true
				compareGolden(t, name, a.dump(s))
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*"))
	for _, f := range files {
		if base := filepath.Base(f); !want[base] {
			if *update {
				os.Remove(f)
				continue
			}
			t.Errorf("%s belongs to no pass of the pipeline (run go test ./passes -update)", f)
		}
	}
}

// compareGolden checks got against testdata/golden/name (or rewrites it).
func compareGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./passes -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./passes -update and review the diff):\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n  want " + a + "\n  got  " + b
		}
	}
	return ""
}
