//go:build !amd64

package hostcpu

// Identity names this CPU for caches of measurements: on a CPU that is not
// x86-64, only its architecture.
func Identity() string { return "not x86-64" }
