package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// process is a running mqttloop binary.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

func startBinary(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

func (p *process) waitOut(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p.stdout.waitFor(t, ctx, text)
}

func (p *process) waitErr(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p.stderr.waitFor(t, ctx, text)
}

// TestBinary builds the command and runs it as a newcomer would: a broker,
// a sub with a session file that is killed (SIGKILL) and started again
// without missing a message, pubs, and the broker stopped with SIGINT.
func TestBinary(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("the go tool is needed to build the binary")
			}
			t.Skip("no go tool")
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mqttloop")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Exit codes:") {
		t.Fatalf("mqttloop --help: %v\n%s", err, out)
	}
	if err := exec.Command(bin, "pub").Run(); err == nil || err.(*exec.ExitError).ExitCode() != exitUsage {
		t.Fatalf("mqttloop pub without flags: %v, want exit %d", err, exitUsage)
	}

	broker := startBinary(t, bin, "broker", "--tcp", "127.0.0.1:0", "--tls", "127.0.0.1:0", "--ws", "", "--wss", "", "--quic", "127.0.0.1:0", "--cert-dir", filepath.Join(dir, "certs"))
	broker.waitOut(t, "ready\n")
	urls := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  (tcp|tls|quic) +(\S+)$`).FindAllStringSubmatch(broker.stdout.String(), -1) {
		urls[m[1]] = m[2]
	}
	ca := filepath.Join(dir, "certs", "broker-cert.pem")
	pub := func(url, msg string) {
		t.Helper()
		if out, err := exec.Command(bin, "pub", "-L", url, "--cafile", ca, "-t", "bin/t", "-q", "1", "-m", msg).CombinedOutput(); err != nil {
			t.Fatalf("pub %s: %v\n%s", msg, err, out)
		}
	}

	session := filepath.Join(dir, "sub.session")
	sub := startBinary(t, bin, "sub", "-L", urls["quic"], "--cafile", ca, "-t", "bin/#", "-q", "1", "--session-file", session, "-d")
	sub.waitErr(t, "subscribed:")
	pub(urls["tcp"], "m1")
	sub.waitOut(t, "m1\n")
	if err := sub.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-sub.done
	sub.done <- nil
	pub(urls["tls"], "m2")
	pub(urls["quic"], "m3")

	sub2 := startBinary(t, bin, "sub", "-L", urls["quic"], "--cafile", ca, "-t", "bin/#", "-q", "1", "--session-file", session)
	sub2.waitOut(t, "m3\n")
	sub2.waitOut(t, "m2\n")
	if err := sub2.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := <-sub2.done; err != nil {
		t.Fatalf("sub after SIGINT: %v\n%s", err, sub2.stderr)
	}
	sub2.done <- nil

	if err := broker.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := <-broker.done; err != nil {
		t.Fatalf("broker after SIGINT: %v\n%s", err, broker.stderr)
	}
	broker.done <- nil
	if !strings.Contains(broker.stderr.String(), `msg=stopped`) {
		t.Fatalf("broker log:\n%s", broker.stderr)
	}
}
