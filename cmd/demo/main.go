package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "demo:", err)
		fmt.Fprintln(os.Stderr, "run 'demo -h' for the flags")
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag or flag combination.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// headerFlag collects repeated -header 'Name: value' flags.
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string {
	if f == nil || len(f.h) == 0 {
		return ""
	}
	return fmt.Sprint(len(f.h), " headers")
}

func (f *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("%q: want 'Name: value'", s)
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
	return nil
}

// config is the parsed command line.
type config struct {
	broker     string
	transport  string
	topic      string
	count      int
	timeout    time.Duration
	verbose    bool
	protocol   int
	user       string
	password   string
	caFile     string
	certFile   string
	keyFile    string
	serverName string
	insecure   bool
	keyLog     bool
	zeroRTT    bool
	headers    headerFlag
}

// transports are the listeners the embedded broker offers (-transport).
var transports = []string{"tcp", "tls", "ws", "quic"}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.broker, "broker", "", "comma-separated broker URLs, tried in turn: mqtt:// (tcp://), mqtts:// (ssl://, tls://), ws://, wss://, quic://, unix://\n(empty starts an embedded broker on loopback, see -transport)")
	fs.StringVar(&c.transport, "transport", "tcp", "listener of the embedded broker (without -broker): "+strings.Join(transports, ", "))
	fs.StringVar(&c.topic, "topic", fmt.Sprintf("mqttloop/demo/%d", os.Getpid()), "topic to publish to and subscribe on")
	fs.IntVar(&c.count, "count", 3, "messages to publish at each QoS")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up after this long")
	fs.BoolVar(&c.verbose, "v", false, "log every packet (debug)")
	fs.IntVar(&c.protocol, "protocol", 5, "MQTT version: 5 (MQTT 5) or 4 (MQTT 3.1.1)")
	fs.StringVar(&c.user, "user", "", "user name")
	fs.StringVar(&c.password, "password", "", "password (never printed; visible to other local users in the process list)")
	fs.StringVar(&c.caFile, "cafile", "", "PEM file of CA certificates to verify the server with (default: the system roots)")
	fs.StringVar(&c.certFile, "cert", "", "PEM client certificate for mutual TLS (needs -key)")
	fs.StringVar(&c.keyFile, "key", "", "PEM private key of -cert")
	fs.StringVar(&c.serverName, "servername", "", "server name for SNI and verification (default: the host of each URL)")
	fs.BoolVar(&c.insecure, "insecure", false, "do NOT verify the server certificate (testing only)")
	fs.BoolVar(&c.keyLog, "keylog", false, "append TLS secrets to the file named by $SSLKEYLOGFILE, if set (for Wireshark)")
	fs.BoolVar(&c.zeroRTT, "0rtt", false, "QUIC 0-RTT: after the demo, reconnect once with CONNECT in 0-RTT data")
	fs.Var(&c.headers, "header", "WebSocket upgrade header `'Name: value'` (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	switch {
	case fs.NArg() > 0:
		return nil, usagef("unexpected argument %q (flags only)", fs.Arg(0))
	case c.protocol != 4 && c.protocol != 5:
		return nil, usagef("-protocol %d: want 5 (MQTT 5) or 4 (MQTT 3.1.1)", c.protocol)
	case c.count < 1:
		return nil, usagef("-count %d: want at least 1", c.count)
	case c.timeout <= 0:
		return nil, usagef("-timeout %v: want a positive duration", c.timeout)
	case c.certFile != "" && c.keyFile == "":
		return nil, usagef("-cert needs -key (the client certificate's private key)")
	case c.keyFile != "" && c.certFile == "":
		return nil, usagef("-key needs -cert (the client certificate)")
	case c.broker != "" && set["transport"]:
		return nil, usagef("-transport chooses the embedded broker's listener; with -broker the scheme of each URL does")
	}
	if c.broker == "" {
		known := false
		for _, t := range transports {
			known = known || c.transport == t
		}
		if !known {
			return nil, usagef("-transport %q: want one of %s", c.transport, strings.Join(transports, ", "))
		}
	}
	return c, nil
}

