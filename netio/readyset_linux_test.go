//go:build linux

package netio

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// kernelSetSize counts the descriptors registered in the readiness set's
// epoll instance, from /proc/self/fdinfo.
func kernelSetSize(t *testing.T) int {
	t.Helper()
	rset.mu.Lock()
	ps := rset.ps
	rset.mu.Unlock()
	if ps == nil {
		return 0
	}
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(ps.epfd))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "tfd:") {
			n++
		}
	}
	return n
}

// TestReadySetRemovesClosedFDs checks that Close takes the socket out of
// the kernel set itself, even while another descriptor keeps the socket
// open (closing a descriptor only drops the epoll entry once the socket
// is released), and that a new socket that reuses the descriptor number
// is woken for its own bytes.
func TestReadySetRemovesClosedFDs(t *testing.T) {
	base := rset.size()
	araw, apeer := pair(t, "unix")
	a := WrapConn(araw)
	if _, err := a.Arm(); err != nil {
		t.Fatal(err)
	}
	if got, want := kernelSetSize(t), rset.size(); got != want || want != base+1 {
		t.Fatalf("kernel set holds %d descriptors, readiness set %d, want %d", got, want, base+1)
	}
	fd := a.(*sockConn).fdForTest(t)
	dup, err := syscall.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(dup)
	a.Close()
	if got := kernelSetSize(t); got != base || rset.size() != base {
		t.Fatalf("after Close: kernel set holds %d descriptors, readiness set %d, want %d", got, rset.size(), base)
	}
	// Bytes for the closed connection's socket (still open through dup)
	// must not reach anyone.
	write(t, apeer, "stale")

	braw, bpeer := pair(t, "unix")
	b := WrapConn(braw)
	defer b.Close()
	rb, err := b.Arm()
	if err != nil {
		t.Fatal(err)
	}
	if got := kernelSetSize(t); got != base+1 {
		t.Fatalf("kernel set holds %d descriptors, want %d", got, base+1)
	}
	write(t, bpeer, "new")
	if !awaitReady(rb, guard) {
		t.Fatal("new connection not woken")
	}
	if got := readNowUntil(t, b, 3); string(got) != "new" {
		t.Fatalf("read %q", got)
	}
}
