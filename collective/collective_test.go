package collective

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSumInRankOrder(t *testing.T) {
	// 1e8 + 1 + (−1e8) is 0 in float32 left to right, 1 in another order:
	// the order is rank 0, 1, 2.
	src := []float32{1e8, 2, 1, 3, -1e8, 4}
	dst := make([]float32, 2)
	sumInRankOrder(dst, src, 3)
	if dst[0] != 0 || dst[1] != 9 {
		t.Errorf("sum = %v, want [0 9]", dst)
	}
}

func TestSingle(t *testing.T) {
	var c Comm = Single{}
	x := []float32{1, 2}
	if err := c.AllReduceSum(x); err != nil || x[0] != 1 || x[1] != 2 || c.Rank() != 0 || c.Size() != 1 {
		t.Errorf("single: %v %v", x, err)
	}
	all, err := c.AllGather([]byte("a"))
	if err != nil || len(all) != 1 || string(all[0]) != "a" {
		t.Errorf("gather: %q %v", all, err)
	}
}

func TestLaunched(t *testing.T) {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	if l := Launched(); l.Launcher != "" {
		t.Errorf("no launcher: %+v", l)
	}
	if c, err := Open(Options{}); err != nil || c.Name() != "single" {
		t.Errorf("Open without a launcher: %v, %v", c, err)
	}
	t.Setenv("PMI_RANK", "0")
	t.Setenv("PMI_SIZE", "2")
	if _, err := Open(Options{}); err == nil || !strings.Contains(err.Error(), "other than Open MPI") {
		t.Errorf("Open under MPICH: %v", err)
	}
	os.Unsetenv("PMI_RANK")
	os.Unsetenv("PMI_SIZE")
	t.Setenv("OMPI_COMM_WORLD_SIZE", "1")
	t.Setenv("OMPI_COMM_WORLD_RANK", "0")
	if c, err := Open(Options{}); err != nil || c.Name() != "single" {
		t.Errorf("mpirun -np 1: %v, %v", c, err)
	}
}

// mpirunEnv lets mpirun run as root (containers, CI).
var mpirunEnv = []string{"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMPI_MCA_btl_base_warn_component_unused=0"}

// runHelper starts np copies of this test binary under mpirun, each running
// the helper test, and returns the output.
func runHelper(t testing.TB, np int, helper string, extraEnv ...string) (string, error) {
	t.Helper()
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun not on PATH (install openmpi-bin): the MPI tests need it")
	}
	cmd := exec.Command(mpirun, "-np", fmt.Sprint(np), "--oversubscribe", "--bind-to", "none",
		os.Args[0], "-test.run=^"+helper+"$", "-test.v")
	cmd.Env = append(append(os.Environ(), mpirunEnv...), append(extraEnv, "SLC_COLLECTIVE_HELPER=1")...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Three real ranks: the sums are the rank-order sums, bit-identical on every
// rank; gathers and broadcasts carry what they should.
func TestMPICollectives(t *testing.T) {
	out, err := runHelper(t, 3, "TestMPIHelper")
	if err != nil || strings.Count(out, "helper ok") != 3 {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
}

func TestMPIHelper(t *testing.T) {
	if os.Getenv("SLC_COLLECTIVE_HELPER") != "1" {
		t.Skip("run by TestMPICollectives under mpirun")
	}
	c, err := Open(Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, n := c.Rank(), c.Size()
	if n != 3 || c.Name() != "mpi" {
		t.Fatalf("rank %d of %d (%s)", r, n, c.Name())
	}
	// A length that does not split evenly into 3 chunks, values whose sum
	// depends on the order.
	val := func(rank, i int) float32 {
		return float32(math.Sin(float64(i*7+rank*13))) * float32(math.Pow(10, float64((i+rank)%9-4)))
	}
	x := make([]float32, 1001)
	for i := range x {
		x[i] = val(r, i)
	}
	if err := c.AllReduceSum(x); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		want := val(0, i)
		for k := 1; k < n; k++ {
			want += val(k, i)
		}
		if math.Float32bits(x[i]) != math.Float32bits(want) {
			t.Fatalf("x[%d] = %v, want %v (rank order)", i, x[i], want)
		}
	}
	h := sha256.Sum256(fmt.Append(nil, x))
	all, err := c.AllGather(h[:])
	if err != nil {
		t.Fatal(err)
	}
	for k := range all {
		if !bytes.Equal(all[k], h[:]) {
			t.Fatalf("rank %d's sum differs from rank %d's", k, r)
		}
	}
	f := []float64{float64(r), 1}
	if err := c.AllReduceSum64(f); err != nil || f[0] != 3 || f[1] != 3 {
		t.Fatalf("AllReduceSum64 = %v, %v", f, err)
	}
	msgs, err := c.AllGather([]byte(strings.Repeat("m", r)))
	if err != nil {
		t.Fatal(err)
	}
	for k, m := range msgs {
		if string(m) != strings.Repeat("m", k) {
			t.Fatalf("gathered %q from rank %d", m, k)
		}
	}
	b := []byte{byte(r), byte(r)}
	if err := c.Broadcast(b, 2); err != nil || b[0] != 2 || b[1] != 2 {
		t.Fatalf("broadcast = %v, %v", b, err)
	}
	fmt.Printf("helper ok %d\n", r)
}

// A rank that never joins a collective: the others' call ends with a
// PeerError within the timeout, not a hang.
func TestMPITimeout(t *testing.T) {
	start := time.Now()
	out, _ := runHelper(t, 2, "TestMPITimeoutHelper")
	if !strings.Contains(out, "timeout ok") {
		t.Fatalf("mpirun:\n%s", out)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestMPITimeoutHelper(t *testing.T) {
	if os.Getenv("SLC_COLLECTIVE_HELPER") != "1" {
		t.Skip("run by TestMPITimeout under mpirun")
	}
	c, err := Open(Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.Rank() == 1 {
		time.Sleep(6 * time.Second) // then exits without a word
		os.Exit(0)
	}
	err = c.AllReduceSum64([]float64{1})
	if _, ok := err.(*PeerError); !ok || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("err = %v", err)
	}
	fmt.Println("timeout ok:", err)
	os.Exit(0)
}

// Abort on one rank ends the others, blocked in a collective, at once.
func TestMPIAbort(t *testing.T) {
	start := time.Now()
	out, err := runHelper(t, 2, "TestMPIAbortHelper")
	if err == nil || strings.Contains(out, "not aborted") {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestMPIAbortHelper(t *testing.T) {
	if os.Getenv("SLC_COLLECTIVE_HELPER") != "1" {
		t.Skip("run by TestMPIAbort under mpirun")
	}
	c, err := Open(Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c.Rank() == 1 {
		c.Abort(3)
	}
	c.AllReduceSum64([]float64{1}) // rank 1 never joins: ended by the abort
	fmt.Println("not aborted")
}
