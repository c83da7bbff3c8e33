//go:build race

package eventloop_test

// raceEnabled: the race detector slows the heap tests' 16 MiB decodes
// tenfold, so they measure smaller packets (the bounds are ratios).
const raceEnabled = true
