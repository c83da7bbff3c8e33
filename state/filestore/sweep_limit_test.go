//go:build linux && !race

package filestore

import "syscall"

// limitChildMemory caps a sweep child's address space, so that a damaged
// file that makes the code under test allocate without bound kills the
// child (counted as a crash) rather than exhausting the machine. The race
// detector reserves terabytes of address space, so it is left out there.
func limitChildMemory() {
	const limit = 4 << 30
	syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit})
}
