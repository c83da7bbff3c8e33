//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package filestore

import (
	"errors"
	"os"
	"syscall"
)

// openExclusive opens the file for reading and writing and takes an
// exclusive flock on it, without waiting: busy says that another open
// file (in this process or another) holds it. Closing the file releases
// the lock; release has nothing left to do.
func openExclusive(path string) (f *os.File, release func(), busy bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, false, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, true, nil
		}
		return nil, nil, false, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return f, func() {}, false, nil
}
