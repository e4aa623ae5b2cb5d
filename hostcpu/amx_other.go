//go:build !(linux && amd64)

package hostcpu

import "errors"

// RequestAMX reports that AMX tiles are only requested on Linux x86-64,
// the one system whose permission call this package knows.
func RequestAMX() error {
	return errors.New("AMX tile permission is only requested on Linux x86-64")
}
