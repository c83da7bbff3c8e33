//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
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
	if !awaitReady(rd, guard) {
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

// TestReadinessWakesOnlyTheReadyConn checks that bytes for one armed
// connection wake that connection and not another armed one, and that
// closing one does not stop the other's wakeups.
func TestReadinessWakesOnlyTheReadyConn(t *testing.T) {
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
	if r1.Shared == nil || r1.Shared != r2.Shared {
		t.Fatal("SIGIO connections must share the process's one signal channel")
	}
	write(t, peer1, "1")
	if !awaitReady(r1, guard) {
		t.Fatal("armed connection with bytes not woken")
	}
	// The dispatch that woke c1 found only c1's socket ready.
	select {
	case <-r2.Signal:
		t.Fatal("connection without bytes woken")
	default:
	}
	c1.Close()
	c2.Disarm()
	if r2, err = c2.Arm(); err != nil {
		t.Fatal(err)
	}
	write(t, peer2, "2")
	if !awaitReady(r2, guard) {
		t.Fatal("no wakeup after another connection closed")
	}
}

// TestReadySetManyConns runs 200 connections in one process, each
// waited on by its own goroutine the way the event loop waits (arm, read
// once more, select on its channel and the shared one, dispatch). Every
// waiter must get exactly the bytes written to its own peer, round after
// round; once all are closed the readiness set is empty.
func TestReadySetManyConns(t *testing.T) {
	const conns, rounds = 200, 5
	base := rset.size()
	type conn struct {
		c    Conn
		peer net.Conn
	}
	cs := make([]conn, conns)
	for i := range cs {
		c, peer := pair(t, "tcp")
		cs[i] = conn{WrapConn(c), peer}
	}
	// Sockets join the set at their first Arm. A waiter whose goroutine
	// starts after all its rounds arrived reads them without arming, so
	// every connection arms once here, before anything is written.
	for _, c := range cs {
		if _, err := c.c.Arm(); err != nil {
			t.Fatal(err)
		}
		c.c.Disarm()
	}
	if got := rset.size(); got != base+conns {
		t.Fatalf("after arming, the readiness set holds %d sockets, want %d", got, base+conns)
	}
	results := make(chan error, conns)
	for i, c := range cs {
		want := ""
		for r := range rounds {
			want += fmt.Sprintf("<%d.%d>", i, r)
		}
		go func() { results <- waitFor(c.c, want) }()
	}
	for r := range rounds {
		// Rounds go to the connections in a different order each time.
		for j := range cs {
			i := (j*7 + r*31) % conns
			write(t, cs[i].peer, fmt.Sprintf("<%d.%d>", i, r))
		}
	}
	for range cs {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if got := rset.size(); got != base+conns {
		t.Errorf("readiness set holds %d sockets, want %d", got, base+conns)
	}
	for _, c := range cs {
		c.c.Close()
	}
	if got := rset.size(); got != base {
		t.Errorf("after closing every connection the readiness set holds %d sockets, want %d", got, base)
	}
}

// waitFor reads c the event loop's way until it has read want, and
// reports an error if it read anything else or waited longer than guard.
func waitFor(c Conn, want string) error {
	var got []byte
	buf := make([]byte, 64)
	deadline := time.Now().Add(guard)
	for len(got) < len(want) {
		n, err := c.ReadNow(buf)
		if err != nil {
			return err
		}
		if n > 0 {
			got = append(got, buf[:n]...)
			continue
		}
		rd, err := c.Arm()
		if err != nil {
			return err
		}
		if n, err = c.ReadNow(buf); err != nil || n > 0 {
			c.Disarm()
			got = append(got, buf[:n]...)
			if err != nil {
				return err
			}
			continue
		}
		if !awaitReady(rd, time.Until(deadline)) {
			return fmt.Errorf("no wakeup: read %q of %q", got, want)
		}
		c.Disarm()
	}
	if string(got) != want {
		return fmt.Errorf("read %q, want %q", got, want)
	}
	return nil
}

// TestNoLostWakeup races a writer against the arm-read-wait sequence: the
// writer sends each byte as soon as the reader confirmed the previous
// one, so bytes land before, during and after Arm. A byte that landed
// before arming and raised no signal must still be read (the read after
// Arm), and one that landed after must wake the reader; a lost wakeup
// makes the reader wait until guard.
func TestNoLostWakeup(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			craw, peer := pair(t, network)
			c := WrapConn(craw)
			defer c.Close()
			const n = 2000
			ack, werr := drip(peer, n)
			buf := make([]byte, 8)
			for i := range n {
				for {
					m, err := c.ReadNow(buf)
					if err != nil {
						t.Fatal(err)
					}
					if m == 0 {
						rd, err := c.Arm()
						if err != nil {
							t.Fatal(err)
						}
						if m, err = c.ReadNow(buf); err != nil {
							t.Fatal(err)
						}
						if m == 0 && !awaitReady(rd, guard) {
							t.Fatalf("byte %d: lost wakeup", i)
						}
						c.Disarm()
					}
					if m > 0 {
						if m != 1 || buf[0] != byte(i) {
							t.Fatalf("byte %d: read %v", i, buf[:m])
						}
						break
					}
				}
				ack <- struct{}{}
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// drip writes n bytes to peer (0, 1, 2, ...), each once the reader
// confirmed the previous one on ack, so that they land before, during and
// after the reader begins to wait; werr gets the outcome.
func drip(peer net.Conn, n int) (ack chan struct{}, werr chan error) {
	ack, werr = make(chan struct{}), make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := peer.Write([]byte{byte(i)}); err != nil {
				werr <- err
				return
			}
			<-ack
		}
		werr <- nil
	}()
	return ack, werr
}

// fdForTest returns the socket's descriptor number.
func (s *sockConn) fdForTest(t *testing.T) int {
	t.Helper()
	fd := -1
	if err := s.rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestReadWaitBatch: a batched wait returns what arrived by the deadline
// even below the low-water mark, returns at once when enough arrived, and
// leaves nothing behind that would silence the next Arm (a socket still
// at a high SO_RCVLOWAT raises no SIGIO for a single byte).
func TestReadWaitBatch(t *testing.T) {
	craw, peer := pair(t, "tcp")
	c := WrapConn(craw)
	defer c.Close()
	br, ok := c.(BatchReader)
	if !ok {
		t.Fatal("TCP Conn is not a BatchReader")
	}
	buf := make([]byte, 4096)
	if n, err := br.ReadWaitBatch(buf, 1000, time.Now().Add(20*time.Millisecond)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nothing sent: ReadWaitBatch = %d, %v", n, err)
	}
	write(t, peer, "few")
	if n, err := br.ReadWaitBatch(buf, 1000, time.Now().Add(20*time.Millisecond)); err != nil || string(buf[:n]) != "few" {
		t.Fatalf("below the mark: ReadWaitBatch = %q, %v", buf[:n], err)
	}
	many := strings.Repeat("m", 1500)
	write(t, peer, many)
	got := ""
	for len(got) < len(many) {
		n, err := br.ReadWaitBatch(buf, 1000, time.Now().Add(guard))
		if err != nil {
			t.Fatalf("above the mark: %v after %d bytes", err, len(got))
		}
		got += string(buf[:n])
	}
	if got != many {
		t.Fatalf("read %d bytes, want %d", len(got), len(many))
	}
	rd, err := c.Arm()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadNow(buf); n != 0 || err != nil {
		t.Fatalf("ReadNow after Arm = %d, %v", n, err)
	}
	write(t, peer, "1")
	if !awaitReady(rd, guard) {
		t.Fatal("no wakeup for one byte after a batched read")
	}
	if got := readNowUntil(t, c, 1); string(got) != "1" {
		t.Fatalf("read %q", got)
	}
}

// TestInterruptWait: InterruptWait from another goroutine ends a ReadWait
// whose deadline is far off, and the past deadline it leaves behind ends
// at most one more wait (a cut made after the first wait ended counts for
// the next one); the wait after that reads what arrives.
func TestInterruptWait(t *testing.T) {
	craw, peer := pair(t, "tcp")
	c := WrapConn(craw)
	defer c.Close()
	wi, ok := c.(WaitInterrupter)
	if !ok {
		t.Fatal("TCP Conn is not a WaitInterrupter")
	}
	done, poked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(poked)
		for {
			select {
			case <-done:
				return
			default:
				wi.InterruptWait()
			}
		}
	}()
	buf := make([]byte, 16)
	deadline := time.Now().Add(time.Hour)
	n, err := c.ReadWait(buf, deadline)
	close(done)
	<-poked
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("interrupted ReadWait = %d, %v", n, err)
	}
	write(t, peer, "x")
	// Interrupts made after the wait ended may end the next wait at once
	// (they might have been meant for it); the one after that reads.
	n, err = c.ReadWait(buf, deadline)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		n, err = c.ReadWait(buf, deadline)
	}
	if err != nil || string(buf[:n]) != "x" {
		t.Fatalf("ReadWait after an interrupt = %q, %v", buf[:n], err)
	}
}

