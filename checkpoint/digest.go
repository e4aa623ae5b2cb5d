package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// A checkpoint records the SHA-256 of each of its files in
// training_state.json ("sha256": {"model.safetensors": …}), and of the state
// file itself ("state_sha256", computed over the file with that value
// written as 64 zeros). Load checks them all before it returns anything, so
// a flipped bit anywhere is an error naming the file, never weights that
// load silently. A checkpoint written before slc had checksums has neither
// field: Load reads it and sets Checkpoint.Unverified, and the commands say
// so in one warning line.

// stateSumKey is how the state file spells its own digest's key (as
// json.MarshalIndent writes it).
const stateSumKey = `"state_sha256": "`

var zeroSum = strings.Repeat("0", 2*sha256.Size)

// hashing wraps a DirFile writer so that it records the SHA-256 of what it
// writes in sums[name].
func hashing(f DirFile, sums map[string]string) DirFile {
	write := f.Write
	return DirFile{Name: f.Name, Write: func(w io.Writer) error {
		h := sha256.New()
		if err := write(io.MultiWriter(w, h)); err != nil {
			return err
		}
		sums[f.Name] = hex.EncodeToString(h.Sum(nil))
		return nil
	}}
}

// sealState writes the state file's own digest into its JSON text, which
// holds it as 64 zeros.
func sealState(text []byte) ([]byte, error) {
	zeros := []byte(stateSumKey + zeroSum + `"`)
	if bytes.Count(text, zeros) != 1 {
		return nil, fmt.Errorf("%s: cannot place its checksum", StateFile)
	}
	sum := sha256.Sum256(text)
	return bytes.Replace(text, zeros, []byte(stateSumKey+hex.EncodeToString(sum[:])+`"`), 1), nil
}

// checkStateSum checks the state file's text against the digest it holds.
func checkStateSum(text []byte, want string) error {
	key := []byte(stateSumKey + want + `"`)
	if len(want) != 2*sha256.Size || bytes.Count(text, key) != 1 {
		return errMismatch
	}
	sum := sha256.Sum256(bytes.Replace(text, key, []byte(stateSumKey+zeroSum+`"`), 1))
	if hex.EncodeToString(sum[:]) != want {
		return errMismatch
	}
	return nil
}

// errMismatch is a file whose bytes are not the ones Save wrote.
var errMismatch = fmt.Errorf("checksum mismatch: the file changed after it was saved (a bad disk, copy or edit); use another checkpoint")

// checkSum checks a file's bytes against the state's record of it.
func checkSum(sums map[string]string, name string, data []byte) error {
	want, ok := sums[name]
	if !ok {
		return fmt.Errorf("not in the checkpoint's checksums (%s lists %d files); a file added after the save", StateFile, len(sums))
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != want {
		return errMismatch
	}
	return nil
}
