package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

// guard is the failure guard of every blocking step of the tests: reads,
// accepts and waits that are expected to finish return as soon as they can.
const guard = 30 * time.Second

// testUpstream is a plain TCP server standing in for the broker: the test
// takes its accepted connections in order and reads and writes them itself.
type testUpstream struct {
	ln    *net.TCPListener
	conns chan *net.TCPConn
	wg    sync.WaitGroup

	mu  sync.Mutex
	all []*net.TCPConn
}

func newTestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{ln: ln, conns: make(chan *net.TCPConn, 64)}
	u.wg.Add(1)
	go u.acceptLoop()
	t.Cleanup(u.Close)
	return u
}

func (u *testUpstream) acceptLoop() {
	defer u.wg.Done()
	for {
		c, err := u.ln.AcceptTCP()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(guard))
		u.mu.Lock()
		u.all = append(u.all, c)
		u.mu.Unlock()
		u.conns <- c
	}
}

func (u *testUpstream) Addr() string { return u.ln.Addr().String() }

// Accept returns the next connection the upstream accepted.
func (u *testUpstream) Accept(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-u.conns:
		return c
	case <-time.After(guard):
		t.Fatal("upstream: no connection")
		return nil
	}
}

// Accepted returns how many connections the upstream has accepted.
func (u *testUpstream) Accepted() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.all)
}

func (u *testUpstream) Close() {
	_ = u.ln.Close()
	u.wg.Wait()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.all {
		_ = c.Close()
	}
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(guard))
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectEnd reads c to its end and checks that nothing but want came.
func expectEnd(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading to EOF: got %q, %v", got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q before EOF, want %q", got, want)
	}
}

// expectBroken checks that reading c ends (EOF or an error other than a
// timeout) without data.
func expectBroken(t *testing.T, c net.Conn) error {
	t.Helper()
	var buf [64]byte
	n, err := c.Read(buf[:])
	if n > 0 || err == nil {
		t.Fatalf("read %q, %v: want the connection closed", buf[:n], err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read timed out: the connection stayed open")
	}
	return err
}

func wait(t *testing.T, p *Proxy, what string, cond func(Stats) bool) Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := p.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v; stats %+v", what, err, s)
	}
	return s
}

// pair dials the proxy and returns the client side and the upstream side
// of the new connection, checked with a round trip.
func pair(t *testing.T, p *Proxy, u *testUpstream) (client, server *net.TCPConn) {
	t.Helper()
	before := p.Stats().Forwarded
	client = dial(t, p)
	server = u.Accept(t)
	write(t, client, "ping")
	expect(t, server, "ping")
	write(t, server, "pong")
	expect(t, client, "pong")
	// The receiver can read before the proxy has counted the Write (and
	// run OnChunk for it): wait for that too, so that later checks of the
	// counters and OnChunk calls see this traffic done.
	wait(t, p, "the round trip to be counted", func(s Stats) bool {
		return s.Forwarded[0] >= before[0]+4 && s.Forwarded[1] >= before[1]+4
	})
	return client, server
}

func TestStartRejectsNonLoopback(t *testing.T) {
	leakcheck.VerifyNone(t)
	for _, addr := range []string{"192.0.2.1:1883", "example.com:1883", "nonsense"} {
		if p, err := Start(addr); err == nil {
			_ = p.Close()
			t.Errorf("Start(%q) succeeded", addr)
		}
	}
}

