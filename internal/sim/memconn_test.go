package sim

import (
	"errors"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestMemConnWaits checks memConn's poller waits against the contract of
// netio.ReadableWaiter and netio.WaitInterrupter: WaitReadable reads
// nothing, a cut ends a wait in progress, a cut made while nobody waits
// ends the next wait at once (and only that one), and the deadline ends a
// wait in virtual time.
func TestMemConnWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Sim{}
		m := newMemConn(s, &conn{}, 0)
		deadline := func(d time.Duration) time.Time { return time.Now().Add(d) }
		timedOut := func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

		// The deadline, in virtual time.
		start := time.Now()
		if err := m.WaitReadable(deadline(time.Second)); !timedOut(err) || time.Since(start) != time.Second {
			t.Fatalf("WaitReadable with nothing to read: %v after %v, want a timeout after 1s", err, time.Since(start))
		}

		// A cut before the wait ends the next wait at once, then is spent.
		m.InterruptWait()
		start = time.Now()
		if err := m.WaitReadable(time.Time{}); !timedOut(err) || time.Since(start) != 0 {
			t.Fatalf("WaitReadable after a cut: %v after %v, want a timeout at once", err, time.Since(start))
		}
		if err := m.WaitReadable(deadline(time.Millisecond)); !timedOut(err) || time.Since(start) != time.Millisecond {
			t.Fatalf("the cut was not spent: %v after %v", err, time.Since(start))
		}

		// A cut ends a wait in progress, ReadWait's too.
		for _, wait := range []func() error{
			func() error { return m.WaitReadable(time.Time{}) },
			func() error { _, err := m.ReadWait(make([]byte, 8), time.Time{}); return err },
		} {
			done := make(chan error, 1)
			go func() { done <- wait() }()
			synctest.Wait()
			m.InterruptWait()
			if err := <-done; !timedOut(err) {
				t.Fatalf("a cut wait returned %v", err)
			}
		}

		// Bytes end WaitReadable without being read.
		done := make(chan error, 1)
		go func() { done <- m.WaitReadable(time.Time{}) }()
		synctest.Wait()
		s.mu.Lock()
		m.deliver([]byte("ab"))
		s.mu.Unlock()
		if err := <-done; err != nil {
			t.Fatalf("WaitReadable with bytes: %v", err)
		}
		p := make([]byte, 8)
		if n, err := m.ReadNow(p); n != 2 || err != nil {
			t.Fatalf("ReadNow after WaitReadable: %d, %v; want the 2 bytes", n, err)
		}

		// The end of the connection ends it too.
		go func() { done <- m.WaitReadable(time.Time{}) }()
		synctest.Wait()
		s.mu.Lock()
		m.ended()
		s.mu.Unlock()
		if err := <-done; err != nil {
			t.Fatalf("WaitReadable at the end of the connection: %v", err)
		}
	})
}
