package eventloop

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqttloop/mqttloop/internal/mqttstr"
	"github.com/mqttloop/mqttloop/state"
)

// The rules every field of a request or option is checked against before
// it is accepted, in one place. A value that breaks one is refused whole,
// with an error naming the field; nothing is ever truncated, wrapped
// round or left out to make it fit:
//
//   - strings (topics, client id, user name, content type, response topic,
//     user property names and values, the authentication method): at most
//     65,535 bytes of well-formed UTF-8 without U+0000, control
//     characters or non-characters (see mqttstr.Check);
//   - binary data (password, correlation data, will payload,
//     authentication data): at most 65,535 bytes;
//   - intervals in seconds (message expiry, session expiry, will delay):
//     not negative and at most 2^32-1 s; a fraction of a second is
//     rounded up, so an interval never shrinks (to 0, which means
//     "none", in particular);
//   - identifiers and codes in the protocol's range (QoS 0-2,
//     subscription identifier 1-268,435,455, the reason codes a client
//     may send in PUBACK, PUBREC and DISCONNECT);
//   - what one protocol version cannot express is refused on it
//     (ErrMQTT5Only).

// fname names a field: a prefix and a name, joined with a dot only when
// an error names it (a validation that passes allocates nothing).
type fname struct{ prefix, name string }

func (f fname) String() string {
	if f.prefix == "" {
		return f.name
	}
	return f.prefix + "." + f.name
}

func fld(name string) fname { return fname{name: name} }

// rules checks values for protocol version v; its errors wrap base
// (ErrInvalidRequest for requests, ErrInvalidOptions for options).
type rules struct {
	base error
	v    byte
}

func requestRules(v byte) rules { return rules{base: ErrInvalidRequest, v: v} }
func optionRules(v byte) rules  { return rules{base: ErrInvalidOptions, v: v} }

// fail wraps cause (which may carry a sentinel of its own, such as
// ErrInvalidTopic) with the base error and the field's name.
func (r rules) fail(f fname, cause error) error {
	return fmt.Errorf("%w: %s: %w", r.base, f, cause)
}

func (r rules) failf(f fname, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", r.base, f, fmt.Sprintf(format, args...))
}

func (r rules) only5(what string) error {
	return fmt.Errorf("%w: %w: %s", r.base, ErrMQTT5Only, what)
}

// str checks an MQTT UTF-8 string. The error never quotes the value.
func (r rules) str(field fname, s string) error {
	if err := mqttstr.Check(s); err != nil {
		return r.fail(field, err)
	}
	return nil
}

// binary checks MQTT binary data.
func (r rules) binary(field fname, b []byte) error {
	if len(b) > mqttstr.MaxLen {
		return r.failf(field, "%d bytes, at most %d fit", len(b), mqttstr.MaxLen)
	}
	return nil
}

// maxInterval is the longest interval MQTT can carry: 2^32-1 seconds.
const maxInterval = time.Duration(math.MaxUint32) * time.Second

// seconds checks an interval sent in whole seconds (a four-byte integer).
func (r rules) seconds(field fname, d time.Duration) error {
	switch {
	case d < 0:
		return r.failf(field, "%v is negative", d)
	case d > maxInterval:
		return r.failf(field, "%v is over %d s, the protocol's limit", d, uint32(math.MaxUint32))
	}
	return nil
}

// wholeSeconds is d in whole seconds, a fraction rounded up; d was
// checked by rules.seconds.
func wholeSeconds(d time.Duration) uint32 {
	return uint32((d + time.Second - 1) / time.Second)
}

func (r rules) topicName(field fname, topic string) error {
	if err := state.ValidateTopicName(topic); err != nil {
		return r.fail(field, err)
	}
	return nil
}

func (r rules) topicFilter(field fname, filter string) error {
	if err := state.ValidateTopicFilter(filter); err != nil {
		return r.fail(field, err)
	}
	return nil
}

func (r rules) qos(field fname, q byte) error {
	if err := state.ValidateQoS(q); err != nil {
		return r.fail(field, err)
	}
	return nil
}

// userProps checks user properties: a list made from an even number of
// strings, each name and value a valid string.
func (r rules) userProps(field fname, u UserProperties) error {
	if u.odd != "" {
		return r.failf(field, "%s", u.odd)
	}
	i := 0
	for k, v := range u.All() {
		// The field's name is formatted only for an error.
		if err := mqttstr.Check(k); err != nil {
			return r.fail(fld(fmt.Sprintf("%s[%d].Key", field, i)), err)
		}
		if err := mqttstr.Check(v); err != nil {
			return r.fail(fld(fmt.Sprintf("%s[%d].Value", field, i)), err)
		}
		i++
	}
	return nil
}

