//go:build !amd64

package hostcpu

// Supported reports whether this CPU has the x86 extension name: never, on a
// CPU that is not x86-64.
func Supported(name string) bool { return false }