func TestForwardBothWays(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	if !strings.HasPrefix(p.URL(), "mqtt://127.0.0.1:") || p.URL() != "mqtt://"+p.Addr() {
		t.Fatalf("URL %q, Addr %q", p.URL(), p.Addr())
	}
	if p.Upstream() != u.Addr() {
		t.Fatalf("Upstream %q", p.Upstream())
	}
	client, server := pair(t, p, u)

	// Bulk data both ways at once.
	r := rand.New(rand.NewSource(1))
	up := make([]byte, 512<<10)
	down := make([]byte, 300<<10)
	r.Read(up)
	r.Read(down)
	errs := make(chan error, 2)
	go func() { _, err := client.Write(up); errs <- err }()
	go func() { _, err := server.Write(down); errs <- err }()
	gotUp := make([]byte, len(up))
	gotDown := make([]byte, len(down))
	if _, err := io.ReadFull(server, gotUp); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, gotDown); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatal("bulk data corrupted")
	}

	// A half-close passes through, and the other direction keeps working.
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, server, "")
	write(t, server, "bye")
	if err := server.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, client, "bye")

	s := wait(t, p, "the connection to end", func(s Stats) bool { return s.Active == 0 })
	want := Stats{
		Connections: 1,
		Received:    [2]int64{int64(4 + len(up)), int64(4 + len(down) + 3)},
		Forwarded:   [2]int64{int64(4 + len(up)), int64(4 + len(down) + 3)},
	}
	if s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
	if p.Connections() != 1 || p.Active() != 0 || p.Cuts() != 0 ||
		p.Forwarded(ClientToServer) != want.Forwarded[0] || p.Discarded(ServerToClient) != 0 {
		t.Fatalf("counter methods disagree with %+v", s)
	}
}

func TestCutAll(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	c1, s1 := pair(t, p, u)
	c2, s2 := pair(t, p, u)

	if n := p.CutAll(); n != 2 {
		t.Fatalf("CutAll cut %d connections, want 2", n)
	}
	if s := p.Stats(); s.Active != 0 || s.Cuts != 2 {
		t.Fatalf("after CutAll: %+v", s)
	}
	for _, c := range []net.Conn{c1, s1, c2, s2} {
		expectBroken(t, c)
	}

	// The proxy keeps serving new connections.
	pair(t, p, u)
	if s := p.Stats(); s.Connections != 3 || s.Active != 1 {
		t.Fatalf("after reconnecting: %+v", s)
	}
}

func TestResetAll(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	if n := p.ResetAll(); n != 1 {
		t.Fatalf("ResetAll cut %d connections, want 1", n)
	}
	for _, c := range []net.Conn{client, server} {
		if err := expectBroken(t, c); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read after ResetAll: %v, want ECONNRESET", err)
		}
	}
}

func TestCutAfterClientToServer(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	p.CutAfter(ClientToServer, 5)
	client := dial(t, p)
	server := u.Accept(t)
	write(t, client, "0123456789")
	expectEnd(t, server, "01234")
	expectBroken(t, client)
	s := wait(t, p, "the cut", func(s Stats) bool { return s.Cuts == 1 })
	if s.Active != 0 || s.Forwarded != [2]int64{5, 0} {
		t.Fatalf("stats %+v", s)
	}

	// One-shot: the next connection is not cut.
	client, server = pair(t, p, u)
	write(t, client, "0123456789")
	expect(t, server, "0123456789")
}

func TestCutAfterServerToClientAcrossWrites(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	p.CutAfter(ServerToClient, 3)
	write(t, server, "ab")
	expect(t, client, "ab")
	_, _ = server.Write([]byte("cdef")) // may fail once the cut is done
	expectEnd(t, client, "c")
	expectBroken(t, server)
}

func TestCutAfterCarriesOverToNextConnection(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	p.CutAfter(ClientToServer, 8)

	// The first connection ends on its own after 3 bytes ...
	client := dial(t, p)
	server := u.Accept(t)
	write(t, client, "abc")
	expect(t, server, "abc")
	_ = client.CloseWrite()
	expectEnd(t, server, "")
	_ = server.Close()
	expectEnd(t, client, "")
	wait(t, p, "the first connection to end", func(s Stats) bool { return s.Active == 0 })

	// ... so the next one is cut after the remaining 5.
	client = dial(t, p)
	server = u.Accept(t)
	write(t, client, "0123456789")
	expectEnd(t, server, "01234")
	expectBroken(t, client)
}

func TestCutAfterZero(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)
	p.CutAfter(ServerToClient, 0)
	write(t, server, "x")
	expectBroken(t, client)
	wait(t, p, "the cut", func(s Stats) bool { return s.Cuts == 1 })
}

func TestCutModeRST(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	p.SetCutMode(CutRST)
	client, server := pair(t, p, u)
	p.CutAfter(ClientToServer, 2)
	write(t, client, "xyz")
	expect(t, server, "xy")
	if err := expectBroken(t, server); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("upstream read after the cut: %v, want ECONNRESET", err)
	}
	if err := expectBroken(t, client); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after the cut: %v, want ECONNRESET", err)
	}
}

