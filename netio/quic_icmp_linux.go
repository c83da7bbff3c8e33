//go:build linux

package netio

import (
	"net"
	"syscall"
)

// reportICMP turns the reporting of ICMP errors on an unconnected UDP
// socket on or off (IP_RECVERR and IPV6_RECVERR; the socket is dual-stack).
//
// Linux tells an unconnected UDP socket nothing of the "port unreachable",
// "host unreachable" or "network unreachable" the network answers a
// datagram with, unless IP_RECVERR is set: then the error is also stored
// as the socket's pending error, which quic-go's next sendmsg or recvmmsg
// returns (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH), ending the handshake
// at once instead of after the handshake timeout. It is set only while
// the handshake runs: afterwards every ICMP error, soft ones (TTL
// exceeded) and "fragmentation needed" included, would end an established
// connection, whereas TCP ignores them once connected. Turning it off
// discards errors still queued.
func reportICMP(udp *net.UDPConn, on bool) error {
	rc, err := udp.SyscallConn()
	if err != nil {
		return err
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		e4 := syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_RECVERR, v)
		e6 := syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, syscall.IPV6_RECVERR, v)
		if e4 != nil && e6 != nil {
			serr = e4
		}
	})
	if err != nil {
		return err
	}
	return serr
}
