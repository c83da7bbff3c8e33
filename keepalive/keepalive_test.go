package keepalive

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestIdleConnectionPingsAfterInterval(t *testing.T) {
	k := New(10*time.Second, 5*time.Second, at(0))
	// Due one second early for a 10 s keepalive.
	if a, next := k.Check(at(8.9)); a != Wait || !next.Equal(at(9)) {
		t.Fatalf("at 8.9s: got %v next %v, want wait until 9s", a, next)
	}
	if a, _ := k.Check(at(9)); a != SendPing {
		t.Fatalf("at 9s: got %v, want send-ping", a)
	}
}

func TestReceiveOnlyClientStillPings(t *testing.T) {
	// A QoS 0 flood arrives every second; the client sends nothing.
	k := New(10*time.Second, 5*time.Second, at(0))
	for s := 1; s < 9; s++ {
		k.Received(at(float64(s)))
		if a, _ := k.Check(at(float64(s))); a != Wait {
			t.Fatalf("at %ds: %v", s, a)
		}
	}
	k.Received(at(9))
	if a, _ := k.Check(at(9)); a != SendPing {
		t.Fatalf("receive-only client must ping when it has sent nothing for the interval, got %v", a)
	}
}

func TestSendOnlyClientDetectsDeadBroker(t *testing.T) {
	k := New(10*time.Second, 5*time.Second, at(0))
	for s := 1; s < 9; s++ {
		k.Sent(at(float64(s)))
	}
	if a, _ := k.Check(at(9)); a != SendPing {
		t.Fatalf("client that received nothing for the interval must ping, got %v", a)
	}
	k.PingSent(at(10))
	k.Sent(at(12)) // still publishing into the void
	if a, next := k.Check(at(14.9)); a != Wait || !next.Equal(at(15)) {
		t.Fatalf("before ping timeout: %v %v", a, next)
	}
	if a, _ := k.Check(at(15)); a != Dead {
		t.Fatalf("after ping timeout: got %v, want dead", a)
	}
}

func TestAnyPacketAnswersPing(t *testing.T) {
	k := New(10*time.Second, 5*time.Second, at(0))
	k.PingSent(at(10))
	k.Received(at(11)) // a PUBLISH, not a PINGRESP
	if k.PingOutstanding() {
		t.Fatal("ping still outstanding after a packet arrived")
	}
	if a, next := k.Check(at(16)); a != Wait || !next.Equal(at(19)) {
		t.Fatalf("got %v %v, want wait until 19s", a, next)
	}
}

func TestBusyClientNeverPings(t *testing.T) {
	k := New(10*time.Second, 5*time.Second, at(0))
	for s := 1.0; s < 100; s += 0.5 {
		k.Sent(at(s))
		k.Received(at(s))
		if a, _ := k.Check(at(s)); a != Wait {
			t.Fatalf("busy client at %vs: %v", s, a)
		}
	}
}

func TestDisabled(t *testing.T) {
	var k Timer
	if a, next := k.Check(at(1e6)); a != Wait || !next.IsZero() {
		t.Fatalf("zero timer: %v %v", a, next)
	}
	k2 := New(0, 0, at(0))
	if a, _ := k2.Check(at(1e6)); a != Wait {
		t.Fatalf("keepalive 0: %v", a)
	}
}

func TestPingTimeoutDefaultsToInterval(t *testing.T) {
	k := New(4*time.Second, 0, at(0))
	k.PingSent(at(4))
	if a, _ := k.Check(at(7.9)); a != Wait {
		t.Fatal(a)
	}
	if a, _ := k.Check(at(8)); a != Dead {
		t.Fatal(a)
	}
}

func TestServerKeepAliveOverride(t *testing.T) {
	k := New(60*time.Second, 5*time.Second, at(0))
	k.SetInterval(2 * time.Second)
	if a, _ := k.Check(at(1.49)); a != Wait {
		t.Fatalf("got %v before 1.5 s", a)
	}
	if a, _ := k.Check(at(1.5)); a != SendPing {
		t.Fatalf("got %v", a)
	}
}

func TestPingGoesOutEarly(t *testing.T) {
	for _, c := range []struct{ interval, early time.Duration }{
		{time.Second, 250 * time.Millisecond},
		{4 * time.Second, time.Second},
		{60 * time.Second, time.Second},
	} {
		k := New(c.interval, time.Second, at(0))
		_, due := k.Check(at(0))
		if got := c.interval - due.Sub(at(0)); got != c.early {
			t.Errorf("keepalive %v: ping %v early, want %v", c.interval, got, c.early)
		}
	}
}