// TestInterruptBeforeWait: a cut made before the wait begins is not lost
// (the event loop announces a park, then parks; a cut may come between),
// for each way of waiting; it is used up by that wait.
func TestInterruptBeforeWait(t *testing.T) {
	craw, peer := pair(t, "tcp")
	c := WrapConn(craw)
	defer c.Close()
	buf := make([]byte, 16)
	deadline := time.Now().Add(time.Hour)
	waits := map[string]func() (int, error){
		"ReadWait":      func() (int, error) { return c.ReadWait(buf, deadline) },
		"ReadWaitBatch": func() (int, error) { return c.(BatchReader).ReadWaitBatch(buf, 8, deadline) },
		"WaitReadable":  func() (int, error) { return 0, c.(ReadableWaiter).WaitReadable(deadline) },
	}
	for name, wait := range waits {
		c.(WaitInterrupter).InterruptWait()
		if n, err := wait(); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s after an earlier InterruptWait = %d, %v; want an immediate os.ErrDeadlineExceeded", name, n, err)
		}
		write(t, peer, "x")
		if n, err := c.ReadWait(buf, deadline); err != nil || string(buf[:n]) != "x" {
			t.Fatalf("ReadWait after %s's cut = %q, %v", name, buf[:n], err)
		}
	}
}

