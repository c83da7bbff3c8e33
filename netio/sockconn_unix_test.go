//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"bytes"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"
)

var goroutineHeader = regexp.MustCompile(`(?m)^goroutine (\d+) `)

// goroutines returns the stacks of all goroutines by id.
func goroutines(t *testing.T) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, block := range bytes.Split(buf.Bytes(), []byte("\n\n")) {
		if m := goroutineHeader.FindSubmatch(block); m != nil {
			out[string(m[1])] = string(block)
		}
	}
	return out
}

// TestSockConnStartsNoGoroutine drives a SIGIO connection through every
// method and checks with goroutine profiles that none started a
// goroutine. os/signal's own process-wide goroutine, which the first
// signal.Notify of the process starts, is started beforehand.
func TestSockConnStartsNoGoroutine(t *testing.T) {
	warm := make(chan os.Signal, 1)
	signal.Notify(warm, syscall.SIGIO)
	signal.Stop(warm)

	client, peer := pair(t, "tcp")
	before := goroutines(t)

	c := WrapConn(client)
	buf := make([]byte, 16)
	if _, err := c.ReadNow(buf); err != nil {
		t.Fatal(err)
	}
	rd, err := c.Arm()
	if err != nil {
		t.Fatal(err)
	}
	write(t, peer, "x")
	select {
	case <-rd.Signal:
	case <-time.After(guard):
		t.Fatal("no SIGIO")
	}
	c.Disarm()
	readNowUntil(t, c, 1)
	if _, err := c.ReadWait(buf, time.Now().Add(time.Millisecond)); err == nil {
		t.Fatal("ReadWait read something")
	}
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	for id, stack := range goroutines(t) {
		if _, ok := before[id]; !ok && !othersGoroutine(stack) {
			t.Errorf("new goroutine:\n%s", stack)
		}
	}
}

// othersGoroutine reports whether a goroutine belongs to neither the
// connection under test nor this test: quic-go timers left by earlier QUIC
// tests of the package (it forgets a closed connection's ids a few
// seconds later) and the runtime's cleanup goroutine.
func othersGoroutine(stack string) bool {
	return strings.Contains(stack, "github.com/quic-go/quic-go") || strings.Contains(stack, "runtime.runCleanups")
}

// TestSIGIOSharedBetweenConns checks that two armed connections each get
// woken, and that closing one does not stop the other's signals.
func TestSIGIOSharedBetweenConns(t *testing.T) {
	c1raw, peer1 := pair(t, "unix")
	c2raw, peer2 := pair(t, "unix")
	c1, c2 := WrapConn(c1raw), WrapConn(c2raw)
	defer c2.Close()
	r1, err := c1.Arm()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c2.Arm()
	if err != nil {
		t.Fatal(err)
	}
	write(t, peer1, "1")
	for _, ch := range []<-chan os.Signal{r1.Signal, r2.Signal} {
		select {
		case <-ch:
		case <-time.After(guard):
			t.Fatal("armed connection not woken")
		}
	}
	c1.Close()
	c2.Disarm()
	if r2, err = c2.Arm(); err != nil {
		t.Fatal(err)
	}
	write(t, peer2, "2")
	select {
	case <-r2.Signal:
	case <-time.After(guard):
		t.Fatal("no SIGIO after another connection closed")
	}
}