// The blackhole drops what passes while it is on and keeps the connections
// open; what is sent after it is off arrives, and nothing else.
func TestBlackhole(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	p.Blackhole(true)
	write(t, client, "lost-c2s")
	write(t, server, "lost-s2c!")
	// A connection made while blackholed is accepted but gets nothing.
	client2 := dial(t, p)
	server2 := u.Accept(t)
	write(t, client2, "lost-new")
	write(t, server2, "lost-new2")
	s := wait(t, p, "the proxy to discard everything", func(s Stats) bool {
		return s.Discarded == [2]int64{8 + 8, 9 + 9}
	})
	if s.Forwarded != [2]int64{4, 4} || s.Active != 2 || s.Cuts != 0 || s.Connections != 2 {
		t.Fatalf("stats while blackholed: %+v", s)
	}
	p.Blackhole(false)

	write(t, client, "marker1")
	expect(t, server, "marker1")
	write(t, server, "marker2")
	expect(t, client, "marker2")
	write(t, client2, "marker3")
	expect(t, server2, "marker3")
	write(t, server2, "marker4")
	expect(t, client2, "marker4")

	// Nothing else arrived in between: each stream ends right after its
	// marker.
	for _, pr := range [][2]*net.TCPConn{{client, server}, {server, client}, {client2, server2}, {server2, client2}} {
		if err := pr[0].CloseWrite(); err != nil {
			t.Fatal(err)
		}
		expectEnd(t, pr[1], "")
	}
	s = wait(t, p, "the connections to end", func(s Stats) bool { return s.Active == 0 })
	if s.Cuts != 0 || s.Discarded != [2]int64{16, 18} {
		t.Fatalf("stats at the end: %+v", s)
	}
}

// A close from one side is held back by the blackhole and passed on after.
func TestBlackholeHoldsClose(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	p.Blackhole(true)
	write(t, server, "gone")
	wait(t, p, "the bytes to be discarded", func(s Stats) bool { return s.Discarded[ServerToClient] == 4 })
	if err := server.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	p.Blackhole(false)
	expectEnd(t, client, "")
	write(t, client, "still open")
	expect(t, server, "still open")
}

func TestUpstreamDown(t *testing.T) {
	leakcheck.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	p := StartT(t, dead)
	client := dial(t, p)
	expectBroken(t, client)
	wait(t, p, "the connection to end", func(s Stats) bool { return s.Active == 0 && s.Connections == 1 })
}

// A stall loses nothing: what was sent while it was on arrives after.
func TestStall(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	p.Stall(true)
	write(t, client, "abc")
	write(t, server, "xyz")
	if s := p.Stats(); s.Forwarded != [2]int64{4, 4} {
		t.Fatalf("forwarded while stalled: %+v", s)
	}
	p.Stall(false)
	expect(t, server, "abc")
	expect(t, client, "xyz")
	if s := p.Stats(); s.Discarded != [2]int64{} || s.Cuts != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestChunkSizeOne(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	var mu sync.Mutex
	sizes := map[Direction][]int{}
	p.OnChunk(func(dir Direction, n int) {
		mu.Lock()
		sizes[dir] = append(sizes[dir], n)
		mu.Unlock()
	})
	p.SetChunkSize(1)

	up := make([]byte, 1000)
	down := make([]byte, 700)
	for i := range up {
		up[i] = byte(i)
	}
	for i := range down {
		down[i] = byte(i * 7)
	}
	write(t, client, string(up))
	expect(t, server, string(up))
	write(t, server, string(down))
	expect(t, client, string(down))
	wait(t, p, "the counts", func(s Stats) bool {
		return s.Forwarded == [2]int64{int64(4 + len(up)), int64(4 + len(down))}
	})

	mu.Lock()
	defer mu.Unlock()
	for dir, want := range map[Direction]int{ClientToServer: len(up), ServerToClient: len(down)} {
		if len(sizes[dir]) != want || slices.ContainsFunc(sizes[dir], func(n int) bool { return n != 1 }) {
			t.Errorf("%v: %d writes, want %d of 1 byte each", dir, len(sizes[dir]), want)
		}
	}
}

func TestShapingPerDirection(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	var mu sync.Mutex
	sizes := map[Direction][]int{}
	p.OnChunk(func(dir Direction, n int) {
		mu.Lock()
		sizes[dir] = append(sizes[dir], n)
		mu.Unlock()
	})
	p.SetShaping(ServerToClient, Shaping{Delay: time.Millisecond, ChunkSize: 3, ChunkGap: 100 * time.Microsecond})

	write(t, server, "0123456789")
	expect(t, client, "0123456789")
	long := strings.Repeat("x", 1000)
	write(t, client, long)
	expect(t, server, long)
	wait(t, p, "the counts", func(s Stats) bool { return s.Forwarded == [2]int64{4 + 1000, 4 + 10} })

	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sizes[ServerToClient], []int{3, 3, 3, 1}) {
		t.Errorf("server->client writes %v, want [3 3 3 1]", sizes[ServerToClient])
	}
	if got := sizes[ClientToServer]; !slices.ContainsFunc(got, func(n int) bool { return n > 3 }) {
		t.Errorf("client->server writes %v: the chunk size leaked into the other direction", got)
	}
}

