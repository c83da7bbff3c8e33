package testcerts

import (
	"crypto/x509"
	"errors"
	"os"
	"testing"
)

func TestCertificatesVerifyAsIntended(t *testing.T) {
	s := Get()
	verify := func(cert *x509.Certificate, host string, usage x509.ExtKeyUsage) error {
		_, err := cert.Verify(x509.VerifyOptions{Roots: s.Pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verify(s.Server.Leaf, "localhost", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("server: %v", err)
	}
	if err := verify(s.Server.Leaf, "127.0.0.1", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("server by IP: %v", err)
	}
	if err := verify(s.Client.Leaf, "", x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("client: %v", err)
	}
	var invalid x509.CertificateInvalidError
	if err := verify(s.Expired.Leaf, "localhost", x509.ExtKeyUsageServerAuth); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired: %v", err)
	}
	var host x509.HostnameError
	if err := verify(s.WrongHost.Leaf, "localhost", x509.ExtKeyUsageServerAuth); !errors.As(err, &host) {
		t.Errorf("wrong host: %v", err)
	}
	var unknown x509.UnknownAuthorityError
	if err := verify(s.Untrusted.Leaf, "localhost", x509.ExtKeyUsageServerAuth); !errors.As(err, &unknown) {
		t.Errorf("untrusted: %v", err)
	}
}

func TestWriteFiles(t *testing.T) {
	f, err := Get().WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.CA, f.ServerCert, f.ServerKey, f.ClientCert, f.ClientKey} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if st, _ := os.Stat(f.ServerKey); st.Mode().Perm() != 0o600 {
		t.Errorf("server key mode %v", st.Mode().Perm())
	}
}
