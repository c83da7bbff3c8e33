// Package testcerts makes the certificates that TLS, WebSocket-over-TLS
// and QUIC tests use: a test CA, a server certificate for the loopback
// addresses signed by it, a client certificate for mutual TLS, and the
// broken certificates that the failure tests need (expired, wrong host
// name, unknown CA). They are generated once per process with crypto/x509
// (ECDSA P-256), so nothing secret is kept in the repository.
package testcerts
