package roofline

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
)

// Usage is a kernel's per-thread registers and per-block static shared
// memory.
type Usage struct {
	Registers, SharedBytes int
	// Spills are the bytes of spill stores ptxas reported.
	Spills int
}

var (
	entryRE = regexp.MustCompile(`Compiling entry function '([^']+)'`)
	usedRE  = regexp.MustCompile(`Used (\d+) registers(?:, (\d+) bytes smem)?`)
	spillRE = regexp.MustCompile(`(\d+) bytes spill stores`)
)

// ParsePtxas reads the report of `ptxas -v` (its stderr): every entry
// function's registers, shared memory and spill stores, by name.
func ParsePtxas(report string) map[string]Usage {
	out := map[string]Usage{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(report))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if m := entryRE.FindStringSubmatch(l); m != nil {
			cur = m[1]
			out[cur] = Usage{}
			continue
		}
		if cur == "" {
			continue
		}
		u := out[cur]
		if m := spillRE.FindStringSubmatch(l); m != nil {
			u.Spills, _ = strconv.Atoi(m[1])
		}
		if m := usedRE.FindStringSubmatch(l); m != nil {
			u.Registers, _ = strconv.Atoi(m[1])
			if m[2] != "" {
				u.SharedBytes, _ = strconv.Atoi(m[2])
			}
		}
		out[cur] = u
	}
	return out
}