func TestDelay(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	// A chunk read under a long delay is held ...
	p.SetDelay(time.Hour)
	write(t, client, "abc")
	s := wait(t, p, "the proxy to read", func(s Stats) bool { return s.Received[ClientToServer] == 7 })
	if s.Forwarded[ClientToServer] != 4 {
		t.Fatalf("forwarded under a delay of an hour: %+v", s)
	}
	// ... and released when the delay is lowered.
	p.SetDelay(0)
	expect(t, server, "abc")

	// Under a short delay everything arrives, in order.
	p.SetDelay(2 * time.Millisecond)
	for i := range 20 {
		write(t, client, string(rune('a'+i)))
		write(t, server, string(rune('A'+i)))
	}
	expect(t, server, "abcdefghijklmnopqrst")
	expect(t, client, "ABCDEFGHIJKLMNOPQRST")
}

func TestRefuse(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())

	p.Refuse(true)
	client := dial(t, p)
	expectBroken(t, client)
	wait(t, p, "the refusal", func(s Stats) bool { return s.Refused == 1 })

	p.Refuse(false)
	pair(t, p, u)
	if u.Accepted() != 1 {
		t.Fatalf("upstream accepted %d connections, want 1 (the refused one never reaches it)", u.Accepted())
	}
	if s := p.Stats(); s.Connections != 2 || s.Refused != 1 || s.Active != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPauseAccept(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())

	p.PauseAccept(true)
	client := dial(t, p) // completes in the kernel's backlog
	write(t, client, "hi")
	if s := p.Stats(); s.Connections != 0 || s.Received != [2]int64{} {
		t.Fatalf("stats while paused: %+v", s)
	}
	p.PauseAccept(false)
	server := u.Accept(t)
	expect(t, server, "hi")
	if n := p.Connections(); n != 1 {
		t.Fatalf("Connections %d after the pause", n)
	}
}

// cutEveryRun sends an endless stream through a proxy with CutEvery(seed,
// ...) over successive connections until cuts connections have been cut,
// and returns how many bytes the upstream received on each.
func cutEveryRun(t *testing.T, seed int64, minBytes, maxBytes, cuts int) []int {
	t.Helper()
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	p.CutEvery(seed, minBytes, maxBytes)

	var counts []int
	block := make([]byte, 1000)
	for i := range cuts {
		client := dial(t, p)
		server := u.Accept(t)
		var sent int
		for {
			for j := range block {
				block[j] = byte(sent + j)
			}
			n, err := client.Write(block)
			sent += n
			if err != nil {
				break
			}
		}
		got, err := io.ReadAll(server)
		if err != nil {
			t.Fatalf("connection %d: upstream read %d bytes, then %v", i, len(got), err)
		}
		for j, b := range got {
			if b != byte(j) {
				t.Fatalf("connection %d: byte %d is %d, want %d", i, j, b, byte(j))
			}
		}
		counts = append(counts, len(got))
		_ = client.Close()
		_ = server.Close()
	}
	wait(t, p, "the cuts", func(s Stats) bool { return s.Cuts == cuts && s.Active == 0 })
	return counts
}

