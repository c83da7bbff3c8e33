package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/mqtttest"
)

const brokerExamples = `  mqttloop broker                               # tcp 1883, tls 8883, ws 8083, wss 8084, quic 14567 on 127.0.0.1
  mqttloop broker --tcp :1883 --tls '' --ws '' --quic ''   # plain TCP on every interface (--tls '' turns wss off too)
  mqttloop broker --persist broker.json         # retained messages and sessions survive a restart
  mqttloop broker --passwd users.txt            # lines 'user:password' or 'user:sha256:<hex>'
  mqttloop broker --tls-cert server.pem --tls-key server-key.pem
  mqttloop pub -L wss://localhost:8084/mqtt --cafile ~/.cache/mqttloop/broker-cert.pem -t hello -m world
  mqttloop sub -L quic://localhost:14567 --cafile ~/.cache/mqttloop/broker-cert.pem -t '#' -v
`

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "broker"
	fs := newFlagSet(name, `Runs a local MQTT broker (mochi-mqtt, as package mqtttest embeds it) with TCP, TLS,
WebSocket, secure WebSocket (wss) and QUIC listeners; every client is allowed unless
--passwd is given. TLS, wss and QUIC share one certificate: without --tls-cert a
self-signed one for localhost, kept in --cert-dir and printed with its fingerprint.
Stops on SIGINT/SIGTERM.`, brokerExamples, stderr)
	tcpAddr := fs.String("tcp", "127.0.0.1:1883", "TCP listener `address` (':1883' for every interface)")
	tlsAddr := fs.String("tls", "127.0.0.1:8883", "TLS listener `address` ('' for none; QUIC needs it for its certificate)")
	wsAddr := fs.String("ws", "127.0.0.1:8083", "WebSocket listener `address` ('' for none)")
	wssAddr := fs.String("wss", "127.0.0.1:8084", "secure WebSocket (wss://, any path) listener `address` ('' for none; uses the --tls certificate, so off by default with --tls '')")
	quicAddr := fs.String("quic", "127.0.0.1:14567", "QUIC (UDP) listener `address` ('' for none)")
	certFile := fs.String("tls-cert", "", "PEM server certificate `file` (default: self-signed)")
	keyFile := fs.String("tls-key", "", "PEM private key `file` of --tls-cert")
	cacheDir, _ := os.UserCacheDir()
	certDir := fs.String("cert-dir", filepath.Join(cacheDir, "mqttloop"), "`directory` keeping the self-signed certificate (broker-cert.pem, for clients' --cafile) and its key")
	persist := fs.String("persist", "", "keep retained messages and sessions in this JSON `file` across restarts")
	passwd := fs.String("passwd", "", "password `file`: lines 'user:password' or 'user:sha256:<hex of SHA-256>'; others are refused (0x86)")
	maxPacket := fs.Uint("max-packet-size", 0, "largest packet `bytes` accepted from clients (0: no limit)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	wssSet := false
	fs.Visit(func(f *flag.Flag) { wssSet = wssSet || f.Name == "wss" })
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageErr(stderr, name, "--log-level %q: want debug, info, warn or error", *logLevel)
	}
	switch {
	case *tcpAddr == "":
		return usageErr(stderr, name, "--tcp: the TCP listener is always on; give an address")
	case (*certFile == "") != (*keyFile == ""):
		return usageErr(stderr, name, "--tls-cert and --tls-key go together")
	case *quicAddr != "" && *tlsAddr == "":
		return usageErr(stderr, name, "--quic needs the TLS listener's certificate: keep --tls, or turn QUIC off with --quic ''")
	case *wssAddr != "" && *tlsAddr == "" && wssSet:
		return usageErr(stderr, name, "--wss needs the TLS listener's certificate: keep --tls, or turn wss off with --wss ''")
	}
	if *tlsAddr == "" {
		*wssAddr = "" // the default wss listener follows --tls ''
	}
	hopts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	if *logJSON {
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, hopts))
	}

	opts := mqtttest.Options{
		DisableCapture:            true,
		Logger:                    logger,
		ListenAddr:                *tcpAddr,
		MaximumPacketSize:         uint32(*maxPacket),
		Hooks:                     []mqtt.Hook{&logHook{log: logger}},
		WebSocket:                 *wsAddr != "",
		WebSocketListenAddr:       *wsAddr,
		SecureWebSocket:           *wssAddr != "",
		SecureWebSocketListenAddr: *wssAddr,
		QUIC:                      *quicAddr != "",
		QUICListenAddr:            *quicAddr,
		TLSListenAddr:             *tlsAddr,
	}
	var certNote string
	if *tlsAddr != "" {
		cert, note, err := serverCert(*certFile, *keyFile, *certDir)
		if err != nil {
			fmt.Fprintf(stderr, "mqttloop broker: %v\n", err)
			return exitError
		}
		certNote = note
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if *passwd != "" {
		users, err := readPasswd(*passwd)
		if err != nil {
			fmt.Fprintf(stderr, "mqttloop broker: --passwd: %v\n", err)
			return exitError
		}
		opts.Authenticate = func(c mqtttest.ConnectInfo) bool {
			ok := users.check(c.Username, c.Password)
			if !ok {
				logger.Warn("refused", "client", c.ClientID, "username", c.Username)
			}
			return ok
		}
	}
	var store *fileStore
	if *persist != "" {
		store = newFileStore(*persist)
		opts.Hooks = append(opts.Hooks, store)
	}
	b, err := mqtttest.Start(opts)
	if err != nil {
		if store != nil {
			_ = store.Stop()
		}
		fmt.Fprintf(stderr, "mqttloop broker: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, "mqttloop broker listening:")
	for _, l := range [][2]string{{"tcp", b.URL()}, {"tls", b.TLSURL()}, {"ws", b.WebSocketURL()}, {"wss", b.SecureWebSocketURL()}, {"quic", b.QUICURL()}} {
		if l[1] != "" {
			fmt.Fprintf(stdout, "  %-5s %s\n", l[0], friendlyURL(l[1]))
		}
	}
	if certNote != "" {
		fmt.Fprint(stdout, certNote)
	}
	if store != nil {
		store.mu.Lock()
		n := len(store.kv)
		store.mu.Unlock()
		fmt.Fprintf(stdout, "persistence: %s (%d records restored)\n", *persist, n)
	}
	if *passwd != "" {
		fmt.Fprintf(stdout, "authentication: users of %s\n", *passwd)
	} else {
		fmt.Fprintln(stdout, "authentication: none (every client is allowed)")
	}
	fmt.Fprintln(stdout, "ready")
	logger.Info("broker started")

	<-ctx.Done()
	logger.Info("stopping")
	err = b.Close()
	if store != nil {
		if serr := store.Stop(); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqttloop broker: %v\n", err)
		return exitError
	}
	logger.Info("stopped")
	return exitOK
}

// friendlyURL replaces an unspecified listening host (every interface)
// with localhost, the address a local client uses.
func friendlyURL(u string) string {
	for _, any := range []string{"[::]", "0.0.0.0"} {
		u = strings.Replace(u, "://"+any+":", "://localhost:", 1)
	}
	return u
}

// serverCert loads the certificate files, or the self-signed certificate
// kept in dir (made and saved there the first time). note tells the user
// what to give clients.
func serverCert(certFile, keyFile, dir string) (tls.Certificate, string, error) {
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return c, "", fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		return c, fmt.Sprintf("TLS certificate: %s\n  SHA-256 fingerprint: %s\n", certFile, fingerprint(c.Certificate[0])), nil
	}
	cp, kp := filepath.Join(dir, "broker-cert.pem"), filepath.Join(dir, "broker-key.pem")
	made := ""
	c, err := tls.LoadX509KeyPair(cp, kp)
	if err == nil {
		if leaf, perr := x509.ParseCertificate(c.Certificate[0]); perr != nil || time.Now().After(leaf.NotAfter.Add(-24*time.Hour)) {
			err = errors.New("expired")
		}
	}
	if err != nil {
		certPEM, keyPEM, gerr := selfSigned()
		if gerr != nil {
			return c, "", gerr
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return c, "", fmt.Errorf("--cert-dir: %w", err)
		}
		if err := writeAtomic(kp, keyPEM); err != nil {
			return c, "", fmt.Errorf("--cert-dir: %w", err)
		}
		if err := os.Chmod(kp, 0o600); err != nil {
			return c, "", fmt.Errorf("--cert-dir: %w", err)
		}
		if err := writeAtomic(cp, certPEM); err != nil {
			return c, "", fmt.Errorf("--cert-dir: %w", err)
		}
		if c, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return c, "", err
		}
		made = " (new)"
	}
	return c, fmt.Sprintf("TLS certificate: self-signed for localhost, 127.0.0.1 and ::1%s\n  SHA-256 fingerprint: %s\n  clients: --cafile %s\n",
		made, fingerprint(c.Certificate[0]), cp), nil
}

