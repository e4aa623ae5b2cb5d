package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	irfbs "gitee.com/gidean/conv-linn/ir/fbs"
)

// A .slc file ends with a checksum trailer after its FlatBuffer, so that a
// flipped bit anywhere (a bad disk, a bad copy, an edit) is caught before
// anything in the file is trusted, and in particular before its native code
// is mapped:
//
//	magic "SLCSUM1\n" | SHA-256 of the FlatBuffer (size prefix included) | SHA-256 of Code
//
// The code's own digest lets the runtime check Code again right before it
// maps it (Artifact.CodeSHA256).
const (
	trailerMagic = "SLCSUM1\n"
	// TrailerSize is the size of the checksum trailer.
	TrailerSize = len(trailerMagic) + 2*sha256.Size
)

// seal appends the checksum trailer to a marshalled FlatBuffer.
func seal(body, code []byte) []byte {
	sum, csum := sha256.Sum256(body), sha256.Sum256(code)
	out := make([]byte, 0, len(body)+TrailerSize)
	out = append(out, body...)
	out = append(out, trailerMagic...)
	out = append(out, sum[:]...)
	return append(out, csum[:]...)
}

// unseal checks a file's identifier, size and checksum, and returns its
// FlatBuffer and the digest it records for the code. A file without a
// trailer (written before slc had checksums) is refused: artifacts are
// cheap to recompile, and the runtime maps their code.
func unseal(data []byte) (body []byte, codeSum [sha256.Size]byte, err error) {
	if len(data) < irfbs.HeaderSize {
		return nil, codeSum, irfbs.CheckHeader(data, FileIdentifier, "a .slc artifact", "corrupt artifact")
	}
	if id := string(data[8:12]); id != FileIdentifier {
		return nil, codeSum, irfbs.CheckHeader(data, FileIdentifier, "a .slc artifact", "corrupt artifact")
	}
	n := int64(binary.LittleEndian.Uint32(data)) + 4
	total := n + int64(TrailerSize)
	switch {
	case n == int64(len(data)):
		return nil, codeSum, fmt.Errorf("corrupt artifact: no checksum (written by an slc older than checksums, or cut short); recompile the model")
	case total > int64(len(data)):
		return nil, codeSum, fmt.Errorf("corrupt artifact: truncated: %d bytes, the header says %d", len(data), total)
	case total < int64(len(data)):
		return nil, codeSum, fmt.Errorf("corrupt artifact: %d bytes of trailing data after the %d the header declares", int64(len(data))-total, total)
	}
	body, tr := data[:n], data[n:]
	if string(tr[:len(trailerMagic)]) != trailerMagic {
		return nil, codeSum, fmt.Errorf("corrupt artifact: the checksum trailer is damaged")
	}
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], tr[len(trailerMagic):len(trailerMagic)+sha256.Size]) {
		return nil, codeSum, fmt.Errorf("corrupt artifact: checksum mismatch: the file changed after slc wrote it (a bad disk, copy or edit); recompile the model or copy it again")
	}
	copy(codeSum[:], tr[len(trailerMagic)+sha256.Size:])
	return body, codeSum, nil
}

// CheckCode checks Code against CodeSHA256 when it is set (by Unmarshal):
// the runtime calls it before it maps the code, so that no bytes but the
// ones the compiler wrote ever run.
func (a *Artifact) CheckCode() error {
	var zero [sha256.Size]byte
	if a.CodeSHA256 == zero {
		return nil // built in memory by the compiler, never stored
	}
	if sha256.Sum256(a.Code) != a.CodeSHA256 {
		return fmt.Errorf("corrupt artifact: the native code does not match its checksum")
	}
	return nil
}