// TestWaitReadable: the wait ends for bytes written before or during it
// and for the peer's close, without taking anything (the read after it
// gets every byte), and ends at its deadline or when cut.
func TestWaitReadable(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			craw, peer := pair(t, network)
			c := WrapConn(craw)
			defer c.Close()
			rw := c.(ReadableWaiter)
			far := time.Now().Add(time.Hour)
			buf := make([]byte, 16)

			write(t, peer, "ab")
			if err := rw.WaitReadable(far); err != nil {
				t.Fatalf("bytes written before: %v", err)
			}
			if err := rw.WaitReadable(far); err != nil {
				t.Fatalf("the wait took bytes: %v", err)
			}
			if n, err := c.ReadNow(buf); err != nil || string(buf[:n]) != "ab" {
				t.Fatalf("ReadNow after the wait = %q, %v", buf[:n], err)
			}

			waited := make(chan error, 1)
			go func() { waited <- rw.WaitReadable(far) }()
			write(t, peer, "c")
			if err := <-waited; err != nil {
				t.Fatalf("bytes written during: %v", err)
			}
			if n, err := c.ReadNow(buf); err != nil || string(buf[:n]) != "c" {
				t.Fatalf("ReadNow = %q, %v", buf[:n], err)
			}

			if err := rw.WaitReadable(time.Now().Add(10 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("nothing sent, deadline: %v", err)
			}

			go func() { waited <- rw.WaitReadable(far) }()
			c.(WaitInterrupter).InterruptWait()
			if err := <-waited; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("cut: %v", err)
			}

			peer.Close()
			if err := rw.WaitReadable(far); err != nil {
				t.Fatalf("peer closed: %v", err)
			}
			if _, err := c.ReadNow(buf); !errors.Is(err, io.EOF) {
				t.Fatalf("ReadNow after the peer closed = %v; want EOF", err)
			}
		})
	}
}

// TestWaitReadableNoLostWakeup: 2,000 bytes, each written the moment the
// reader confirmed the previous one, so that they land before, during and
// after the wait begins; every one ends a wait.
func TestWaitReadableNoLostWakeup(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			craw, peer := pair(t, network)
			c := WrapConn(craw)
			defer c.Close()
			rw := c.(ReadableWaiter)
			const n = 2000
			ack, werr := drip(peer, n)
			buf := make([]byte, 8)
			for i := range n {
				if err := rw.WaitReadable(time.Now().Add(guard)); err != nil {
					t.Fatalf("byte %d: lost wakeup: %v", i, err)
				}
				m, err := c.ReadNow(buf)
				if err != nil || m != 1 || buf[0] != byte(i) {
					t.Fatalf("byte %d: read %v, %v", i, buf[:m], err)
				}
				ack <- struct{}{}
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWaitReadableAllocs: waiting for bytes allocates nothing.
func TestWaitReadableAllocs(t *testing.T) {
	craw, peer := pair(t, "tcp")
	c := WrapConn(craw)
	defer c.Close()
	write(t, peer, "x")
	far := time.Now().Add(time.Hour)
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.(ReadableWaiter).WaitReadable(far); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("WaitReadable allocates %.1f times per call", allocs)
	}
}
