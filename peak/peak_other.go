//go:build !amd64

package peak

func supported(p Path) bool { return p == PathGo }

func best() Path { return PathGo }

func runAsm(p Path, n int, acc *Accumulators, x, y float32) { runGo(n, acc, x, y) }
