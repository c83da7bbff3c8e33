package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Set is one generation of test certificates.
type Set struct {
	// CA is the test certificate authority; Pool holds it alone.
	CA   *x509.Certificate
	Pool *x509.CertPool
	// Server is valid for localhost, 127.0.0.1 and ::1, signed by CA.
	Server tls.Certificate
	// Client is a client certificate (CN "mqttloop-test-client") signed by CA.
	Client tls.Certificate
	// Expired is a server certificate for the loopback names, signed by CA,
	// that expired a day ago.
	Expired tls.Certificate
	// WrongHost is a server certificate signed by CA for
	// "wrong-host.example" only.
	WrongHost tls.Certificate
	// Untrusted is a server certificate for the loopback names signed by a
	// CA that no client trusts.
	Untrusted tls.Certificate

	caKey *ecdsa.PrivateKey
}

var (
	once   sync.Once
	shared *Set
	genErr error
)

// Get returns the process's certificates, generating them on first use.
// It panics if generation fails, which only a broken crypto/rand can cause.
func Get() *Set {
	once.Do(func() { shared, genErr = Generate() })
	if genErr != nil {
		panic(genErr)
	}
	return shared
}

// Generate makes a new Set.
func Generate() (*Set, error) {
	now := time.Now()
	ca, caKey, err := newCA("mqttloop test CA", now)
	if err != nil {
		return nil, err
	}
	other, otherKey, err := newCA("untrusted test CA", now)
	if err != nil {
		return nil, err
	}
	s := &Set{CA: ca, Pool: x509.NewCertPool(), caKey: caKey}
	s.Pool.AddCert(ca)
	loopback := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	valid := [2]time.Time{now.Add(-time.Hour), now.Add(24 * time.Hour)}
	if s.Server, err = leaf(ca, caKey, "localhost", loopback, ips, valid, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if s.Client, err = leaf(ca, caKey, "mqttloop-test-client", nil, nil, valid, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	expired := [2]time.Time{now.Add(-48 * time.Hour), now.Add(-24 * time.Hour)}
	if s.Expired, err = leaf(ca, caKey, "localhost", loopback, ips, expired, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if s.WrongHost, err = leaf(ca, caKey, "wrong-host.example", []string{"wrong-host.example"}, nil, valid, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if s.Untrusted, err = leaf(other, otherKey, "localhost", loopback, ips, valid, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	return s, nil
}

// ClientConfig returns a client configuration that trusts the test CA
// (and nothing else), without a client certificate.
func (s *Set) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: s.Pool, MinVersion: tls.VersionTLS12}
}

// MutualClientConfig is ClientConfig with the client certificate.
func (s *Set) MutualClientConfig() *tls.Config {
	c := s.ClientConfig()
	c.Certificates = []tls.Certificate{s.Client}
	return c
}

// ServerConfig returns a server configuration presenting cert that
// verifies client certificates against the test CA when clients send one,
// and requires one if requireClientCert is set.
func (s *Set) ServerConfig(cert tls.Certificate, requireClientCert bool) *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    s.Pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
	if requireClientCert {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// Files are PEM files written by WriteFiles, for brokers configured by
// file (mosquitto's cafile, certfile, keyfile).
type Files struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// WriteFiles writes the CA, the server certificate and key and the client
// certificate and key into dir (keys readable by the owner only).
func (s *Set) WriteFiles(dir string) (Files, error) {
	f := Files{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.CA, pemBlock("CERTIFICATE", s.CA.Raw), 0o644},
		{f.ServerCert, pemBlock("CERTIFICATE", s.Server.Certificate[0]), 0o644},
		{f.ClientCert, pemBlock("CERTIFICATE", s.Client.Certificate[0]), 0o644},
	}
	for _, k := range []struct {
		path string
		cert tls.Certificate
	}{{f.ServerKey, s.Server}, {f.ClientKey, s.Client}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.cert.PrivateKey)
		if err != nil {
			return Files{}, fmt.Errorf("testcerts: marshal key: %w", err)
		}
		writes = append(writes, struct {
			path string
			data []byte
			mode os.FileMode
		}{k.path, pemBlock("PRIVATE KEY", der), 0o600})
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, fmt.Errorf("testcerts: %w", err)
		}
	}
	return f, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(time.Now().UnixNano()/1000 + serial.n)
}

func newCA(name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("testcerts: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("testcerts: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("testcerts: CA certificate: %w", err)
	}
	return cert, key, nil
}

func leaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, dns []string, ips []net.IP, valid [2]time.Time, usage x509.ExtKeyUsage) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcerts: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    valid[0],
		NotAfter:     valid[1],
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcerts: certificate %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcerts: certificate %s: %w", cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key, Leaf: cert}, nil
}