// servers splits -broker into URLs.
func (c *config) servers() ([]string, error) {
	var urls []string
	for _, u := range strings.Split(c.broker, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return nil, usagef("-broker %q: empty URL in the list", c.broker)
		}
		if !strings.Contains(u, "://") {
			return nil, usagef("-broker: %q has no scheme (mqtt://, mqtts://, ws://, wss://, quic:// or unix://)", u)
		}
		urls = append(urls, u)
	}
	return urls, nil
}

// tlsConfig builds the client's TLS configuration from the flags; nil
// when no flag asks for anything (the library then verifies against the
// system roots). roots, if not nil, are trusted in addition to -cafile.
func (c *config) tlsConfig(roots *x509.CertPool) (*tls.Config, error) {
	if roots == nil && c.caFile == "" && c.certFile == "" && c.serverName == "" && !c.insecure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName, InsecureSkipVerify: c.insecure}
	if roots != nil || c.caFile != "" {
		if roots == nil {
			roots = x509.NewCertPool()
		}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("-cafile: %w", err)
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-cafile %s: no PEM certificate in it", c.caFile)
			}
		}
		cfg.RootCAs = roots
	}
	if c.certFile != "" {
		cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// startEmbedded starts the embedded broker with the listener of
// -transport and returns it with the URL to connect to.
func startEmbedded(transport string) (*mqtttest.Broker, string, error) {
	opts := mqtttest.Options{DisableCapture: true}
	switch transport {
	case "tls":
		opts.TLS = testcerts.Get().ServerConfig(testcerts.Get().Server, false)
	case "ws":
		opts.WebSocket = true
	case "quic":
		opts.QUIC = true
	}
	b, err := mqtttest.Start(opts)
	if err != nil {
		return nil, "", fmt.Errorf("starting the embedded broker: %w", err)
	}
	url := map[string]string{"tcp": b.URL(), "tls": b.TLSURL(), "ws": b.WebSocketURL(), "quic": b.QUICURL()}[transport]
	return b, url, nil
}

func hasScheme(urls []string, schemes ...string) bool {
	for _, u := range urls {
		for _, s := range schemes {
			if strings.HasPrefix(strings.ToLower(u), s+"://") {
				return true
			}
		}
	}
	return false
}

// run is the demo: args are the command-line flags; the story goes to
// stdout, warnings and the packet log (-v) to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}

	var servers []string
	var roots *x509.CertPool
	if c.broker == "" {
		b, url, err := startEmbedded(c.transport)
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Fprintf(stdout, "embedded broker listening at %s (-transport %s)\n", url, c.transport)
		servers = []string{url}
		if c.transport == "tls" || c.transport == "quic" {
			// Trust the CA of the generated test certificates.
			roots = testcerts.Get().ClientConfig().RootCAs
		}
	} else if servers, err = c.servers(); err != nil {
		return err
	}

	tlsCfg, err := c.tlsConfig(roots)
	if err != nil {
		return err
	}
	if c.insecure {
		fmt.Fprintln(stderr, "WARNING: -insecure: the server certificate is NOT verified; anyone on the path can impersonate the broker and read the traffic. Use it for testing only.")
	}
	if c.keyLog {
		if f := os.Getenv("SSLKEYLOGFILE"); f != "" {
			fmt.Fprintf(stderr, "WARNING: -keylog: TLS secrets are appended to %s ($SSLKEYLOGFILE); whoever holds that file can decrypt the traffic\n", f)
		} else {
			fmt.Fprintln(stderr, "-keylog: SSLKEYLOGFILE is not set, so no TLS secrets are logged")
		}
	}
	if c.zeroRTT && !hasScheme(servers, "quic") {
		fmt.Fprintln(stderr, "note: -0rtt applies to quic:// servers only")
	}
	if len(c.headers.h) > 0 && !hasScheme(servers, "ws", "wss") {
		fmt.Fprintln(stderr, "note: -header applies to ws:// and wss:// servers only")
	}

	var logger *slog.Logger
	if c.verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := eventloop.Options{
		Servers:   servers,
		ClientID:  fmt.Sprintf("mqttloop-demo-%d", os.Getpid()),
		Username:  c.user,
		KeepAlive: 30 * time.Second,
		Logger:    logger,
		// CleanStart: the demo leaves no session behind on the broker
		// (on MQTT 3.1.1 the default, false, asks for a persistent one).
		CleanStart:      true,
		ProtocolVersion: byte(c.protocol),
		TLSConfig:       tlsCfg,
		WebSocketHeader: c.headers.h,
		QUIC0RTT:        c.zeroRTT,
		KeyLogFromEnv:   c.keyLog,
	}
	if c.password != "" {
		opts.Password = []byte(c.password)
	}
	loop, err := eventloop.New(opts)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	transport, err := exchange(ctx, loop, c, stdout)
	if err != nil {
		return err
	}
	if c.zeroRTT && transport == "quic" {
		// The loop kept the session ticket of the first connection: a new
		// run reconnects with CONNECT in 0-RTT data (if the server takes it).
		fmt.Fprintln(stdout, "reconnecting to show QUIC 0-RTT")
		return reconnect(ctx, loop, stdout)
	}
	return nil
}

