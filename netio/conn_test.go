package netio

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// awaitReady waits until rd says its connection may have bytes, running
// the dispatch of the process's readiness set when the shared SIGIO
// arrives, as the event loop does. It returns false after timeout.
func awaitReady(rd Readiness, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-rd.Signal:
			return true
		case <-rd.Tick:
			return true
		case <-rd.Shared:
			if rd.Dispatch() {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// guard is the failure guard of waits that must end on their own: it
// never synchronises anything, it only turns a hang into a failure.
const guard = 10 * time.Second

// shortDir returns a temporary directory with a path short enough for a
// Unix socket name.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nio")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// listen returns a listener on the loopback TCP interface or a Unix socket.
func listen(t testing.TB, network string) net.Listener {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(shortDir(t), "s.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair returns a connected client and server; no goroutine is needed
// because the connection waits in the listen backlog.
func pair(t testing.TB, network string) (client, server net.Conn) {
	t.Helper()
	ln := listen(t, network)
	client, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

type impl struct {
	name string
	wrap func(net.Conn) Conn
}

func impls() []impl {
	return []impl{
		{"native", WrapConn},
		{"poll", func(c net.Conn) Conn { return NewPollConn(c, DefaultPollInterval) }},
	}
}

// forEach runs f for every implementation over TCP and Unix sockets.
func forEach(t *testing.T, f func(t *testing.T, c Conn, peer net.Conn, im impl, network string)) {
	for _, im := range impls() {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(im.name+"/"+network, func(t *testing.T) {
				client, server := pair(t, network)
				c := im.wrap(client)
				t.Cleanup(func() { c.Close() })
				f(t, c, server, im, network)
			})
		}
	}
}

// readNowUntil calls ReadNow until it has read want bytes. Loopback TCP
// may make written bytes readable an instant after the writer returns;
// this loop waits for that instant without sleeping.
func readNowUntil(t *testing.T, c Conn, want int) []byte {
	t.Helper()
	buf := make([]byte, 1024)
	got := 0
	end := time.Now().Add(guard)
	for got < want {
		n, err := c.ReadNow(buf[got:])
		if err != nil {
			t.Fatalf("ReadNow after %d bytes: %v", got, err)
		}
		got += n
		if n == 0 {
			if time.Now().After(end) {
				t.Fatalf("ReadNow: %d of %d bytes after %v", got, want, guard)
			}
			runtime.Gosched()
		}
	}
	return buf[:got]
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestWrapConnPicksImplementation(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		client, _ := pair(t, network)
		c := WrapConn(client)
		_, poll := c.(*pollConn)
		native := !poll
		if native != (runtime.GOOS == "linux" || runtime.GOOS == "darwin" || runtime.GOOS == "freebsd" ||
			runtime.GOOS == "netbsd" || runtime.GOOS == "dragonfly") {
			t.Errorf("%s on %s: WrapConn returned %T", network, runtime.GOOS, c)
		}
		if c.Transport() != network {
			t.Errorf("Transport() = %q, want %q", c.Transport(), network)
		}
	}
	// An unknown net.Conn gets the polling fallback.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := WrapConn(a).(*pollConn); !ok {
		t.Errorf("net.Pipe: WrapConn returned %T", WrapConn(a))
	}
}

func TestConnReadNow(t *testing.T) {
	forEach(t, func(t *testing.T, c Conn, peer net.Conn, im impl, network string) {
		buf := make([]byte, 64)
		if n, err := c.ReadNow(buf); n != 0 || err != nil {
			t.Fatalf("ReadNow with nothing pending = %d, %v", n, err)
		}
		if n, err := c.ReadNow(nil); n != 0 || err != nil {
			t.Fatalf("ReadNow(nil) = %d, %v", n, err)
		}
		write(t, peer, "hello")
		if im.name == "native" && network == "unix" {
			// A Unix socket write completes into the peer's queue.
			if n, err := c.ReadNow(buf); string(buf[:n]) != "hello" || err != nil {
				t.Fatalf("ReadNow right after a Unix write = %q, %v", buf[:n], err)
			}
		} else if got := readNowUntil(t, c, 5); string(got) != "hello" {
			t.Fatalf("ReadNow = %q", got)
		}
		if n, err := c.ReadNow(buf); n != 0 || err != nil {
			t.Fatalf("ReadNow after draining = %d, %v", n, err)
		}
	})
}

func TestConnReadWait(t *testing.T) {
	forEach(t, func(t *testing.T, c Conn, peer net.Conn, im impl, network string) {
		buf := make([]byte, 64)
		write(t, peer, "abc")
		n, err := c.ReadWait(buf, time.Now().Add(guard))
		if err != nil || string(buf[:n]) != "abc" {
			t.Fatalf("ReadWait = %q, %v", buf[:n], err)
		}

		// Timeouts, with the deadline in the near future and in the past.
		for _, d := range []time.Time{time.Now().Add(time.Millisecond), time.Now().Add(-time.Second)} {
			n, err = c.ReadWait(buf, d)
			if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadWait with nothing to read = %d, %v", n, err)
			}
		}
		// The expired deadline must not stop ReadNow from reading.
		write(t, peer, "after")
		if got := readNowUntil(t, c, 5); string(got) != "after" {
			t.Fatalf("ReadNow after a ReadWait timeout = %q", got)
		}
		// Nor a later ReadWait with another deadline, or none.
		write(t, peer, "again")
		n, err = c.ReadWait(buf, time.Now().Add(guard))
		if err != nil || string(buf[:n]) != "again" {
			t.Fatalf("ReadWait = %q, %v", buf[:n], err)
		}
		write(t, peer, "none")
		n, err = c.ReadWait(buf, time.Time{})
		if err != nil || string(buf[:n]) != "none" {
			t.Fatalf("ReadWait without deadline = %q, %v", buf[:n], err)
		}
	})
}

func TestConnArm(t *testing.T) {
	forEach(t, func(t *testing.T, c Conn, peer net.Conn, im impl, network string) {
		c.Disarm() // not armed: nothing to do
		for round := 0; round < 3; round++ {
			rd, err := c.Arm()
			if err != nil {
				t.Fatal(err)
			}
			if (rd.Signal != nil) == (rd.Tick != nil) {
				t.Fatalf("Arm returned %+v: exactly one channel must be set", rd)
			}
			if im.name == "native" && rd.Signal == nil {
				t.Fatal("native transport without a signal channel")
			}
			if _, err := c.Arm(); err != nil { // arming twice is allowed
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			if n, err := c.ReadNow(buf); n != 0 || err != nil {
				t.Fatalf("ReadNow after Arm = %d, %v", n, err)
			}
			write(t, peer, "ping")
			if !awaitReady(rd, guard) {
				t.Fatalf("round %d: no readiness signal within %v", round, guard)
			}
			c.Disarm()
			c.Disarm()
			if got := readNowUntil(t, c, 4); string(got) != "ping" {
				t.Fatalf("ReadNow = %q", got)
			}
		}
	})
}

func TestConnEOF(t *testing.T) {
	forEach(t, func(t *testing.T, c Conn, peer net.Conn, im impl, network string) {
		write(t, peer, "last")
		peer.Close()
		buf := make([]byte, 64)
		n, err := c.ReadWait(buf, time.Now().Add(guard))
		if err != nil || string(buf[:n]) != "last" {
			t.Fatalf("ReadWait = %q, %v", buf[:n], err)
		}
		if n, err := c.ReadWait(buf, time.Now().Add(guard)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("ReadWait after peer close = %d, %v", n, err)
		}
		if n, err := c.ReadNow(buf); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("ReadNow after peer close = %d, %v", n, err)
		}
	})
}

func TestConnWriteAndClose(t *testing.T) {
	forEach(t, func(t *testing.T, c Conn, peer net.Conn, im impl, network string) {
		if c.Transport() != network {
			t.Errorf("Transport() = %q", c.Transport())
		}
		if err := c.SetWriteDeadline(time.Now().Add(guard)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Write([]byte("out")); n != 3 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if err := peer.SetReadDeadline(time.Now().Add(guard)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "out" {
			t.Fatalf("peer read %q, %v", buf, err)
		}
		if _, err := c.Arm(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		c.Disarm()
		if _, err := c.ReadNow(buf); err == nil {
			t.Fatal("ReadNow after Close succeeded")
		}
		if _, err := c.ReadWait(buf, time.Now().Add(guard)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadWait after Close: %v", err)
		}
		if _, err := c.Write([]byte("x")); err == nil {
			t.Fatal("Write after Close succeeded")
		}
		if im.name == "native" {
			if _, err := c.Arm(); err == nil {
				t.Fatal("Arm after Close succeeded")
			}
		}
	})
}

// TestCloseFromAnotherGoroutine runs Close concurrently with the loop's
// calls, for the race detector.
func TestCloseFromAnotherGoroutine(t *testing.T) {
	forEach(t, func(t *testing.T, c Conn, peer net.Conn, im impl, network string) {
		done := make(chan error, 1)
		go func() { done <- c.Close() }()
		buf := make([]byte, 8)
		_, _ = c.Arm()
		_, _ = c.ReadNow(buf)
		c.Disarm()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestNoGoStatements checks the rule that the library starts no
// goroutine: no go statement outside _test.go files in any package of the
// module, except the programs (cmd/, the bench module), the embedded test
// broker (mqtttest: a broker serves each client on goroutines) and the
// test infrastructure under internal/ (but internal/wire, the loop's
// codec, is library code and is checked).
func TestNoGoStatements(t *testing.T) {
	exempt := map[string]string{
		"cmd":                  "programs",
		"bench":                "the benchmark module",
		"mqtttest":             "embedded broker",
		"internal/faultproxy":  "test infrastructure",
		"internal/leakcheck":   "test infrastructure",
		"internal/mosquitto":   "test infrastructure",
		"internal/proxyserver": "test infrastructure",
		"internal/rawbroker":   "test infrastructure",
		"internal/sim":         "test infrastructure",
		"internal/sink":        "test infrastructure",
		"internal/testcerts":   "test infrastructure",
		"internal/udpproxy":    "test infrastructure",
	}
	root := ".."
	var files []string
	checked := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if _, ok := exempt[rel]; ok || (rel != "." && strings.HasPrefix(d.Name(), ".")) || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			files = append(files, path)
			checked[filepath.ToSlash(filepath.Dir(rel))] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"netio", "eventloop", "state", "state/filestore", "keepalive", "reconnect", "internal/wire", "scram", "topic", "client"} {
		if !checked[must] {
			t.Fatalf("library package %s was not checked (checked: %v)", must, checked)
		}
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%s: go statement", fset.Position(g.Pos()))
			}
			return true
		})
	}
}

// pingPong benchmarks 8-byte round trips against an echo peer; wait
// receives the 8 echoed bytes.
func pingPong(b *testing.B, network string, wrap func(net.Conn) Conn, wait func(b *testing.B, c Conn, buf []byte)) {
	client, server := pair(b, network)
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		buf := make([]byte, 8)
		for {
			if _, err := io.ReadFull(server, buf); err != nil {
				return
			}
			if _, err := server.Write(buf); err != nil {
				return
			}
		}
	}()
	c := wrap(client)
	msg := []byte("8 bytes!")
	buf := make([]byte, 8)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		wait(b, c, buf)
		if !bytes.Equal(buf, msg) {
			b.Fatalf("echo %q", buf)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
	c.Close()
	<-echoDone
}

func waitReadWait(b *testing.B, c Conn, buf []byte) {
	for got := 0; got < len(buf); {
		n, err := c.ReadWait(buf[got:], time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
}

func waitArmSelect(requests chan struct{}) func(b *testing.B, c Conn, buf []byte) {
	return func(b *testing.B, c Conn, buf []byte) {
		got := 0
		for got < len(buf) {
			n, err := c.ReadNow(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			if got += n; got == len(buf) {
				break
			}
			rd, err := c.Arm()
			if err != nil {
				b.Fatal(err)
			}
			n, err = c.ReadNow(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			if got += n; got < len(buf) {
			wait:
				for {
					select {
					case <-rd.Signal:
					case <-rd.Shared:
						if !rd.Dispatch() {
							continue wait
						}
					case <-rd.Tick:
					case <-requests:
					}
					break
				}
			}
			c.Disarm()
		}
	}
}

// BenchmarkPingPong compares ways of waiting for a reply: parking in the
// netpoller (ReadWait), arming readiness and selecting (what the loop
// does when requests can arrive), the polling fallback, and the reader
// goroutine design the library avoids (baseline).
func BenchmarkPingPong(b *testing.B) {
	requests := make(chan struct{}) // never ready, as in an idle client
	poll := func(c net.Conn) Conn { return NewPollConn(c, DefaultPollInterval) }
	for _, network := range []string{"tcp", "unix"} {
		b.Run(network+"/readwait", func(b *testing.B) { pingPong(b, network, WrapConn, waitReadWait) })
		b.Run(network+"/arm-select", func(b *testing.B) { pingPong(b, network, WrapConn, waitArmSelect(requests)) })
		b.Run(network+"/poll-readwait", func(b *testing.B) { pingPong(b, network, poll, waitReadWait) })
		b.Run(network+"/poll-arm-select", func(b *testing.B) { pingPong(b, network, poll, waitArmSelect(requests)) })
		b.Run(network+"/goroutine-baseline", func(b *testing.B) { benchGoroutineReader(b, network, requests) })
	}
}

// benchGoroutineReader is the design the library avoids: a reader
// goroutine feeding a channel that the loop selects on.
func benchGoroutineReader(b *testing.B, network string, requests chan struct{}) {
	client, server := pair(b, network)
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := io.ReadFull(server, buf); err != nil {
				return
			}
			if _, err := server.Write(buf); err != nil {
				return
			}
		}
	}()
	in := make(chan []byte, 1)
	go func() {
		defer close(in)
		for {
			buf := make([]byte, 8)
			if _, err := io.ReadFull(client, buf); err != nil {
				return
			}
			in <- buf
		}
	}()
	msg := []byte("8 bytes!")
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		select {
		case got := <-in:
			if !bytes.Equal(got, msg) {
				b.Fatalf("echo %q", got)
			}
		case <-requests:
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
	client.Close()
	for range in {
	}
}
