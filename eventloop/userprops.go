package eventloop

import (
	"fmt"
	"iter"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
)

// UserProperty is one MQTT 5 user property: a name and a value.
type UserProperty struct{ Key, Value string }

// UserProperties are MQTT 5 user properties: name-value pairs, in order;
// a name may appear more than once. Make them with UserProps (or Add),
// read them with All, Get and Len. The zero value is the empty list.
//
// A UserProperties value is immutable and compact: its pairs are held in
// one string, so the user properties of a received message cost no more
// memory than they took on the wire, whatever a broker sends. (A
// []UserProperty costs 32 bytes per pair before its strings: a message
// full of empty user properties, five bytes each on the wire, would cost
// more than six times its size.) Values compare with ==.
type UserProperties struct {
	enc wire.UserProps
	// odd says why the list is invalid ("" when it is not): UserProps
	// got an odd number of strings, so the last name has no value. Such a
	// list is refused when it is used.
	odd string
}

// UserProps returns the user properties given as alternating names and
// values: UserProps("trace-id", id, "origin", "sensor-7"). Names may
// repeat; order is kept. An odd number of strings is a mistake the loop
// reports: a request or option carrying such a list fails with
// ErrInvalidRequest.
func UserProps(kv ...string) UserProperties {
	n := 0
	for i := 0; i+1 < len(kv); i += 2 {
		n += len(kv[i]) + len(kv[i+1]) + 2*binaryLenBound
	}
	b := make([]byte, 0, n)
	for i := 0; i+1 < len(kv); i += 2 {
		b = wire.AppendUserProp(b, kv[i], kv[i+1])
	}
	u := UserProperties{enc: wire.UserProps(b)}
	if len(kv)%2 == 1 {
		u.odd = fmt.Sprintf("UserProps got an odd number of strings (%q has no value)", kv[len(kv)-1])
	}
	return u
}

// binaryLenBound is room for one length prefix in UserProps' estimate.
const binaryLenBound = 3

// Add returns the list with the pair appended (u is unchanged). Building
// a long list pair by pair copies it each time; UserProps builds it in
// one go.
func (u UserProperties) Add(key, value string) UserProperties {
	b := make([]byte, 0, len(u.enc)+len(key)+len(value)+2*binaryLenBound)
	b = append(b, u.enc...)
	b = wire.AppendUserProp(b, key, value)
	return UserProperties{enc: wire.UserProps(b), odd: u.odd}
}

// Len returns the number of pairs.
func (u UserProperties) Len() int { return u.enc.Len() }

// All iterates over the pairs in order:
//
//	for name, value := range m.Properties.User.All() { ... }
func (u UserProperties) All() iter.Seq2[string, string] { return u.enc.All() }

// Get returns the value of the first pair named key, and whether there
// is one.
func (u UserProperties) Get(key string) (value string, ok bool) {
	for k, v := range u.enc.All() {
		if k == key {
			return v, true
		}
	}
	return "", false
}

// Pairs returns the pairs as a new slice, for indexing or sorting.
func (u UserProperties) Pairs() []UserProperty {
	var out []UserProperty
	for k, v := range u.enc.All() {
		out = append(out, UserProperty{Key: k, Value: v})
	}
	return out
}

// String formats the pairs as a []UserProperty prints: [{name value} ...].
func (u UserProperties) String() string { return fmt.Sprint(u.Pairs()) }

// empty reports whether the list puts nothing on the wire and is valid.
func (u UserProperties) empty() bool { return u.enc == "" && u.odd == "" }

// packets returns the pairs in the packets model (nil when empty); the
// strings share the list's memory.
func (u UserProperties) packets() []packets.User { return u.enc.Users() }

// userPropertiesFrom converts pairs of the packets model.
func userPropertiesFrom(us []packets.User) UserProperties {
	if len(us) == 0 {
		return UserProperties{}
	}
	kv := make([]string, 0, 2*len(us))
	for _, p := range us {
		kv = append(kv, p.Key, p.Value)
	}
	return UserProps(kv...)
}
