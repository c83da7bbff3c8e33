package netio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Proxy errors. Errors of a dial through a proxy wrap them; test with
// errors.Is. They name the proxy without its user information.
var (
	// ErrProxyAuth: the proxy refused the credentials of the proxy URL, or
	// requires credentials and the URL has none (SOCKS5 user name and
	// password, RFC 1929; HTTP 407 Proxy Authentication Required).
	ErrProxyAuth = errors.New("netio: proxy authentication failed")
	// ErrProxy: the proxy could not or would not connect to the server
	// (SOCKS5 reply code, HTTP status other than 2xx), or did not speak
	// its protocol.
	ErrProxy = errors.New("netio: proxy failed")
)

// maxProxyResponse bounds the header of an HTTP CONNECT response.
const maxProxyResponse = 16 << 10

// ParseProxy parses and checks a proxy URL:
//
//	socks5://[user:password@]host[:1080]   SOCKS5, server names resolved here
//	socks5h://[user:password@]host[:1080]  SOCKS5, server names resolved by the proxy
//	http://[user:password@]host[:80]       HTTP CONNECT (RFC 9110 §9.3.6)
//
// The user information authenticates to the proxy (SOCKS5 user name and
// password, RFC 1929; HTTP Basic). It never appears in errors.
func ParseProxy(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("netio: proxy URL %q: %w", redactRaw(raw), err)
	}
	port := ""
	switch u.Scheme {
	case "socks5", "socks5h":
		port = "1080"
	case "http":
		port = "80"
	default:
		return nil, fmt.Errorf("%w %q in proxy URL %q (supported: socks5, socks5h, http)", ErrUnsupportedScheme, u.Scheme, redact(u))
	}
	if u.Hostname() == "" || u.Opaque != "" {
		return nil, fmt.Errorf("netio: proxy URL %q: no host; write %s://host:port", redact(u), u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("netio: proxy URL %q: unexpected path %q", redact(u), u.Path)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}

// FixedProxy returns a DialOptions.Proxy that sends every server (except
// unix:// ones) through proxy, a URL checked by ParseProxy.
func FixedProxy(proxy *url.URL) func(server *url.URL) (*url.URL, error) {
	return func(*url.URL) (*url.URL, error) { return proxy, nil }
}

// ProxyFromEnvironment is a DialOptions.Proxy that follows the
// environment variables curl and most tools follow: ws:// servers go
// through HTTP_PROXY, wss:// through HTTPS_PROXY, and any server through
// ALL_PROXY when the variable of its scheme is unset (mqtt:// and
// mqtts:// only ever use ALL_PROXY); NO_PROXY lists hosts to reach
// directly (comma-separated names, which include their subdomains, IP
// addresses, CIDR ranges, each optionally with a port, or "*"). The lower-case
// names are read too. Each value is a proxy URL as ParseProxy accepts; a
// value without a scheme is taken as http://. unix:// and quic:// servers
// are always reached directly. Loopback addresses are not special: list
// them in NO_PROXY (NO_PROXY=localhost,127.0.0.1) for a local broker.
func ProxyFromEnvironment(server *url.URL) (*url.URL, error) {
	return proxyFromEnv(server, os.Getenv)
}

func proxyFromEnv(server *url.URL, getenv func(string) string) (*url.URL, error) {
	get := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return getenv(lower(name))
	}
	var p string
	switch server.Scheme {
	case "unix", "quic":
		return nil, nil
	case "ws":
		p = get("HTTP_PROXY")
	case "wss":
		p = get("HTTPS_PROXY")
	}
	if p == "" {
		p = get("ALL_PROXY")
	}
	if p == "" {
		return nil, nil
	}
	if noProxy(get("NO_PROXY"), server.Host) {
		return nil, nil
	}
	if !strings.Contains(p, "://") {
		p = "http://" + p
	}
	return ParseProxy(p)
}

