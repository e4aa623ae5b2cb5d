package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestWithRevision(t *testing.T) {
	for _, c := range []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"none", nil, "0.1.0"},
		{"clean", []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}}, "0.1.0 (0123456789ab)"},
		{"modified", []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}, "0.1.0 (abc, modified)"},
		{"modified without revision", []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}, "0.1.0"},
	} {
		if got := withRevision(c.settings); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestStringStartsWithVersion(t *testing.T) {
	if s := String(); !strings.HasPrefix(s, Version) {
		t.Fatalf("String() = %q does not start with %q", s, Version)
	}
}
