// Package version holds slc's release number, so the CLI, artifacts and logs
// all report the same one.
package version

import (
	"runtime/debug"
	"strings"
)

// Version is slc's semantic version.
const Version = "0.1.0"

// String returns Version followed by the VCS revision the binary was built from,
// when the Go toolchain recorded one (e.g. "0.1.0 (3f2a9c1d8e4b, modified)"):
// enough to tell two builds of the same release apart in a bug report.
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	return withRevision(info.Settings)
}

// withRevision formats Version with the vcs.revision and vcs.modified settings.
func withRevision(settings []debug.BuildSetting) string {
	var rev string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return Version
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	var b strings.Builder
	b.WriteString(Version + " (" + rev)
	if modified {
		b.WriteString(", modified")
	}
	b.WriteString(")")
	return b.String()
}