// noProxy reports whether NO_PROXY (list) names hostport: "*" names every
// host; an IP address or CIDR range names the addresses in it; a name
// names itself and its subdomains (a leading dot is optional); an entry
// with a port names that port only.
func noProxy(list, hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	ip := net.ParseIP(host)
	for _, e := range strings.Split(list, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if e == "*" {
			return true
		}
		if _, cidr, err := net.ParseCIDR(e); err == nil {
			if ip != nil && cidr.Contains(ip) {
				return true
			}
			continue
		}
		if h, p, err := net.SplitHostPort(e); err == nil {
			if p != port {
				continue
			}
			e = h
		}
		if eip := net.ParseIP(strings.Trim(e, "[]")); eip != nil {
			if ip != nil && eip.Equal(ip) {
				return true
			}
			continue
		}
		e = strings.TrimSuffix(strings.TrimPrefix(e, "."), ".")
		if host == e || strings.HasSuffix(host, "."+e) {
			return true
		}
	}
	return false
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// dialProxy connects to target ("host:port") through the proxy p and
// returns the proxy's TCP connection, on which the tunnel to target is
// established: a socket like any other, so the caller keeps the fast
// readiness of sockets. The handshake is bounded by ctx: its deadline
// becomes the connection's, and cancelling ctx ends the handshake
// (context.AfterFunc starts a goroutine only when ctx is cancelled).
func dialProxy(ctx context.Context, d *net.Dialer, p *url.URL, target string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", p.Host)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", redact(p), err)
	}
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("proxy %s: %w", redact(p), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	switch p.Scheme {
	case "http":
		err = httpConnect(c, p, target)
	default:
		err = socks5Connect(ctx, c, p, target)
	}
	if !stop() && err == nil {
		// ctx was cancelled as the handshake ended: the deadline has been
		// (or is being) moved to the past.
		err = ctx.Err()
	}
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	if err != nil {
		_ = c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return nil, fmt.Errorf("proxy %s to %s: %w", redact(p), target, err)
	}
	return c, nil
}

// httpConnect asks an HTTP proxy for a tunnel to target with CONNECT. It
// reads the response byte by byte up to its blank line, so that nothing
// of the tunnel is consumed.
func httpConnect(c net.Conn, p *url.URL, target string) error {
	var req bytes.Buffer
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if p.User != nil {
		pw, _ := p.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(p.User.Username() + ":" + pw))
		fmt.Fprintf(&req, "Proxy-Authorization: Basic %s\r\n", cred)
	}
	req.WriteString("\r\n")
	if _, err := c.Write(req.Bytes()); err != nil {
		return err
	}
	head := make([]byte, 0, 256)
	var b [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if len(head) >= maxProxyResponse {
			return fmt.Errorf("%w: response header longer than %d bytes", ErrProxy, maxProxyResponse)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: closed the connection before answering CONNECT", ErrProxy)
			}
			return err
		}
		head = append(head, b[0])
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("%w: not an HTTP response to CONNECT: %w", ErrProxy, err)
	}
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusProxyAuthRequired || resp.StatusCode == http.StatusUnauthorized:
		// 407 is the proxy's code; tinyproxy 1.11 answers a CONNECT
		// without credentials with 401.
		if p.User == nil {
			return fmt.Errorf("%w: the proxy requires credentials (HTTP %s); put them in the proxy URL", ErrProxyAuth, resp.Status)
		}
		return fmt.Errorf("%w: HTTP %s", ErrProxyAuth, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("%w: CONNECT answered HTTP %s", ErrProxy, resp.Status)
	}
	return nil
}

// SOCKS5 (RFC 1928) and its user name/password authentication (RFC 1929).
const (
	socks5Version      = 5
	socks5NoAuth       = 0x00
	socks5UserPass     = 0x02
	socks5NoAcceptable = 0xFF
	socks5CmdConnect   = 0x01
	socks5IPv4         = 0x01
	socks5Domain       = 0x03
	socks5IPv6         = 0x04
)

var socks5Replies = [...]string{
	1: "general SOCKS server failure",
	2: "connection not allowed by ruleset",
	3: "network unreachable",
	4: "host unreachable",
	5: "connection refused",
	6: "TTL expired",
	7: "command not supported",
	8: "address type not supported",
}

