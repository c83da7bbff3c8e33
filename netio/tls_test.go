package netio

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// tlsServer is a TLS listener on loopback whose connections are handed,
// after a successful server handshake, to handle on a goroutine of the
// test. Handshake errors are sent to errs.
type tlsServer struct {
	url  string
	errs chan error
}

func startTLSServer(t *testing.T, cfg *tls.Config, handle func(c *tls.Conn)) *tlsServer {
	t.Helper()
	ln := listen(t, "tcp")
	s := &tlsServer{url: "mqtts://" + ln.Addr().String(), errs: make(chan error, 16)}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			c := tls.Server(raw, cfg)
			t.Cleanup(func() { c.Close() })
			if err := c.Handshake(); err != nil {
				s.errs <- err
				c.Close()
				continue
			}
			handle(c)
		}
	}()
	return s
}

// tlsEcho copies what it reads back (on the accept goroutine: one client at
// a time, and no goroutine per connection).
func tlsEcho(c *tls.Conn) { _, _ = io.Copy(c, c) }

func dialTLSTest(t *testing.T, url string, cfg *tls.Config) (Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c, err := Dial(ctx, url, DialOptions{TLS: cfg})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// readFull reads want bytes with ReadWait.
func readFull(t *testing.T, c Conn, want int) []byte {
	t.Helper()
	buf := make([]byte, want)
	got := 0
	for got < want {
		n, err := c.ReadWait(buf[got:], time.Now().Add(guard))
		if err != nil {
			t.Fatalf("ReadWait after %d of %d bytes: %v", got, want, err)
		}
		got += n
	}
	return buf
}

func TestTLSEcho(t *testing.T) {
	certs := testcerts.Get()
	srv := startTLSServer(t, certs.ServerConfig(certs.Server, false), tlsEcho)
	for _, scheme := range []string{"mqtts", "ssl", "tls"} {
		t.Run(scheme, func(t *testing.T) {
			url := scheme + srv.url[len("mqtts"):]
			c, err := dialTLSTest(t, url, certs.ClientConfig())
			if err != nil {
				t.Fatal(err)
			}
			if c.Transport() != "tls" {
				t.Fatalf("Transport() = %q", c.Transport())
			}
			if st := c.(*tlsConn).ConnectionState(); !st.HandshakeComplete || st.Version != tls.VersionTLS13 {
				t.Fatalf("connection state: complete %v, version %x", st.HandshakeComplete, st.Version)
			}
			msg := bytes.Repeat([]byte("0123456789"), 5000) // several records
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if got := readFull(t, c, len(msg)); !bytes.Equal(got, msg) {
				t.Fatal("echo differs")
			}
			// Nothing more: ReadNow returns 0, nil; ReadWait times out.
			buf := make([]byte, 16)
			if n, err := c.ReadNow(buf); n != 0 || err != nil {
				t.Fatalf("ReadNow = %d, %v; want 0, nil", n, err)
			}
			if _, err := c.ReadWait(buf, time.Now().Add(10*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadWait past the deadline: %v", err)
			}
			// Readiness: armed, then bytes arrive.
			rd, err := c.Arm()
			if err != nil {
				t.Fatal(err)
			}
			if n, err := c.ReadNow(buf); n != 0 || err != nil {
				t.Fatalf("ReadNow after Arm = %d, %v", n, err)
			}
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := []byte{}
			for len(got) < 4 {
				if !awaitReady(rd, guard) {
					t.Fatal("no readiness signal")
				}
				n, err := c.ReadNow(buf)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, buf[:n]...)
			}
			c.Disarm()
			if string(got) != "ping" {
				t.Fatalf("got %q", got)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := c.ReadNow(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadNow after Close: %v", err)
			}
			if _, err := c.Arm(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Arm after Close: %v", err)
			}
		})
	}
}

// batchConn holds writes while hold is set, until flush writes them
// with one write(2).
type batchConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	if b.hold {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) flush() error {
	b.hold = false
	_, err := b.Conn.Write(b.buf)
	b.buf = nil
	return err
}

// TestTLSBufferedRecords: the server sends several records, each carrying
// several MQTT packets, in one write(2). The first read makes crypto/tls
// take all of them from the socket, so the socket is empty (checked)
// while plaintext and whole records wait inside tls.Conn. Reading them
// with small buffers must deliver every byte, and a Readiness armed while
// bytes remain must fire, also when the caller does not read again first
// (the event loop's reader may have no room): a readiness that waited
// for the socket would never fire.
func TestTLSBufferedRecords(t *testing.T) {
	certs := testcerts.Get()
	// A PUBLISH of 12 bytes: fixed header, remaining length, topic "a/b",
	// payload "hello".
	packet := []byte{0x30, 10, 0, 3, 'a', '/', 'b', 'h', 'e', 'l', 'l', 'o'}
	const records, perRecord = 4, 5
	var want []byte
	for i := 0; i < records*perRecord; i++ {
		want = append(want, packet...)
	}
	recordSize := perRecord * len(packet)

	ln := listen(t, "tcp")
	url := "mqtts://" + ln.Addr().String()
	sent := make(chan struct{}, 1)
	served := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-served })
	go func() {
		defer close(served)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			bc := &batchConn{Conn: raw}
			c := tls.Server(bc, certs.ServerConfig(certs.Server, false))
			// The client's go-ahead (which also completes the handshake
			// and, with TLS 1.3, has the session tickets sent).
			if _, err := c.Read(make([]byte, 1)); err != nil {
				c.Close()
				continue
			}
			bc.hold = true
			for i := 0; i < records; i++ {
				if _, err := c.Write(want[i*recordSize : (i+1)*recordSize]); err != nil {
					break
				}
			}
			if err := bc.flush(); err != nil {
				c.Close()
				continue
			}
			sent <- struct{}{}
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()

	for _, size := range []int{5, 7, len(packet), 64, 4096} {
		for _, armFirst := range []bool{false, true} {
			name := "read-then-arm"
			if armFirst {
				name = "arm-then-read"
			}
			t.Run(name+"/"+strconv.Itoa(size), func(t *testing.T) {
				c, err := dialTLSTest(t, url, certs.ClientConfig())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write([]byte("g")); err != nil {
					t.Fatal(err)
				}
				<-sent
				buf := make([]byte, size)
				n, err := c.ReadWait(buf, time.Now().Add(guard))
				if err != nil {
					t.Fatal(err)
				}
				got := append([]byte(nil), buf[:n]...)
				if !socketEmpty(t, c) {
					t.Fatal("the socket still has bytes: the records did not arrive together, the test proves nothing")
				}
				for len(got) < len(want) {
					if armFirst {
						// The event loop's wait: Arm, ReadNow once more,
						// and wait only if that found nothing.
						rd, err := c.Arm()
						if err != nil {
							t.Fatal(err)
						}
						n, err := c.ReadNow(buf)
						if err != nil {
							t.Fatal(err)
						}
						if n == 0 {
							waitReady(t, rd, len(want)-len(got))
						}
						c.Disarm()
						got = append(got, buf[:n]...)
						continue
					}
					// Arm without reading first: bytes remain, so the
					// readiness must fire.
					rd, err := c.Arm()
					if err != nil {
						t.Fatal(err)
					}
					waitReady(t, rd, len(want)-len(got))
					c.Disarm()
					n, err := c.ReadNow(buf)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, buf[:n]...)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes, differing from the %d sent", len(got), len(want))
				}
			})
		}
	}
}

