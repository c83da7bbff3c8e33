package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// testTimeout bounds every command a test runs: a failure guard, never a
// synchronisation.
const testTimeout = 3 * time.Minute

// syncBuffer is an output a command writes on its goroutine while the test
// reads it and waits for text in it.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the buffer holds text, or fails the test when ctx
// ends first.
func (s *syncBuffer) waitFor(t testing.TB, ctx context.Context, text string) {
	t.Helper()
	s.waitForN(t, ctx, text, 1)
}

// waitForN waits until the buffer holds text n times.
func (s *syncBuffer) waitForN(t testing.TB, ctx context.Context, text string, n int) {
	t.Helper()
	for {
		s.mu.Lock()
		has, ch := strings.Count(s.b.String(), text) >= n, s.changed
		s.mu.Unlock()
		if has {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %q: %v; output so far:\n%s", text, ctx.Err(), s.String())
		}
	}
}

// result is how a command ended.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line and returns its exit code and output.
func runCmd(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// mustRun runs the command line, which must exit with want.
func mustRun(t testing.TB, want int, args ...string) result {
	t.Helper()
	r := runCmd(t, args...)
	if r.code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// background is a command running on a goroutine of the test.
type background struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

// start runs the command line on a goroutine.
func start(t testing.TB, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	bg := &background{stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, done: make(chan int, 1)}
	go func() { bg.done <- run(ctx, args, bg.stdout, bg.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-bg.done
	})
	return bg
}

// wait waits for the command to end and returns its exit code.
func (bg *background) wait(t testing.TB) int {
	t.Helper()
	select {
	case code := <-bg.done:
		bg.done <- code
		return code
	case <-time.After(testTimeout + 10*time.Second):
		t.Fatalf("command did not end\nstdout:\n%s\nstderr:\n%s", bg.stdout, bg.stderr)
		return -1
	}
}

// waitText waits for text on the command's stderr.
func (bg *background) waitText(t testing.TB, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	bg.stderr.waitFor(t, ctx, text)
}

// embedded starts an embedded broker with every listener: TCP, TLS, WebSocket
// and QUIC (the test certificates).
func embedded(t testing.TB, opts mqtttest.Options) *mqtttest.Broker {
	t.Helper()
	certs := testcerts.Get()
	opts.TLS = certs.ServerConfig(certs.Server, false)
	opts.WebSocket = true
	opts.SecureWebSocket = true
	opts.QUIC = true
	opts.DisableCapture = true
	b, err := mqtttest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// caFile writes the test CA to a file and returns its path.
func caFile(t testing.TB) string {
	t.Helper()
	files, err := testcerts.Get().WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return files.CA
}
