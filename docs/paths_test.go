package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// codeSpan is a Markdown code span: `text`.
var codeSpan = regexp.MustCompile("`([^`\n]+)`")

// pathLike reports whether a code span names a file or directory of the
// repository: it holds a slash or ends in a source extension, and is one
// word that is not a flag. Templates (`passes/optimizer_<name>.go`) are
// left out.
func pathLike(s string) bool {
	if strings.ContainsAny(s, " <>*{}") || strings.HasPrefix(s, "-") || strings.Contains(s, "://") {
		return false
	}
	if strings.Contains(s, "/") {
		return true
	}
	switch filepath.Ext(s) {
	case ".go", ".md", ".fbs", ".sh", ".py":
		return true
	}
	return false
}

func readArchitecture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestArchitecturePathsExist: every file and directory ARCHITECTURE.md
// names in a code span exists, relative to the repository root.
func TestArchitecturePathsExist(t *testing.T) {
	doc := readArchitecture(t)
	n := 0
	for _, m := range codeSpan.FindAllStringSubmatch(doc, -1) {
		p := m[1]
		if !pathLike(p) {
			continue
		}
		n++
		if _, err := os.Stat(filepath.Join("..", filepath.FromSlash(p))); err != nil {
			t.Errorf("ARCHITECTURE.md names %s, which does not exist (moved? update the page)", p)
		}
	}
	if n < 40 {
		t.Errorf("found only %d paths in ARCHITECTURE.md; is the code-span pattern still right?", n)
	}
}

// TestEveryPackageHasAParagraph: every package of the module has its
// paragraph in ARCHITECTURE.md, opened by its path in bold code.
func TestEveryPackageHasAParagraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	doc := readArchitecture(t)
	for p := range moduleImports(t) {
		if !strings.Contains(doc, "**`"+p+"`**") {
			t.Errorf("package %s has no paragraph in ARCHITECTURE.md (want one opening with **`%s`**)", p, p)
		}
	}
}
