package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/reconnect"
)

// passwordEnv is the environment variable the password is taken from when
// neither -P nor --pw-file gives one.
const passwordEnv = "MQTTLOOP_PASSWORD"

// listFlag collects a repeatable flag; each value may be a comma-separated
// list when split is set.
type listFlag struct {
	vals  []string
	split bool
}

func (f *listFlag) String() string { return strings.Join(f.vals, ",") }

func (f *listFlag) Set(s string) error {
	if !f.split {
		f.vals = append(f.vals, s)
		return nil
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			f.vals = append(f.vals, v)
		}
	}
	return nil
}

// propFlag collects repeatable name=value user properties.
type propFlag struct{ kv []string }

func (f *propFlag) String() string { return "" }

func (f *propFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want name=value", s)
	}
	f.kv = append(f.kv, k, v)
	return nil
}

// connFlags are the connection flags every client command shares.
type connFlags struct {
	host, urls    listFlag
	port          int
	version       string
	id            string
	user          string
	password      string
	pwFile        string
	keepalive     int
	cafile        string
	cert, key     string
	insecure      bool
	useTLS        bool
	serverName    string
	persistent    bool
	sessionExpiry int64
	connTimeout   time.Duration
	debug         bool

	willTopic, willPayload string
	willQoS                int
	willRetain             bool
	willDelay              int
}

// register adds the connection flags to fs; what is the command, for the
// client id.
func (c *connFlags) register(fs *flag.FlagSet) {
	c.host.split = true
	c.urls.split = true
	fs.Var(&c.host, "h", "broker `host` (default localhost); a comma-separated list falls back in turn")
	fs.IntVar(&c.port, "p", 0, "broker `port` (default 1883, 8883 with TLS)")
	fs.Var(&c.urls, "L", "broker `URL`, repeatable or comma-separated for fallback in turn: mqtt://, mqtts://, ws://, wss://, quic://, unix:// (replaces -h/-p)")
	fs.StringVar(&c.version, "V", "5", "MQTT `version`: 5 (mqttv5) or 311 (mqttv311)")
	fs.StringVar(&c.id, "i", "", "client `id` (default mqttloop-<command>-<pid>-<random>)")
	fs.StringVar(&c.user, "u", "", "user `name`")
	fs.StringVar(&c.password, "P", "", "`password` (visible in the process list: prefer --pw-file or $"+passwordEnv+")")
	fs.StringVar(&c.pwFile, "pw-file", "", "read the password from this `file` (first line)")
	fs.IntVar(&c.keepalive, "k", 60, "keepalive in `seconds` (0: off)")
	fs.StringVar(&c.cafile, "cafile", "", "PEM `file` of CA certificates to verify the broker with (default: the system roots); implies TLS with -h")
	fs.StringVar(&c.cert, "cert", "", "PEM client certificate `file` for mutual TLS (needs --key)")
	fs.StringVar(&c.key, "key", "", "PEM private key `file` of --cert")
	fs.BoolVar(&c.insecure, "insecure", false, "do NOT verify the broker's certificate (testing only)")
	fs.BoolVar(&c.useTLS, "tls", false, "use TLS with -h/-p (mqtts://)")
	fs.StringVar(&c.serverName, "servername", "", "TLS server `name` to verify (default: the URL's host)")
	fs.BoolVar(&c.persistent, "c", false, "persistent session: no clean start; the broker keeps the session (MQTT 5: for -x seconds, default forever)")
	fs.Int64Var(&c.sessionExpiry, "x", -1, "session expiry `seconds` (MQTT 5; implies -c unless 0)")
	fs.DurationVar(&c.connTimeout, "connect-timeout", 30*time.Second, "give up connecting after this `duration` (with a server list, a quic:// server that does not answer gets 5 s before the next is tried)")
	fs.BoolVar(&c.debug, "d", false, "debug: log packets and events to stderr")
	fs.StringVar(&c.willTopic, "will-topic", "", "will `topic`: published by the broker if this client vanishes")
	fs.StringVar(&c.willPayload, "will-payload", "", "will `message`")
	fs.IntVar(&c.willQoS, "will-qos", 0, "will `QoS`")
	fs.BoolVar(&c.willRetain, "will-retain", false, "retain the will")
	fs.IntVar(&c.willDelay, "will-delay", 0, "will delay `seconds` (MQTT 5)")
}

// protocol returns the protocol version byte of -V.
func (c *connFlags) protocol() (byte, error) {
	switch strings.ToLower(c.version) {
	case "5", "mqttv5", "v5":
		return 5, nil
	case "311", "3.1.1", "4", "mqttv311", "v311":
		return 4, nil
	}
	return 0, fmt.Errorf("-V %q: want 5 or 311", c.version)
}

// tlsWanted: a TLS flag asks for mqtts:// when the server comes from -h.
func (c *connFlags) tlsWanted() bool {
	return c.useTLS || c.cafile != "" || c.cert != "" || c.insecure
}

// servers returns the broker URLs of -L, or of -h and -p.
func (c *connFlags) servers() ([]string, error) {
	if len(c.urls.vals) > 0 {
		if len(c.host.vals) > 0 || c.port != 0 {
			return nil, errors.New("-L gives the whole URL: leave out -h and -p")
		}
		for _, u := range c.urls.vals {
			if !strings.Contains(u, "://") {
				return nil, fmt.Errorf("-L %q: no scheme (mqtt://, mqtts://, ws://, wss://, quic://, unix://)", u)
			}
		}
		return c.urls.vals, nil
	}
	hosts := c.host.vals
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	scheme, port := "mqtt", 1883
	if c.tlsWanted() {
		scheme, port = "mqtts", 8883
	}
	if c.port != 0 {
		port = c.port
	}
	var urls []string
	for _, h := range hosts {
		urls = append(urls, scheme+"://"+net.JoinHostPort(h, strconv.Itoa(port)))
	}
	return urls, nil
}