// selfSigned makes a certificate for localhost valid for a year.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mqttloop broker (self-signed)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// fingerprint is the SHA-256 of a DER certificate as colon-separated hex.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// passwdFile maps user names to passwords (plain or SHA-256 digests).
type passwdFile map[string]string

func readPasswd(path string) (passwdFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users := passwdFile{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pw, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:password", path, n) // the line is not echoed: it may hold a password
		}
		users[user] = pw
	}
	return users, sc.Err()
}

// check compares in constant time.
func (p passwdFile) check(user string, password []byte) bool {
	want, ok := p[user]
	if !ok {
		return false
	}
	if digest, ok := strings.CutPrefix(want, "sha256:"); ok {
		sum := sha256.Sum256(password)
		return subtle.ConstantTimeCompare([]byte(strings.ToLower(digest)), []byte(hex.EncodeToString(sum[:]))) == 1
	}
	return subtle.ConstantTimeCompare([]byte(want), password) == 1
}

// logHook logs clients connecting and leaving.
type logHook struct {
	mqtt.HookBase
	log *slog.Logger
}

func (h *logHook) ID() string { return "mqttloop-log" }

func (h *logHook) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}

func (h *logHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.log.Info("client connected", "client", cl.ID, "listener", cl.Net.Listener, "remote", cl.Net.Remote,
		"protocol", cl.Properties.ProtocolVersion, "clean", cl.Properties.Clean)
}

func (h *logHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.log.Info("client disconnected", "client", cl.ID, "reason", err, "session_kept", !expire)
}
