package mqtttest

import (
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// hook is the broker's mochi hook: it records packets, follows each
// connection's CONNACK, and adjusts CONNECT handling and CONNACK properties
// according to Options.
type hook struct {
	mqtt.HookBase
	srv     *mqtt.Server
	opts    Options
	capture *capture // nil when capture is disabled

	mu    sync.Mutex
	conns map[net.Conn]*connState
}

// connState follows one accepted connection.
type connState struct {
	connackEncoded bool          // a successful CONNACK is being written; guarded by hook.mu
	connackSent    chan struct{} // closed once it was written
	ended          chan struct{} // closed when the connection's goroutine returned

	// Enhanced authentication (auth.go): what the CONNACK carries, and a
	// re-authentication under way (only the connection's goroutine uses
	// reauth).
	authMethod string
	authFinal  []byte
	reauth     AuthConversation
}

// track registers a connection the listener accepted.
func (h *hook) track(c net.Conn) {
	h.mu.Lock()
	h.conns[c] = &connState{connackSent: make(chan struct{}), ended: make(chan struct{})}
	h.mu.Unlock()
}

// untrack is called by the listener when a connection's goroutine returned.
func (h *hook) untrack(c net.Conn) {
	h.mu.Lock()
	if st := h.conns[c]; st != nil {
		close(st.ended)
		delete(h.conns, c)
	}
	h.mu.Unlock()
}

// state returns the connection's state, or nil.
func (h *hook) state(c net.Conn) *connState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[c]
}

// awaitConnack reports whether a successful CONNACK was written on c,
// waiting for its write to finish if it has started.
func (h *hook) awaitConnack(c net.Conn) bool {
	h.mu.Lock()
	st := h.conns[c]
	started := st != nil && st.connackEncoded
	h.mu.Unlock()
	if !started {
		return false
	}
	select {
	case <-st.connackSent:
		return true
	case <-st.ended:
		return false
	}
}

// ID returns the hook's id.
func (h *hook) ID() string { return "mqtttest" }

// Provides reports which hook methods the hook implements.
func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPacketSent:
		return true
	case mqtt.OnAuthPacket:
		return h.opts.EnhancedAuth != nil
	}
	return false
}

// OnConnect refuses MQTT 5 clients when asked to, and applies the server
// keepalive.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 5 {
		return nil
	}
	if h.opts.RefuseMQTT5 {
		// Answer like a 3.1.1 broker: a 3.1.1 CONNACK, return code 1.
		cl.Properties.ProtocolVersion = 4
		_ = h.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	if h.opts.ServerKeepAlive > 0 {
		cl.State.Keepalive = h.opts.ServerKeepAlive
		cl.State.ServerKeepalive = true
	}
	if h.opts.EnhancedAuth != nil && (pk.Properties.AuthenticationMethod != "" || h.opts.RequireEnhancedAuth) {
		return h.enhancedAuthConnect(cl, pk)
	}
	return nil
}

// OnPacketRead records a packet read from a client.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.capture != nil {
		id := cl.ID
		if pk.FixedHeader.Type == packets.Connect {
			id = pk.Connect.ClientIdentifier // cl.ID is not set yet
		}
		h.capture.add(Captured{ClientID: id, Direction: FromClient, Type: pk.FixedHeader.Type, Packet: pk})
	}
	return pk, nil
}

// OnPacketEncode adds the CONNACK properties mochi does not send itself, and
// notes that a successful CONNACK is about to be written.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != packets.CodeSuccess.Code {
		return pk
	}
	h.mu.Lock()
	if st := h.conns[cl.Net.Conn]; st != nil {
		st.connackEncoded = true
	}
	authMethod, authData := h.authFinal(cl.Net.Conn)
	h.mu.Unlock()
	if pk.ProtocolVersion == 5 {
		if authMethod != "" {
			pk.Properties.AuthenticationMethod = authMethod
			pk.Properties.AuthenticationData = authData
		}
		if h.opts.MaximumPacketSize > 0 {
			pk.Properties.MaximumPacketSize = h.opts.MaximumPacketSize
		}
		if h.opts.TopicAliasMaximum > 0 {
			pk.Properties.TopicAliasMaximum = h.opts.TopicAliasMaximum
		}
		if h.opts.NoWildcardSubscriptions {
			pk.Properties.WildcardSubAvailable, pk.Properties.WildcardSubAvailableFlag = 0, true
		}
		if h.opts.NoSharedSubscriptions {
			pk.Properties.SharedSubAvailable, pk.Properties.SharedSubAvailableFlag = 0, true
		}
		if h.opts.NoSubscriptionIdentifiers {
			pk.Properties.SubIDAvailable, pk.Properties.SubIDAvailableFlag = 0, true
		}
		if h.opts.ResponseInformation != "" {
			pk.Properties.ResponseInfo = h.opts.ResponseInformation // mochi sends it only when requested
		}
		pk.Properties.ServerReference = h.opts.ServerReference
		for _, u := range h.opts.ConnackUserProperties {
			pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Value})
		}
	}
	return pk
}

// OnPacketSent records a packet written to a client.
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if h.capture != nil {
		h.capture.add(Captured{ClientID: cl.ID, Direction: ToClient, Type: pk.FixedHeader.Type, Packet: pk})
	}
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == packets.CodeSuccess.Code {
		if st := h.state(cl.Net.Conn); st != nil {
			close(st.connackSent)
		}
	}
}

// allowAll lets every client connect (unless check says otherwise) and
// publish or subscribe to any topic. (mochi's hooks/auth.AllowHook does
// the same, but its package pulls in a YAML dependency this module does
// not otherwise need.)
type allowAll struct {
	mqtt.HookBase
	check func(ConnectInfo) bool // Options.Authenticate; nil: allow
}

// ID returns the hook's id.
func (*allowAll) ID() string { return "mqtttest-allow-all" }

// Provides reports which hook methods the hook implements.
func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate accepts every client, or those check accepts.
func (a *allowAll) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if a.check == nil {
		return true
	}
	info := ConnectInfo{
		ClientID: pk.Connect.ClientIdentifier,
		Username: string(pk.Connect.Username),
		Password: pk.Connect.Password,
	}
	for _, u := range pk.Properties.User {
		info.UserProperties = append(info.UserProperties, UserProperty{Key: u.Key, Value: u.Val})
	}
	return a.check(info)
}

// OnACLCheck allows every topic.
func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
