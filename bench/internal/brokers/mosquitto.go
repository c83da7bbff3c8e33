// Package brokers starts the brokers the peer benchmark runs against.
package brokers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Mosquitto is a mosquitto process started with a generated
// configuration: set_tcp_nodelay true, no limit on messages in flight or
// queued per client, no connection limit.
type Mosquitto struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

// Binary finds the mosquitto executable ($PATH, then /usr/sbin).
func Binary() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mosquitto not found (apt-get install -y mosquitto)")
}

// StartMosquitto starts mosquitto on a free loopback port. The caller's
// RLIMIT_NOFILE is inherited: raise it first for many connections.
func StartMosquitto() (*Mosquitto, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	dir, err := os.MkdirTemp("", "peerbench-mosquitto-")
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(dir, 0o777)
	conf := strings.Join([]string{
		"listener " + port + " 127.0.0.1",
		"allow_anonymous true",
		"set_tcp_nodelay true",
		"max_inflight_messages 0",
		"max_queued_messages 0",
		"max_connections -1",
		"persistence false",
		"log_dest file " + filepath.Join(dir, "mosquitto.log"),
		"log_type error",
		"log_type warning",
		"",
	}, "\n")
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(filepath.Join(dir, "stderr.log"), 0o666)
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &Mosquitto{cmd: cmd, addr: addr, dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return m, nil
		}
		if time.Now().After(deadline) {
			m.Stop()
			log, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
			return nil, fmt.Errorf("mosquitto did not accept connections on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is host:port of the MQTT listener.
func (m *Mosquitto) Addr() string { return m.addr }

// URL is the mqtt:// URL of the listener.
func (m *Mosquitto) URL() string { return "mqtt://" + m.addr }

// PID is the broker's process id.
func (m *Mosquitto) PID() int { return m.cmd.Process.Pid }

// Stop terminates the broker and removes its directory.
func (m *Mosquitto) Stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(m.dir)
}