// props checks the properties of a publish or a will.
func (r rules) props(prefix string, p *Properties, payload []byte) error {
	if p == nil {
		return nil
	}
	if r.v == 4 && !p.empty() {
		return r.only5(prefix)
	}
	if err := r.seconds(fname{prefix, "MessageExpiry"}, p.MessageExpiry); err != nil {
		return err
	}
	if err := r.str(fname{prefix, "ContentType"}, p.ContentType); err != nil {
		return err
	}
	if p.ResponseTopic != "" {
		if err := r.topicName(fname{prefix, "ResponseTopic"}, p.ResponseTopic); err != nil {
			return err
		}
	}
	if err := r.binary(fname{prefix, "CorrelationData"}, p.CorrelationData); err != nil {
		return err
	}
	if p.PayloadIsUTF8 && !utf8.Valid(payload) {
		return r.failf(fname{prefix, "PayloadIsUTF8"}, "the payload is not valid UTF-8")
	}
	return r.userProps(fname{prefix, "User"}, p.User)
}

// publish checks a Publish.
func (r rules) publish(p Publish) error {
	if err := r.topicName(fld("Publish.Topic"), p.Topic); err != nil {
		return err
	}
	if err := r.qos(fld("Publish.QoS"), p.QoS); err != nil {
		return err
	}
	return r.props("Publish.Properties", p.Properties, p.Payload)
}

// maxSubscriptionID is the largest Subscription Identifier (a variable
// byte integer).
const maxSubscriptionID = 268435455

// subscribe checks a Subscribe.
func (r rules) subscribe(s Subscribe) error {
	if len(s.Filters) == 0 {
		return r.failf(fld("Subscribe.Filters"), "none given")
	}
	if r.v == 4 {
		switch {
		case s.SubscriptionID != 0:
			return r.only5("Subscribe.SubscriptionID")
		case !s.UserProperties.empty():
			return r.only5("Subscribe.UserProperties")
		}
	}
	for i, f := range s.Filters {
		at := func(name string) fname { return fname{fmt.Sprintf("Subscribe.Filters[%d]", i), name} }
		// The field's name is formatted only for an error.
		if err := state.ValidateTopicFilter(f.Topic); err != nil {
			return r.fail(at("Topic"), err)
		}
		if err := state.ValidateQoS(f.QoS); err != nil {
			return r.fail(at("QoS"), err)
		}
		if r.v == 4 && (f.NoLocal || f.RetainAsPublished || f.RetainHandling != 0) {
			return r.only5(fmt.Sprintf("the NoLocal, RetainAsPublished and RetainHandling options of filter %q", f.Topic))
		}
		if f.RetainHandling > 2 {
			return r.failf(at("RetainHandling"), "%d (must be 0, 1 or 2)", f.RetainHandling)
		}
		if f.NoLocal && strings.HasPrefix(f.Topic, "$share/") {
			return r.failf(at("NoLocal"), "set on a shared subscription, which MQTT forbids")
		}
	}
	if s.SubscriptionID < 0 || s.SubscriptionID > maxSubscriptionID {
		return r.failf(fld("Subscribe.SubscriptionID"), "%d out of range 1-%d (0: none)", s.SubscriptionID, maxSubscriptionID)
	}
	return r.userProps(fld("Subscribe.UserProperties"), s.UserProperties)
}

// unsubscribe checks an Unsubscribe.
func (r rules) unsubscribe(u Unsubscribe) error {
	if len(u.Topics) == 0 {
		return r.failf(fld("Unsubscribe.Topics"), "none given")
	}
	if r.v == 4 && !u.UserProperties.empty() {
		return r.only5("Unsubscribe.UserProperties")
	}
	for i, t := range u.Topics {
		if err := state.ValidateTopicFilter(t); err != nil {
			return r.fail(fld(fmt.Sprintf("Unsubscribe.Topics[%d]", i)), err)
		}
	}
	return r.userProps(fld("Unsubscribe.UserProperties"), u.UserProperties)
}

// ackCodes are the reason codes a client may send in PUBACK and PUBREC
// (MQTT 5 §3.4.2.1, §3.5.2.1).
var ackCodes = map[byte]bool{0x00: true, 0x10: true, 0x80: true, 0x83: true, 0x87: true, 0x90: true, 0x91: true, 0x97: true, 0x99: true}

// ack checks an Ack.
func (r rules) ack(a Ack) error {
	if a.ReasonCode != 0 && r.v == 4 {
		return r.only5(fmt.Sprintf("an Ack with reason code %#02x (3.1.1 can only acknowledge)", a.ReasonCode))
	}
	if !ackCodes[a.ReasonCode] {
		return r.failf(fld("Ack.ReasonCode"), "%#02x is not a reason code of PUBACK or PUBREC", a.ReasonCode)
	}
	return nil
}

