//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package filestore

import (
	"os"
	"path/filepath"
	"sync"
)

// On these systems the store has no lock shared between processes: only
// the Stores of one process exclude each other, by path.
var (
	openMu    sync.Mutex
	openPaths = map[string]bool{}
)

// openExclusive opens the file for reading and writing unless a Store of
// this process has it open (busy). release ends the exclusion, after the
// file is closed.
func openExclusive(path string) (f *os.File, release func(), busy bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, false, err
	}
	openMu.Lock()
	defer openMu.Unlock()
	if openPaths[abs] {
		return nil, nil, true, nil
	}
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, false, err
	}
	openPaths[abs] = true
	return f, func() {
		openMu.Lock()
		defer openMu.Unlock()
		delete(openPaths, abs)
	}, false, nil
}
