//go:build !linux

package netio

import "net"

// reportICMP does nothing where IP_RECVERR does not exist: an ICMP error
// is not reported to an unconnected UDP socket there, and a QUIC dial to
// a closed port ends with the handshake timeout.
func reportICMP(*net.UDPConn, bool) error { return nil }