func TestCutEveryIsReplayable(t *testing.T) {
	leakcheck.VerifyNone(t)
	const minBytes, maxBytes, cuts = 100, 5000, 6
	first := cutEveryRun(t, 42, minBytes, maxBytes, cuts)
	second := cutEveryRun(t, 42, minBytes, maxBytes, cuts)
	if !slices.Equal(first, second) {
		t.Fatalf("same seed, different cuts: %v and %v", first, second)
	}
	r := rand.New(rand.NewSource(42))
	var want []int
	for range cuts {
		want = append(want, minBytes+r.Intn(maxBytes-minBytes+1))
	}
	if !slices.Equal(first, want) {
		t.Fatalf("cuts at %v, want %v as documented", first, want)
	}
	if other := cutEveryRun(t, 43, minBytes, maxBytes, cuts); slices.Equal(other, first) {
		t.Fatalf("seeds 42 and 43 both cut at %v", first)
	}
}

// A test can cut at a moment it chooses from OnChunk, e.g. after a number
// of writes.
func TestCutFromOnChunk(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)
	p.SetChunkSize(1)
	var n int
	p.OnChunk(func(dir Direction, _ int) {
		if dir == ClientToServer {
			if n++; n == 3 {
				p.CutAll()
			}
		}
	})
	write(t, client, "abcdef")
	expectEnd(t, server, "abc")
	expectBroken(t, client)
}

func TestHeal(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)
	p.Blackhole(true)
	p.Stall(true)
	p.SetDelay(time.Hour)
	p.SetChunkSize(1)
	p.CutAfter(ClientToServer, 1)
	p.CutEvery(1, 1, 1)
	p.Refuse(true)
	p.Heal()
	write(t, client, "after heal")
	expect(t, server, "after heal")
	pair(t, p, u)
	if s := p.Stats(); s.Cuts != 0 || s.Refused != 0 || s.Discarded != [2]int64{} {
		t.Fatalf("stats %+v", s)
	}
}

// Close ends every goroutine of the proxy, whatever its connections are
// doing: forwarding, waiting out a delay, blackholed, stalled, held by a
// paused accept, or dialing an upstream that is down.
func TestCloseStopsGoroutines(t *testing.T) {
	before := leakcheck.Snapshot()
	u := newTestUpstream(t)
	p, err := Start(u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	idle, _ := pair(t, p, u)
	delayed, _ := pair(t, p, u)
	p.SetShaping(ClientToServer, Shaping{Delay: time.Hour})
	write(t, delayed, "held")
	wait(t, p, "the delayed chunk", func(s Stats) bool { return s.Received[ClientToServer] == 3*4 })
	p.Stall(true)
	stalled := dial(t, p)
	u.Accept(t)
	write(t, stalled, "stalled")
	p.PauseAccept(true)
	paused := dial(t, p)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	p2, err := Start(dead)
	if err != nil {
		t.Fatal(err)
	}
	p2.Blackhole(true)
	hidden := dial(t, p2)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ignore := append(leakcheck.Standard(), "testUpstream")
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, ignore...); len(left) > 0 {
		t.Fatalf("after Close: %s", leakcheck.Report(left))
	}
	for _, c := range []net.Conn{idle, delayed, stalled, paused, hidden} {
		expectBroken(t, c)
	}
	u.Close()
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, leakcheck.Standard()...); len(left) > 0 {
		t.Fatalf("after closing the upstream: %s", leakcheck.Report(left))
	}
}

func TestBlackholeOpen(t *testing.T) {
	leakcheck.VerifyNone(t)
	u := newTestUpstream(t)
	p := StartT(t, u.Addr())
	client, server := pair(t, p, u)

	if n := p.BlackholeOpen(); n != 1 {
		t.Fatalf("BlackholeOpen = %d, want 1", n)
	}
	write(t, client, "lost")
	write(t, server, "lost!")
	wait(t, p, "the bytes to be discarded", func(s Stats) bool { return s.Discarded == [2]int64{4, 5} })
	// A later connection is served.
	client2, server2 := pair(t, p, u)
	write(t, client2, "fine")
	expect(t, server2, "fine")
	write(t, server2, "fine too")
	expect(t, client2, "fine too")
	if s := p.Stats(); s.Discarded != [2]int64{4, 5} {
		t.Fatalf("stats %+v", s)
	}
}