func waitReady(t *testing.T, rd Readiness, remaining int) {
	t.Helper()
	if !awaitReady(rd, guard) {
		t.Fatalf("readiness did not fire while %d bytes wait in tls.Conn", remaining)
	}
}

// TestTLSCloseUnblocksReadWait: Close from another goroutine ends a
// ReadWait parked without deadline.
func TestTLSCloseUnblocksReadWait(t *testing.T) {
	certs := testcerts.Get()
	srv := startTLSServer(t, certs.ServerConfig(certs.Server, false), tlsEcho)
	c, err := dialTLSTest(t, srv.url, certs.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadWait(make([]byte, 16), time.Time{})
		done <- err
	}()
	// Close as soon as the reader is inside ReadWait (it may not be
	// parked yet: then its read fails at once, which is fine too).
	for c.(*tlsConn).state.Load() != tlsBusy {
		runtime.Gosched()
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ReadWait returned no error after Close")
		}
	case <-time.After(guard):
		t.Fatal("Close did not unblock ReadWait")
	}
}

// TestTLSCloseConcurrent: Close from two goroutines while the loop's
// goroutine keeps using the connection (for the race detector).
func TestTLSCloseConcurrent(t *testing.T) {
	certs := testcerts.Get()
	srv := startTLSServer(t, certs.ServerConfig(certs.Server, false), tlsEcho)
	for i := 0; i < 20; i++ {
		c, err := dialTLSTest(t, srv.url, certs.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 2)
		go func() { done <- c.Close() }()
		go func() { done <- c.Close() }()
		buf := make([]byte, 8)
		_, _ = c.Write([]byte("x"))
		_, _ = c.Arm()
		_, _ = c.ReadNow(buf)
		_, _ = c.ReadWait(buf, time.Now().Add(time.Millisecond))
		c.Disarm()
		for j := 0; j < 2; j++ {
			if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
				t.Fatal(err)
			}
		}
	}
}

