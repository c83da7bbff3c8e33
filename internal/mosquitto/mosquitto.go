package mosquitto

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts used as failure guards only.
const (
	// readyTimeout bounds the wait for a started broker to accept TCP.
	readyTimeout = 20 * time.Second
	// termTimeout is how long Stop waits after SIGTERM before SIGKILL.
	termTimeout = 10 * time.Second
)

// InstallHint tells how to install mosquitto on Debian and Ubuntu.
const InstallHint = "apt-get install -y mosquitto"

// Options configures the broker. Zero fields leave mosquitto's defaults.
type Options struct {
	// MaxPacketSize sets max_packet_size: the broker refuses larger packets
	// and advertises Maximum Packet Size to MQTT 5 clients.
	MaxPacketSize uint32
	// MaxKeepalive sets max_keepalive: MQTT 5 clients asking for a longer
	// keepalive get a Server Keep Alive of this value (mosquitto advises
	// against values below 10).
	MaxKeepalive uint16
	// MaxInflightMessages sets max_inflight_messages, the number of
	// outgoing QoS 1/2 messages in flight per client (default 20). To set it
	// to 0, meaning no maximum, use Extra.
	MaxInflightMessages int
	// MaxQueuedMessages sets max_queued_messages (default 1000).
	MaxQueuedMessages int
	// NoDelay sets set_tcp_nodelay true.
	NoDelay bool
	// Verbose sets log_type all, which logs every packet.
	Verbose bool
	// Extra lines are appended to the configuration as they are.
	Extra []string
	// Listeners are opened beside the plain MQTT listener, each on a free
	// loopback port (see Broker.ListenerAddr).
	Listeners []Listener
}

// Listener is an extra listener: MQTT or WebSocket, with or without TLS,
// or a Unix socket.
type Listener struct {
	// Unix makes it a Unix domain socket listener (MQTT, no TLS) in a
	// directory of its own that mosquitto's user can enter; see
	// Broker.ListenerAddr for the path.
	Unix bool
	// WebSocket makes it a websockets listener (mosquitto serves any path).
	WebSocket bool
	// TLS, when non-nil, makes it a TLS listener with these files.
	TLS *TLSFiles
}

// TLSFiles are the PEM files of a TLS listener. Start copies them into
// the broker's own directory, readable by the user mosquitto drops to when
// started as root (they are test keys).
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
	// RequireCertificate makes clients present a certificate signed by
	// CAFile (mutual TLS).
	RequireCertificate bool
}

// Broker is a running (or stopped) mosquitto process owned by a test.
type Broker struct {
	t       testing.TB
	binary  string
	conf    string
	logPath string
	port    int
	ports   []int    // of Options.Listeners (0 for Unix sockets)
	socks   []string // of Options.Listeners ("" unless Unix)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	logf   *os.File
}

// Binary returns the path of the mosquitto executable: $PATH first, then
// the usual sbin directories (Debian installs it in /usr/sbin, which is not
// on every user's PATH).
func Binary() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("mosquitto not found in $PATH, /usr/sbin, /usr/local/sbin or /opt/homebrew/sbin")
}

// Start starts a mosquitto broker for the test and stops it at the end of
// the test. It skips the test when mosquitto is not installed, or fails it
// when the CI environment variable is non-empty.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mosquitto: %v; CI must install it (%s)", err, InstallHint)
		}
		t.Skipf("mosquitto: %v; install it to run this test (%s)", err, InstallHint)
	}
	dir := t.TempDir()
	b := &Broker{
		t:       t,
		binary:  bin,
		conf:    filepath.Join(dir, "mosquitto.conf"),
		logPath: filepath.Join(dir, "mosquitto.log"),
	}
	if err := shareTLSFiles(dir, opts.Listeners); err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	for _, l := range opts.Listeners {
		sock := ""
		if l.Unix {
			sock = unixSocketPath(t)
		}
		b.socks = append(b.socks, sock)
	}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("mosquitto log (%s):\n%s", b.logPath, b.Log())
		}
	})

	// The port is found by binding port 0 and releasing it, so another
	// process may take it before mosquitto binds it: try a few ports.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
		b.port = port
		b.ports = b.ports[:0]
		for i := range opts.Listeners {
			if b.socks[i] != "" {
				b.ports = append(b.ports, 0)
				continue
			}
			p, err := freePort()
			if err != nil {
				t.Fatalf("mosquitto: %v", err)
			}
			b.ports = append(b.ports, p)
		}
		if err := os.WriteFile(b.conf, []byte(config(port, b.ports, b.socks, opts)), 0o644); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
		if lastErr = b.start(); lastErr == nil {
			return b
		}
	}
	t.Fatalf("mosquitto: %v", lastErr)
	return nil
}

// shareTLSFiles copies the listeners' TLS files into dir and opens dir
// and its parent (the test's temporary directory) to other users:
// mosquitto started as root drops to its own user before it loads them.
// It rewrites the paths in listeners.
func shareTLSFiles(dir string, listeners []Listener) error {
	if !slices.ContainsFunc(listeners, func(l Listener) bool { return l.TLS != nil }) {
		return nil
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	for i := range listeners {
		if listeners[i].TLS == nil {
			continue
		}
		f := *listeners[i].TLS
		for j, p := range []*string{&f.CAFile, &f.CertFile, &f.KeyFile} {
			data, err := os.ReadFile(*p)
			if err != nil {
				return err
			}
			dst := filepath.Join(dir, fmt.Sprintf("tls-%d-%d.pem", i, j))
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				return err
			}
			*p = dst
		}
		listeners[i].TLS = &f
	}
	return nil
}

