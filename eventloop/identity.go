package eventloop

import (
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/state"
)

// What names a session in its store (Options.Store): the client id, and
// either Options.SessionName or the addresses of Servers, normalised so
// that the spellings of one address are one: scheme aliases folded, the
// default port written out, the host in lower case (an IP address in its
// canonical form), no user information, no trailing slash. A session
// belongs to the servers it was used with; the store's session continues
// under servers that share an address with them (a failover list in
// another order, or with a server added or removed), and the store then
// records the new list.

// namedPrefix marks an identity named by Options.SessionName rather than
// by servers (which always have a scheme of their own).
const namedPrefix = "name:"

// sessionIdentity is the identity of the session the options describe.
func sessionIdentity(o *Options) state.Identity {
	if o.SessionName != "" {
		return state.Identity{Server: namedPrefix + o.SessionName, ClientID: o.ClientID}
	}
	return state.Identity{Server: strings.Join(normalServers(o.Servers), " "), ClientID: o.ClientID}
}

// normalServers returns the normalised addresses of servers, sorted, each
// once.
func normalServers(servers []string) []string {
	var out []string
	for _, s := range servers {
		if n, ok := normalServer(s); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// normalServer returns the one spelling of a server URL's address; ok is
// false for a URL netio.ParseServer refuses.
func normalServer(raw string) (string, bool) {
	u, err := netio.ParseServer(raw)
	if err != nil {
		return "", false
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	switch u.Scheme {
	case "tcp":
		u.Scheme = "mqtt"
	case "ssl", "tls":
		u.Scheme = "mqtts"
	}
	if u.Scheme == "unix" {
		u.Path = path.Clean(u.Path)
		u.RawPath, u.RawQuery, u.ForceQuery = "", "", false
		return u.String(), true
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	u.Host = net.JoinHostPort(host, port)
	if u.Scheme != "ws" && u.Scheme != "wss" {
		u.Path, u.RawPath, u.RawQuery, u.ForceQuery = "", "", "", false
	}
	return u.String(), true
}

// sameSession reports whether a store holding the session of stored may
// continue it under the identity want: the same client id, and the same
// name, or (neither named) servers that share an address.
func sameSession(stored, want state.Identity) bool {
	if stored.ClientID != want.ClientID {
		return false
	}
	if stored.Server == want.Server {
		return true
	}
	if strings.HasPrefix(stored.Server, namedPrefix) || strings.HasPrefix(want.Server, namedPrefix) {
		return false
	}
	// Normalised again: a store written before the addresses were
	// normalised holds a URL as it was spelt.
	have := normalServers(strings.Fields(stored.Server))
	for _, s := range strings.Fields(want.Server) {
		if _, ok := slices.BinarySearch(have, s); ok {
			return true
		}
	}
	return false
}