// TestTLSHandshakeCancelAndDeadline: a server that accepts TCP but never
// answers the handshake; the dial ends when the context is cancelled or
// its deadline passes, with ErrTLSHandshake and the context's error.
func TestTLSHandshakeCancelAndDeadline(t *testing.T) {
	ln := listen(t, "tcp") // never accepts: the connection waits in the backlog
	url := "mqtts://" + ln.Addr().String()
	cfg := testcerts.Get().ClientConfig()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, url, DialOptions{TLS: cfg})
	if !errors.Is(err, ErrTLSHandshake) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}

	// Cancel while the client waits for the ServerHello: the peer has
	// read the ClientHello.
	client, peer := pair(t, "tcp")
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		named := cfg.Clone()
		named.ServerName = "127.0.0.1"
		_, err := handshakeTLS(ctx, WrapConn(client), named)
		done <- err
	}()
	if _, err := peer.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTLSHandshake) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("cancelling the context did not end the handshake")
	}
}

// TestTLSHandshakeEndsOnInnerClose: closing the inner Conn from another
// goroutine ends a handshake that has no deadline (what wss:// relies on
// when its owner closes the TCP connection).
func TestTLSHandshakeEndsOnInnerClose(t *testing.T) {
	client, peer := pair(t, "tcp")
	inner := WrapConn(client)
	cfg := testcerts.Get().ClientConfig()
	cfg.ServerName = "127.0.0.1"
	done := make(chan error, 1)
	go func() {
		_, err := handshakeTLS(context.Background(), inner, cfg)
		done <- err
	}()
	if _, err := peer.Read(make([]byte, 1)); err != nil { // the ClientHello
		t.Fatal(err)
	}
	if err := inner.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrTLSHandshake) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("handshake after Close: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("closing the inner Conn did not end the handshake")
	}
}