// tlsConfig builds the TLS configuration of the flags (nil: the library's
// default, verifying against the system roots).
func (c *connFlags) tlsConfig() (*tls.Config, error) {
	if c.cafile == "" && c.cert == "" && c.key == "" && !c.insecure && c.serverName == "" {
		return nil, nil
	}
	if (c.cert == "") != (c.key == "") {
		return nil, errors.New("--cert and --key go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName, InsecureSkipVerify: c.insecure}
	if c.cafile != "" {
		pem, err := os.ReadFile(c.cafile)
		if err != nil {
			return nil, fmt.Errorf("--cafile: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cafile %s: no PEM certificate in it", c.cafile)
		}
	}
	if c.cert != "" {
		cert, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// passwordOf returns the password of -P, --pw-file or $MQTTLOOP_PASSWORD
// (nil: none), warning on stderr when it came from the command line.
func (c *connFlags) passwordOf(stderr io.Writer) ([]byte, error) {
	switch {
	case c.password != "" && c.pwFile != "":
		return nil, errors.New("-P and --pw-file: give one")
	case c.password != "":
		fmt.Fprintln(stderr, "warning: -P puts the password in the process list and the shell history; use --pw-file or $"+passwordEnv)
		return []byte(c.password), nil
	case c.pwFile != "":
		b, err := os.ReadFile(c.pwFile)
		if err != nil {
			return nil, fmt.Errorf("--pw-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return []byte(strings.TrimRight(line, "\r")), nil
	}
	if p, ok := os.LookupEnv(passwordEnv); ok {
		return []byte(p), nil
	}
	return nil, nil
}

// options builds the loop's options from the flags. what names the
// command in the default client id.
func (c *connFlags) options(what string, stderr io.Writer) (eventloop.Options, error) {
	var o eventloop.Options
	servers, err := c.servers()
	if err != nil {
		return o, err
	}
	v, err := c.protocol()
	if err != nil {
		return o, err
	}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return o, err
	}
	if c.insecure {
		fmt.Fprintln(stderr, "warning: --insecure: the broker's certificate is NOT verified; anyone on the path can impersonate it")
	}
	pw, err := c.passwordOf(stderr)
	if err != nil {
		return o, err
	}
	if c.willTopic == "" && (c.willPayload != "" || c.willQoS != 0 || c.willRetain || c.willDelay != 0) {
		return o, errors.New("--will-payload, --will-qos, --will-retain and --will-delay need --will-topic")
	}
	id := c.id
	if id == "" {
		// Unique per run, as mosquitto's clients make theirs: two
		// commands under one id would take each other's session over.
		var r [4]byte
		_, _ = rand.Read(r[:])
		id = fmt.Sprintf("mqttloop-%s-%d-%x", what, os.Getpid(), r)
	}
	o = eventloop.Options{
		Servers:         servers,
		ClientID:        id,
		Username:        c.user,
		Password:        pw,
		ProtocolVersion: v,
		KeepAlive:       time.Duration(c.keepalive) * time.Second,
		ConnectTimeout:  c.connTimeout,
		TLSConfig:       tlsCfg,
		CleanStart:      true,
		// A lost connection ends the command (exit 1), as with mosquitto's
		// clients: a broker that closes the connection over a publish would
		// otherwise be retried for ever. sub reconnects (see there).
		Reconnect: reconnect.Never,
	}
	if c.keepalive == 0 {
		o.KeepAlive = -1
	}
	if len(servers) == 1 {
		// Nothing to fall back to: a slow QUIC handshake may take the
		// whole connect timeout (with a list, the library's 5 s).
		o.QUICHandshakeTimeout = c.connTimeout
	}
	if c.persistent || c.sessionExpiry > 0 {
		o.CleanStart = false
		if v == 5 {
			o.SessionExpiry = eventloop.SessionNeverExpires
			if c.sessionExpiry >= 0 {
				o.SessionExpiry = time.Duration(c.sessionExpiry) * time.Second
			}
		}
	} else if c.sessionExpiry == 0 && v == 5 {
		o.SessionExpiry = 0
	}
	if c.willTopic != "" {
		o.Will = &eventloop.Will{Topic: c.willTopic, Payload: []byte(c.willPayload), QoS: byte(c.willQoS), Retain: c.willRetain,
			Delay: time.Duration(c.willDelay) * time.Second}
	}
	if c.debug {
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return o, nil
}

// exitFor maps the error that ended a run to an exit code, printing it.
func exitFor(stderr io.Writer, name string, err error) int {
	// A refusal (CONNACK, or an ack with a failure code) is exit 3; a
	// broker's DISCONNECT, whatever its reason code, is a lost connection.
	if errors.Is(err, eventloop.ErrConnectRefused) || errors.Is(err, eventloop.ErrRefusedByBroker) {
		fmt.Fprintf(stderr, "mqttloop %s: refused: %v\n", name, err)
		return exitRefused
	}
	fmt.Fprintf(stderr, "mqttloop %s: %v\n", name, err)
	return exitError
}