// disconnectCodes are the reason codes a client may send in DISCONNECT
// (MQTT 5 §3.14.2.1).
var disconnectCodes = map[byte]bool{0x00: true, 0x04: true, 0x80: true, 0x81: true, 0x82: true, 0x83: true,
	0x90: true, 0x93: true, 0x94: true, 0x95: true, 0x96: true, 0x97: true, 0x98: true, 0x99: true}

// disconnect checks a Disconnect for a connection whose CONNECT carried
// the session expiry connectExpiry.
func (r rules) disconnect(d Disconnect, connectExpiry time.Duration) error {
	if r.v == 4 && (d.ReasonCode != 0 || d.SessionExpiry != nil) {
		return r.only5("a Disconnect with a ReasonCode or SessionExpiry")
	}
	if !disconnectCodes[d.ReasonCode] {
		return r.failf(fld("Disconnect.ReasonCode"), "%#02x is not a reason code a client may send in DISCONNECT", d.ReasonCode)
	}
	if d.SessionExpiry == nil {
		return nil
	}
	if err := r.seconds(fld("Disconnect.SessionExpiry"), *d.SessionExpiry); err != nil {
		return err
	}
	if *d.SessionExpiry != 0 && wholeSeconds(connectExpiry) == 0 {
		return r.failf(fld("Disconnect.SessionExpiry"), "%v, but the session was opened without one (Options.SessionExpiry 0): MQTT allows changing it on DISCONNECT only when CONNECT had one", *d.SessionExpiry)
	}
	return nil
}

// Bounds of Throttle.PerSecond: below one publish a day is a stall, not a
// cap, and above a billion a second the cap means nothing (and the token
// arithmetic would lose its precision).
const (
	minThrottleRate = 1.0 / (24 * 60 * 60)
	maxThrottleRate = 1e9
)

// throttle checks a Throttle.
func (r rules) throttle(t Throttle) error {
	switch {
	case math.IsNaN(t.PerSecond) || math.IsInf(t.PerSecond, 0):
		return r.failf(fld("Throttle.PerSecond"), "%v is not a number of publishes per second", t.PerSecond)
	case t.PerSecond < 0:
		return r.failf(fld("Throttle.PerSecond"), "%v is negative", t.PerSecond)
	case t.PerSecond != 0 && t.PerSecond < minThrottleRate:
		return r.failf(fld("Throttle.PerSecond"), "%v is below one publish a day (%v); 0 removes the cap, Pause stops publishing", t.PerSecond, minThrottleRate)
	case t.PerSecond > maxThrottleRate:
		return r.failf(fld("Throttle.PerSecond"), "%v is over %v; 0 removes the cap", t.PerSecond, maxThrottleRate)
	case t.Burst < 0:
		return r.failf(fld("Throttle.Burst"), "%d is negative", t.Burst)
	case t.Burst > math.MaxInt32:
		return r.failf(fld("Throttle.Burst"), "%d is over %d", t.Burst, math.MaxInt32)
	}
	return nil
}

// will checks Options.Will.
func (r rules) will(w *Will) error {
	if w == nil {
		return nil
	}
	if r.v == 4 && w.Delay != 0 {
		return r.only5("Will.Delay")
	}
	if err := r.topicName(fld("Will.Topic"), w.Topic); err != nil {
		return err
	}
	if err := r.qos(fld("Will.QoS"), w.QoS); err != nil {
		return err
	}
	if err := r.binary(fld("Will.Payload"), w.Payload); err != nil {
		return err
	}
	if err := r.seconds(fld("Will.Delay"), w.Delay); err != nil {
		return err
	}
	return r.props("Will.Properties", w.Properties, w.Payload)
}

// credentials checks the user name, password and CONNECT user properties
// of a connection. Errors never quote the password.
func (r rules) credentials(c Credentials) error {
	if r.v == 4 {
		switch {
		case c.Password != nil && c.Username == "":
			return r.only5("a Password without a Username")
		case !c.UserProperties.empty():
			return r.only5("UserProperties")
		}
	}
	if err := r.str(fld("Username"), c.Username); err != nil {
		return err
	}
	if err := r.binary(fld("Password"), c.Password); err != nil {
		return err
	}
	return r.userProps(fld("UserProperties"), c.UserProperties)
}

// options checks the fields of Options that go on the wire (the others
// are checked where their defaults are applied).
func (r rules) options(o *Options) error {
	if err := r.str(fld("ClientID"), o.ClientID); err != nil {
		return err
	}
	if err := r.seconds(fld("SessionExpiry"), o.SessionExpiry); err != nil {
		return err
	}
	if o.Credentials == nil {
		if err := r.credentials(Credentials{Username: o.Username, Password: o.Password}); err != nil {
			return err
		}
	}
	if a := o.Authenticator; a != nil {
		if a.Method() == "" {
			return r.failf(fld("Authenticator.Method()"), "empty")
		}
		if err := r.str(fld("Authenticator.Method()"), a.Method()); err != nil {
			return err
		}
	}
	return r.will(o.Will)
}
