// Package bench times full training steps (train_step + update) of
// compiled programs on random tokens, decides which SLTrain lowerings slc
// bench compares, reads the settings a compiled artifact fixes, and runs
// the PyTorch baseline (tools/torchref/bench.py) on the model a compiled
// module describes. cmd/slc's bench parses the flags and prints.
package bench