// printConnected reports which server and transport the loop connected to.
func printConnected(w io.Writer, ev eventloop.Connected) {
	zero := "not used"
	if ev.Used0RTT {
		zero = "used"
	}
	fmt.Fprintf(w, "connected to %s over %s (0-RTT: %s, session present: %v)\n", ev.Server, ev.Transport, zero, ev.SessionPresent)
}

// exchange subscribes, publishes -count messages at each QoS, waits for
// them to come back and disconnects. It returns the transport used last.
func exchange(ctx context.Context, loop *eventloop.EventLoop, c *config, stdout io.Writer) (string, error) {
	requests := make(chan eventloop.Request, 3*c.count+1)
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: c.topic + "/#", QoS: 2}}}

	want := 3 * c.count
	received := 0
	transport := ""
	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			if errors.Is(err, eventloop.ErrRequestsDone) {
				fmt.Fprintf(stdout, "done: %d messages published and received\n", want)
				return transport, nil
			}
			return transport, err
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			transport = ev.Transport
			printConnected(stdout, ev)
		case eventloop.Subscribed:
			if err := ev.Err(); err != nil {
				return transport, err
			}
			fmt.Fprintf(stdout, "subscribed to %s/# (granted QoS %v)\n", c.topic, ev.ReasonCodes)
			for qos := byte(0); qos <= 2; qos++ {
				for i := 0; i < c.count; i++ {
					requests <- eventloop.Publish{
						Topic:   fmt.Sprintf("%s/qos%d", c.topic, qos),
						QoS:     qos,
						Payload: []byte(fmt.Sprintf("message %d at QoS %d", i+1, qos)),
					}
				}
			}
		case eventloop.Published:
			if ev.Err != nil {
				return transport, ev.Err
			}
			fmt.Fprintf(stdout, "  acknowledged by the broker: %s (QoS %d)\n", ev.Request.Topic, ev.Request.QoS)
		case eventloop.Message:
			received++
			fmt.Fprintf(stdout, "received %s (QoS %d): %s\n", ev.Topic, ev.QoS, ev.Payload)
			if received == want {
				close(requests) // the run ends once every publish is acknowledged
			}
		case eventloop.RequestFailed:
			return transport, ev.Err
		case eventloop.Disconnected:
			if !errors.Is(ev.Err, eventloop.ErrRequestsDone) {
				fmt.Fprintln(stdout, "disconnected:", ev.Err)
			}
		}
	}
}

// reconnect runs the loop once more without requests: it connects and
// disconnects at once.
func reconnect(ctx context.Context, loop *eventloop.EventLoop, stdout io.Writer) error {
	requests := make(chan eventloop.Request)
	close(requests)
	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if errors.Is(err, eventloop.ErrRequestsDone) {
			fmt.Fprintln(stdout, "disconnected")
			return nil
		}
		if err != nil {
			return err
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			printConnected(stdout, ev)
		case eventloop.Disconnected:
			if !errors.Is(ev.Err, eventloop.ErrRequestsDone) {
				fmt.Fprintln(stdout, "disconnected:", ev.Err)
			}
		}
	}
}
