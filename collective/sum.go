package collective

import "os"

// sumInRankOrder sets dst[i] to src[i] + src[c+i] + … + src[(n−1)·c+i]
// (c = len(dst)), added left to right: rank 0's value, plus rank 1's, and
// so on, the order one process accumulating the ranks' micro-batches one
// after the other adds them in.
func sumInRankOrder(dst, src []float32, n int) {
	c := len(dst)
	copy(dst, src[:c])
	for r := 1; r < n; r++ {
		part := src[r*c : (r+1)*c]
		for i, v := range part {
			dst[i] += v
		}
	}
}

// exit ends the process (a variable for nothing but clarity: Abort's last
// resort).
var exit = os.Exit

// Padded is n rounded up to a multiple of size: a buffer of that length
// (zeros at the end) is summed in place, without a copy.
func Padded(n, size int) int {
	return (n + size - 1) / size * size
}
