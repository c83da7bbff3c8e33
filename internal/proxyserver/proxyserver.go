// Package proxyserver starts real proxies for tests, the way package
// mosquitto starts brokers: Debian's tinyproxy (HTTP CONNECT) and
// dante-server (danted, SOCKS5), each on a free loopback port with a
// configuration of its own, stopped at the end of the test. A missing
// program skips the test, or fails it when the CI environment variable is
// set (scripts/test.sh installs both).
package proxyserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts used as failure guards only.
const (
	readyTimeout = 20 * time.Second
	termTimeout  = 10 * time.Second
)

// The system account dante checks SOCKS5 user names and passwords against
// (its "username" method reads the system's password database).
// scripts/test.sh creates it; see DanteUserHint.
const (
	DanteUser     = "mqttloop-socks"
	DantePassword = "socks-test-password"
)

// DanteUserHint tells how to create DanteUser (as root).
const DanteUserHint = "useradd --system --no-create-home --shell /usr/sbin/nologin " + DanteUser +
	" && echo '" + DanteUser + ":" + DantePassword + "' | chpasswd (scripts/test.sh does this)"

// Options configures a proxy.
type Options struct {
	// Auth makes the proxy require credentials: tinyproxy takes Username
	// and Password (HTTP Basic); dante takes DanteUser and DantePassword
	// only (Username and Password are ignored).
	Auth     bool
	Username string
	Password string
}

// Proxy is a running proxy owned by a test.
type Proxy struct {
	t       testing.TB
	scheme  string
	port    int
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logf   *os.File
}

// Addr returns the proxy's address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// URL returns the proxy's URL with the given credentials ("" user: none),
// e.g. "socks5://user:pass@127.0.0.1:PORT".
func (p *Proxy) URL(username, password string) string {
	u := url.URL{Scheme: p.scheme, Host: p.Addr()}
	if username != "" {
		u.User = url.UserPassword(username, password)
	}
	return u.String()
}

// Log returns what the proxy has logged so far.
func (p *Proxy) Log() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return string(data)
}

// binary finds a program in $PATH or the sbin directories.
func binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH, /usr/sbin, /usr/local/sbin or /usr/bin", name)
}

// missing fails the test under CI and skips it otherwise.
func missing(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("proxyserver: %s; CI must provide it (%s)", what, hint)
	}
	t.Skipf("proxyserver: %s; install it to run this test (%s)", what, hint)
}

// StartTinyproxy starts tinyproxy (HTTP CONNECT to any port) for the test.
func StartTinyproxy(t testing.TB, opts Options) *Proxy {
	t.Helper()
	bin, err := binary("tinyproxy")
	if err != nil {
		missing(t, err.Error(), "apt-get install -y tinyproxy")
	}
	return start(t, "http", func(dir string, port int) ([]string, error) {
		logPath := filepath.Join(dir, "proxy.log")
		lines := []string{
			fmt.Sprintf("Port %d", port),
			"Listen 127.0.0.1",
			"Timeout 600",
			"MaxClients 100",
			"Allow 127.0.0.1",
			"LogLevel Info",
			"LogFile \"" + logPath + "\"",
			"DisableViaHeader Yes",
		}
		if os.Getuid() == 0 {
			// tinyproxy started as root drops to this user.
			lines = append(lines, "User nobody", "Group nogroup")
		}
		if opts.Auth {
			lines = append(lines, fmt.Sprintf("BasicAuth %s %s", opts.Username, opts.Password))
		}
		conf := filepath.Join(dir, "tinyproxy.conf")
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		return []string{bin, "-d", "-c", conf}, nil
	})
}

// StartDante starts danted (SOCKS5) for the test. With Options.Auth it
// requires DanteUser and DantePassword, and must run as root (dante reads
// the shadow password file).
func StartDante(t testing.TB, opts Options) *Proxy {
	t.Helper()
	bin, err := binary("danted")
	if err != nil {
		missing(t, err.Error(), "apt-get install -y dante-server")
	}
	method := "none"
	if opts.Auth {
		if _, err := user.Lookup(DanteUser); err != nil {
			missing(t, fmt.Sprintf("system user %s does not exist", DanteUser), DanteUserHint)
		}
		if os.Getuid() != 0 {
			missing(t, "dante checks passwords only when started as root", "run the tests as root")
		}
		method = "username"
	}
	return start(t, "socks5", func(dir string, port int) ([]string, error) {
		lines := []string{
			"logoutput: stderr",
			fmt.Sprintf("internal: 127.0.0.1 port = %d", port),
			"external: 127.0.0.1",
			"socksmethod: " + method,
			"clientmethod: none",
		}
		if os.Getuid() == 0 {
			// Settings come before the rules.
			lines = append(lines, "user.privileged: root", "user.unprivileged: nobody")
		}
		lines = append(lines,
			"client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
			"socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
		)
		conf := filepath.Join(dir, "danted.conf")
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		return []string{bin, "-f", conf}, nil
	})
}

// start writes a configuration for a free port (command returns the
// command line) and runs the proxy until it accepts connections, trying a
// few ports: another process may take a free port first.
func start(t testing.TB, scheme string, command func(dir string, port int) ([]string, error)) *Proxy {
	t.Helper()
	dir := t.TempDir()
	// A proxy started as root drops privileges before writing its log.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatalf("proxyserver: %v", err)
		}
	}
	p := &Proxy{t: t, scheme: scheme, logPath: filepath.Join(dir, "proxy.log")}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s proxy log (%s):\n%s", scheme, p.logPath, p.Log())
		}
	})
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("proxyserver: %v", err)
		}
		p.port = port
		argv, err := command(dir, port)
		if err != nil {
			t.Fatalf("proxyserver: %v", err)
		}
		if lastErr = p.run(argv); lastErr == nil {
			return p
		}
	}
	t.Fatalf("proxyserver: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (p *Proxy) run(argv []string) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	_ = os.Chmod(p.logPath, 0o666)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: dante's children go with it at Stop.
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited, p.logf = cmd, exited, logf
	p.mu.Unlock()

	deadline := time.Now().Add(readyTimeout)
	retry := time.Millisecond
	for {
		conn, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%s not accepting after %v: %w", p.Addr(), readyTimeout, err)
		}
		timer := time.NewTimer(retry)
		select {
		case <-exited:
			timer.Stop()
			p.stop()
			return fmt.Errorf("%s exited before accepting connections; log:\n%s", argv[0], p.Log())
		case <-timer.C:
		}
		retry = min(2*retry, 50*time.Millisecond)
	}
}

// Stop stops the proxy and waits for it to exit; clients see their
// tunnels close.
func (p *Proxy) Stop() { p.stop() }

func (p *Proxy) stop() {
	p.mu.Lock()
	cmd, exited, logf := p.cmd, p.exited, p.logf
	p.cmd, p.exited, p.logf = nil, nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	terminateGroup(cmd)
	timer := time.NewTimer(termTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		killGroup(cmd)
		<-exited
	}
	// The group's other members (dante's children) end with it.
	killGroup(cmd)
	_ = logf.Close()
}

// errNotRunning is reported when a proxy that should run has exited.
var errNotRunning = errors.New("proxyserver: proxy not running")

// Running reports whether the proxy runs.
func (p *Proxy) Running() error {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return errNotRunning
	}
	select {
	case <-exited:
		return errNotRunning
	default:
		return nil
	}
}