// socks5Connect asks a SOCKS5 proxy to connect to target. With the socks5
// scheme a host name is resolved here; with socks5h the proxy resolves it.
func socks5Connect(ctx context.Context, c net.Conn, p *url.URL, target string) error {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q: %w", portStr, err)
	}
	req := []byte{socks5Version, socks5CmdConnect, 0}
	ip := net.ParseIP(host)
	if ip == nil && p.Scheme == "socks5" {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return err
		}
		if len(ips) == 0 {
			return fmt.Errorf("no address for %s", host)
		}
		ip = net.IP(ips[0].Unmap().AsSlice())
	}
	switch {
	case ip == nil:
		if len(host) > 255 {
			return fmt.Errorf("host name of %d bytes, SOCKS5 allows 255", len(host))
		}
		req = append(req, socks5Domain, byte(len(host)))
		req = append(req, host...)
	case ip.To4() != nil:
		req = append(req, socks5IPv4)
		req = append(req, ip.To4()...)
	default:
		req = append(req, socks5IPv6)
		req = append(req, ip.To16()...)
	}
	req = append(req, byte(port>>8), byte(port))

	// Greeting: the methods offered. With credentials, both: a proxy that
	// needs none may choose none.
	greeting := []byte{socks5Version, 1, socks5NoAuth}
	if p.User != nil {
		greeting = []byte{socks5Version, 2, socks5NoAuth, socks5UserPass}
	}
	if _, err := c.Write(greeting); err != nil {
		return err
	}
	var sel [2]byte
	if err := readProxy(c, sel[:]); err != nil {
		return err
	}
	if sel[0] != socks5Version {
		return fmt.Errorf("%w: not a SOCKS5 proxy (version %d)", ErrProxy, sel[0])
	}
	switch sel[1] {
	case socks5NoAuth:
	case socks5UserPass:
		if p.User == nil {
			return fmt.Errorf("%w: the proxy requires a user name and password; put them in the proxy URL", ErrProxyAuth)
		}
		if err := socks5Auth(c, p.User); err != nil {
			return err
		}
	case socks5NoAcceptable:
		if p.User == nil {
			return fmt.Errorf("%w: the proxy accepts none of the offered methods (no authentication); it may require a user name and password", ErrProxyAuth)
		}
		return fmt.Errorf("%w: the proxy accepts none of the offered methods (none, user name and password)", ErrProxyAuth)
	default:
		return fmt.Errorf("%w: the proxy chose method %#02x, which was not offered", ErrProxy, sel[1])
	}

	if _, err := c.Write(req); err != nil {
		return err
	}
	var rep [4]byte
	if err := readProxy(c, rep[:]); err != nil {
		return err
	}
	if rep[0] != socks5Version {
		return fmt.Errorf("%w: reply of version %d", ErrProxy, rep[0])
	}
	if rep[1] != 0 {
		what := "unknown reply code"
		if int(rep[1]) < len(socks5Replies) && socks5Replies[rep[1]] != "" {
			what = socks5Replies[rep[1]]
		}
		return fmt.Errorf("%w: SOCKS5 reply %#02x (%s)", ErrProxy, rep[1], what)
	}
	// The bound address and port, which the client does not need.
	var n int
	switch rep[3] {
	case socks5IPv4:
		n = 4
	case socks5IPv6:
		n = 16
	case socks5Domain:
		var l [1]byte
		if err := readProxy(c, l[:]); err != nil {
			return err
		}
		n = int(l[0])
	default:
		return fmt.Errorf("%w: reply with address type %#02x", ErrProxy, rep[3])
	}
	rest := make([]byte, n+2)
	return readProxy(c, rest)
}

// socks5Auth authenticates with a user name and password (RFC 1929).
func socks5Auth(c net.Conn, user *url.Userinfo) error {
	name := user.Username()
	pw, _ := user.Password()
	if len(name) == 0 || len(name) > 255 || len(pw) > 255 {
		return fmt.Errorf("%w: SOCKS5 user names are 1-255 bytes, passwords at most 255", ErrProxyAuth)
	}
	msg := make([]byte, 0, 3+len(name)+len(pw))
	msg = append(msg, 1, byte(len(name)))
	msg = append(msg, name...)
	msg = append(msg, byte(len(pw)))
	msg = append(msg, pw...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	var st [2]byte
	if err := readProxy(c, st[:]); err != nil {
		if errors.Is(err, ErrProxy) {
			// Closing instead of answering is how some proxies refuse.
			return fmt.Errorf("%w: the proxy closed the connection after the credentials for user %q", ErrProxyAuth, name)
		}
		return err
	}
	if st[1] != 0 {
		return fmt.Errorf("%w: the proxy refused user %q (status %#02x)", ErrProxyAuth, name, st[1])
	}
	return nil
}

// readProxy reads exactly len(b) bytes of a proxy's answer.
func readProxy(c net.Conn, b []byte) error {
	if _, err := io.ReadFull(c, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the proxy closed the connection during the handshake", ErrProxy)
		}
		return err
	}
	return nil
}