// TestTLSDialErrors: each kind of failure is reported distinctly.
func TestTLSDialErrors(t *testing.T) {
	certs := testcerts.Get()
	serve := func(cert tls.Certificate, requireClient bool, maxVersion uint16) string {
		cfg := certs.ServerConfig(cert, requireClient)
		cfg.MaxVersion = maxVersion
		return startTLSServer(t, cfg, tlsEcho).url
	}
	t.Run("unknown CA", func(t *testing.T) {
		_, err := dialTLSTest(t, serve(certs.Untrusted, false, 0), certs.ClientConfig())
		var target x509.UnknownAuthorityError
		if !errors.Is(err, ErrTLSHandshake) || !errors.As(err, &target) {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("wrong host", func(t *testing.T) {
		_, err := dialTLSTest(t, serve(certs.WrongHost, false, 0), certs.ClientConfig())
		var target x509.HostnameError
		if !errors.Is(err, ErrTLSHandshake) || !errors.As(err, &target) {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("expired", func(t *testing.T) {
		_, err := dialTLSTest(t, serve(certs.Expired, false, 0), certs.ClientConfig())
		var target x509.CertificateInvalidError
		if !errors.Is(err, ErrTLSHandshake) || !errors.As(err, &target) || target.Reason != x509.Expired {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("nil config uses the system roots", func(t *testing.T) {
		_, err := dialTLSTest(t, serve(certs.Server, false, 0), nil)
		var unknown x509.UnknownAuthorityError
		var noRoots x509.SystemRootsError
		if !errors.Is(err, ErrTLSHandshake) || !(errors.As(err, &unknown) || errors.As(err, &noRoots)) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("InsecureSkipVerify only when set", func(t *testing.T) {
		url := serve(certs.Untrusted, false, 0)
		cfg := certs.ClientConfig()
		cfg.InsecureSkipVerify = true
		c, err := dialTLSTest(t, url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	// TLS 1.3: the handshake succeeds for the client; the server's alert
	// comes with the first read.
	t.Run("client certificate required/TLS 1.3", func(t *testing.T) {
		c, err := dialTLSTest(t, serve(certs.Server, true, 0), certs.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ReadWait(make([]byte, 8), time.Now().Add(guard))
		var alert tls.AlertError
		if !errors.Is(err, ErrClientCertificateRequired) || !errors.Is(err, ErrTLSHandshake) || !errors.As(err, &alert) || alert != 116 {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("client certificate required/TLS 1.2", func(t *testing.T) {
		_, err := dialTLSTest(t, serve(certs.Server, true, tls.VersionTLS12), certs.ClientConfig())
		var alert tls.AlertError
		if !errors.Is(err, ErrClientCertificateRequired) || !errors.Is(err, ErrTLSHandshake) || !errors.As(err, &alert) || (alert != 40 && alert != 42) {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("client certificate sent", func(t *testing.T) {
		for _, v := range []uint16{0, tls.VersionTLS12} {
			c, err := dialTLSTest(t, serve(certs.Server, true, v), certs.MutualClientConfig())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("mtls")); err != nil {
				t.Fatal(err)
			}
			if got := readFull(t, c, 4); string(got) != "mtls" {
				t.Fatalf("got %q", got)
			}
		}
	})
}

// TestTLSServerName: Config.ServerName overrides the URL's host for SNI
// and verification.
func TestTLSServerName(t *testing.T) {
	certs := testcerts.Get()
	sni := make(chan string, 4)
	cfg := certs.ServerConfig(certs.Server, false)
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		sni <- h.ServerName
		if h.ServerName == "wrong-host.example" {
			return &certs.WrongHost, nil
		}
		return &certs.Server, nil
	}
	cfg.Certificates = nil
	srv := startTLSServer(t, cfg, tlsEcho)

	// Without override: the URL's host (an IP address sends no SNI) and a
	// certificate valid for it.
	c, err := dialTLSTest(t, srv.url, certs.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := <-sni; got != "" {
		t.Fatalf("SNI for an IP address URL: %q", got)
	}

	over := certs.ClientConfig()
	over.ServerName = "wrong-host.example"
	c, err = dialTLSTest(t, srv.url, over)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("sni")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, c, 3); string(got) != "sni" {
		t.Fatalf("got %q", got)
	}
	if got := <-sni; got != "wrong-host.example" {
		t.Fatalf("SNI %q", got)
	}
	if over.ServerName != "wrong-host.example" || over.GetClientCertificate != nil {
		t.Fatal("Dial modified the caller's configuration")
	}
}

// TestTLSStartsNoGoroutine drives a TLS connection through every method
// and checks with goroutine profiles that none started a goroutine.
//
// Other tests of the package leave timers behind (quic-go forgets a closed
// connection's ids a few seconds later, on a goroutine of time.AfterFunc),
// which may fire during a round and count as created. Goroutines that the
// TLS code itself started would be created in every round, so one clean
// round out of a few proves there are none.
func TestTLSStartsNoGoroutine(t *testing.T) {
	warm := make(chan os.Signal, 1)
	signal.Notify(warm, syscall.SIGIO)
	signal.Stop(warm)
	certs := testcerts.Get()
	srv := startTLSServer(t, certs.ServerConfig(certs.Server, false), tlsEcho) // serves on its accept goroutine
	var problems []string
	for range 3 {
		if problems = tlsGoroutineRound(t, srv.url, certs); len(problems) == 0 {
			return
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// tlsGoroutineRound dials, uses and closes one TLS connection and returns
// the goroutines it saw appear or be created meanwhile.
func tlsGoroutineRound(t *testing.T, url string, certs *testcerts.Set) []string {
	t.Helper()
	before := goroutines(t)
	createdBefore := goroutinesCreated()

	c, err := dialTLSTest(t, url, certs.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := c.ReadNow(buf); err != nil {
		t.Fatal(err)
	}
	rd, err := c.Arm()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, rd, 1)
	c.Disarm()
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	readFull(t, c, 1)
	if _, err := c.ReadWait(buf, time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var problems []string
	for id, stack := range goroutines(t) {
		if _, ok := before[id]; !ok && !othersGoroutine(stack) {
			problems = append(problems, "new goroutine:\n"+stack)
		}
	}
	// Profiles miss goroutines that came and went (like the interrupter
	// of tls.Conn.HandshakeContext); the runtime's count of goroutines
	// ever created does not. The test's server runs on a goroutine that
	// existed before.
	if n := goroutinesCreated() - createdBefore; n != 0 {
		problems = append(problems, fmt.Sprintf("%d goroutines were created during the dial and use of a TLS connection", n))
	}
	return problems
}

// goroutinesCreated returns the number of goroutines the process has
// created so far.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestTLSClientCertificateRequiredOnWrite: after a TLS 1.3 server rejected
// the missing client certificate and closed, the client's writes fail with
// a reset; the error still says why, from the alert that arrived first.
func TestTLSClientCertificateRequiredOnWrite(t *testing.T) {
	certs := testcerts.Get()
	srv := startTLSServer(t, certs.ServerConfig(certs.Server, true), tlsEcho)
	c, err := dialTLSTest(t, srv.url, certs.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	<-srv.errs // the server rejected the handshake (and closes)
	// The first write may still succeed: the reset is the server's
	// answer to it.
	end := time.Now().Add(guard)
	for {
		if _, err = c.Write([]byte("CONNECT")); err != nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("writes keep succeeding on a connection the server closed")
		}
		runtime.Gosched()
	}
	var alert tls.AlertError
	if !errors.Is(err, ErrClientCertificateRequired) || !errors.As(err, &alert) || alert != 116 {
		t.Fatalf("write error: %v", err)
	}
}
