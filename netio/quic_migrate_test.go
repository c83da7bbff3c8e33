package netio

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/udpproxy"
)

// waitArmed waits, the way the loop does, until cond holds: it checks
// cond, arms, checks again and waits for the readiness signal or until
// the time next returns (zero: no timer).
func waitArmed(t *testing.T, c *quicConn, cond func() bool, next func() time.Time) {
	t.Helper()
	guardAt := time.Now().Add(guard)
	for !cond() {
		rd, err := c.Arm()
		if err != nil {
			t.Fatal(err)
		}
		if cond() {
			c.Disarm()
			return
		}
		wake := guardAt
		if n := next(); !n.IsZero() && n.Before(wake) {
			wake = n
		}
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-rd.Signal:
		case <-timer.C:
		}
		timer.Stop()
		c.Disarm()
		if time.Now().After(guardAt) {
			t.Fatal("gave up waiting")
		}
	}
}

// proxiedAddr is how the UDP proxy on 127.0.0.1 sees a client socket with
// local address a.
func proxiedAddr(a net.Addr) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(a.(*net.UDPAddr).Port))
}

// migrate runs a migration to completion from the loop's point of view
// and returns its final status.
func migrate(t *testing.T, c *quicConn) MigrationStatus {
	t.Helper()
	if err := c.StartMigration(netip.Addr{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var st MigrationStatus
	waitArmed(t, c, func() bool {
		var err error
		if st, err = c.StepMigration(time.Now()); err != nil {
			t.Fatal(err)
		}
		return st.Done
	}, func() time.Time { return st.Next })
	return st
}

// TestQUICMigration: a connection whose path goes silent (its client
// address blackholed, as after a change of network) notices it through
// QUIC's loss detection, migrates to a new socket without blocking and
// without a goroutine of its own, and the byte written into the dead path
// arrives over the new one. A second, user-triggered migration on a
// healthy path works too, and nothing is left running afterwards.
func TestQUICMigration(t *testing.T) {
	before := leakcheck.Snapshot()
	// Registered first, so it runs after the server and the proxy closed.
	t.Cleanup(func() {
		if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, leakcheck.Standard()...); len(left) > 0 {
			t.Errorf("left running:\n%s", leakcheck.Report(left))
		}
	})
	s := startQUICServer(t, quicServerOptions{})
	p := udpproxy.StartT(t, s.url[len("quic://"):])
	c := dialTestQUIC(t, p.URL(), DialOptions{})

	write := func(b string) {
		t.Helper()
		if _, err := c.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	if got := readArmed(t, c, 1); string(got) != "a" {
		t.Fatalf("read %q", got)
	}
	first := c.LocalAddr().String()

	p.Blackhole(p.Clients()[0], true)
	write("b")
	waitArmed(t, c, c.PathStalled, func() time.Time { return time.Time{} })
	st := migrate(t, c)
	if st.From.String() != first || st.To.String() == first || c.LocalAddr().String() != st.To.String() {
		t.Fatalf("migrated from %v to %v (first %s, now %v)", st.From, st.To, first, c.LocalAddr())
	}
	if got := readArmed(t, c, 1); string(got) != "b" {
		t.Fatalf("read %q after the migration", got)
	}
	if c.PathStalled() {
		t.Fatal("still stalled after the migration")
	}

	// A handover the application asks for, on a healthy path.
	st = migrate(t, c)
	write("c")
	if got := readArmed(t, c, 1); string(got) != "c" {
		t.Fatalf("read %q after the second migration", got)
	}
	if n := len(p.Clients()); n != 3 {
		t.Fatalf("the server saw %d client addresses, want 3", n)
	}
	// The old path is not used any more; the new one stalls in turn and
	// is left for a third.
	p.Blackhole(proxiedAddr(st.From), true)
	write("d")
	if got := readArmed(t, c, 1); string(got) != "d" {
		t.Fatalf("read %q with the old path cut off", got)
	}
	p.Blackhole(proxiedAddr(st.To), true)
	write("e")
	waitArmed(t, c, c.PathStalled, func() time.Time { return time.Time{} })
	migrate(t, c)
	if got := readArmed(t, c, 1); string(got) != "e" {
		t.Fatalf("read %q after the third migration", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