// unixSocketPath returns the path of a Unix socket in a new directory
// that mosquitto started as root can use after dropping to its own user
// (t.TempDir is mode 0700), short enough for the 108-byte limit.
func unixSocketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "mqttloop-unix-")
	if err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	return filepath.Join(dir, "mqtt.sock")
}

// config returns the configuration file for a broker on port, with the
// extra listeners on ports or Unix sockets socks.
func config(port int, ports []int, socks []string, o Options) string {
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"allow_anonymous true",
		"persistence false",
		"log_dest stderr",
		"log_timestamp_format %H:%M:%S",
	}
	if o.Verbose {
		lines = append(lines, "log_type all")
	}
	if o.MaxPacketSize > 0 {
		lines = append(lines, fmt.Sprintf("max_packet_size %d", o.MaxPacketSize))
	}
	if o.MaxKeepalive > 0 {
		lines = append(lines, fmt.Sprintf("max_keepalive %d", o.MaxKeepalive))
	}
	if o.MaxInflightMessages > 0 {
		lines = append(lines, fmt.Sprintf("max_inflight_messages %d", o.MaxInflightMessages))
	}
	if o.MaxQueuedMessages > 0 {
		lines = append(lines, fmt.Sprintf("max_queued_messages %d", o.MaxQueuedMessages))
	}
	if o.NoDelay {
		lines = append(lines, "set_tcp_nodelay true")
	}
	for i, l := range o.Listeners {
		if l.Unix {
			lines = append(lines, "listener 0 "+socks[i])
			continue
		}
		lines = append(lines, fmt.Sprintf("listener %d 127.0.0.1", ports[i]))
		if l.WebSocket {
			lines = append(lines, "protocol websockets")
		}
		if f := l.TLS; f != nil {
			lines = append(lines, "cafile "+f.CAFile, "certfile "+f.CertFile, "keyfile "+f.KeyFile)
			if f.RequireCertificate {
				lines = append(lines, "require_certificate true")
			}
		}
	}
	lines = append(lines, o.Extra...)
	return strings.Join(lines, "\n") + "\n"
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs mosquitto with the configuration file and waits until its port
// accepts connections.
func (b *Broker) start() error {
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(b.binary, "-c", b.conf)
	// An *os.File is handed to the child as is: no copying goroutine.
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", b.binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.mu.Lock()
	b.cmd, b.exited, b.logf = cmd, exited, logf
	b.mu.Unlock()

	if err := b.waitReady(exited); err != nil {
		b.stop()
		return err
	}
	// mosquitto opens its listeners one after the other, and the kernel
	// accepts on each as soon as it listens: the first one accepting says
	// nothing of the others (a slow start, under load or strace, left the
	// WebSocket listeners refusing connections). Wait for every one.
	for i, sock := range b.socks {
		network, addr := "unix", sock
		if sock == "" {
			network, addr = "tcp", b.ListenerAddr(i)
		}
		if err := b.waitDial(network, addr, exited); err != nil {
			b.stop()
			return err
		}
	}
	return nil
}

// waitReady polls the port until it accepts a TCP connection, the process
// exits, or readyTimeout passes.
func (b *Broker) waitReady(exited <-chan struct{}) error {
	return b.waitDial("tcp", b.Addr(), exited)
}

// waitDial polls addr until it accepts a connection, the process exits,
// or readyTimeout passes.
func (b *Broker) waitDial(network, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	retry := time.Millisecond
	for {
		conn, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting after %v: %w", addr, readyTimeout, err)
		}
		timer := time.NewTimer(retry)
		select {
		case <-exited:
			timer.Stop()
			return fmt.Errorf("mosquitto exited before accepting connections (%s); log:\n%s", b.cmd.ProcessState, b.Log())
		case <-timer.C:
		}
		retry = min(2*retry, 50*time.Millisecond)
	}
}

// Addr returns the broker's address, "127.0.0.1:PORT".
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// ListenerAddr returns the address, "127.0.0.1:PORT", of
// Options.Listeners[i], or its socket path if it is a Unix listener.
func (b *Broker) ListenerAddr(i int) string {
	if b.socks[i] != "" {
		return b.socks[i]
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ports[i]))
}

// URL returns the broker's address as "mqtt://127.0.0.1:PORT".
func (b *Broker) URL() string { return "mqtt://" + b.Addr() }

// Port returns the broker's TCP port; it stays the same across Restart.
func (b *Broker) Port() int { return b.port }

// ConfigPath returns the path of the generated configuration file.
func (b *Broker) ConfigPath() string { return b.conf }

// Log returns what mosquitto has logged so far.
func (b *Broker) Log() string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return string(data)
}

// Stop stops the broker (SIGTERM; SIGKILL if it has not exited after a few
// seconds) and waits for the process to exit. Clients see their connections
// close. Stopping a stopped broker does nothing.
func (b *Broker) Stop() {
	b.t.Helper()
	b.stop()
}

// Restart stops the broker if it runs and starts it again on the same port
// with the same configuration. Sessions are lost (persistence is off).
func (b *Broker) Restart() {
	b.t.Helper()
	b.stop()
	if err := b.start(); err != nil {
		b.t.Fatalf("mosquitto: restart: %v", err)
	}
}

// PID returns the process id of the running broker, or 0 when it is not
// running (benchmarks read its CPU time from /proc).
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Running reports whether the broker process is running.
func (b *Broker) Running() bool {
	b.mu.Lock()
	exited := b.exited
	b.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

func (b *Broker) stop() {
	b.mu.Lock()
	cmd, exited, logf := b.cmd, b.exited, b.logf
	b.cmd, b.exited, b.logf = nil, nil, nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(termTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-exited
	}
	_ = logf.Close()
}
