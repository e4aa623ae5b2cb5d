package hostcpu

import (
	"fmt"
	"sync"
	"syscall"
)

// Linux's arch_prctl request for permission to use an extended state
// component, and the component of the AMX tile data.
const (
	archReqXcompPerm  = 0x1023
	xfeatureXtiledata = 18
)

// RequestAMX asks Linux, once per process, for permission to use the AMX
// tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)): without
// it the first tile instruction ends in SIGILL. The permission covers every
// thread of the process, those Go starts later included. It returns the
// kernel's refusal (an old kernel, or a CPU without AMX) as an error.
func RequestAMX() error { return requestAMX() }

var requestAMX = sync.OnceValue(func() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureXtiledata, 0); errno != 0 {
		return fmt.Errorf("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): %w", errno)
	}
	return nil
})
