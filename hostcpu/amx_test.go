package hostcpu

import "testing"

// TestRequestAMX asks for the tile state for real: Linux grants it where
// CPUID and XGETBV report AMX (kernel 5.16 or later) and refuses it where
// they do not, so the runtime's refusal path is the one taken there.
func TestRequestAMX(t *testing.T) {
	err := RequestAMX()
	has := Supported("amx-tile")
	t.Logf("amx-tile %v, RequestAMX: %v", has, err)
	if !has && err == nil {
		t.Error("RequestAMX succeeded on a host without amx-tile")
	}
	if again := RequestAMX(); (again == nil) != (err == nil) {
		t.Errorf("second request: %v, first %v", again, err)
	}
}
