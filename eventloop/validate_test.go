package eventloop_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// badStrings are MQTT UTF-8 strings a client must not (or, for control
// characters and non-characters, should not) send, each of which makes
// mosquitto or mochi close the connection.
var badStrings = map[string]string{
	"invalid UTF-8":   "a\xffb",
	"surrogate":       "a\xed\xa0\x80b",
	"U+0000":          "a\x00b",
	"control U+0001":  "a\x01b",
	"control U+009F":  "a\u009fb",
	"non-character":   "a\ufffeb",
	"65,536 bytes":    strings.Repeat("x", 65536),
	"overlong U+0000": "a\xc0\x80b",
}

var (
	tooLongBinary = make([]byte, 65536)
	overUint32    = time.Duration(math.MaxUint32+5) * time.Second
)

func dur(d time.Duration) *time.Duration { return &d }

// validationCase is one field broken one way.
type validationCase struct {
	name  string
	field string // named in the error
	v     byte   // 0: both versions, else only this one
	req   eventloop.Request
	also  error // another sentinel the error carries
}

func requestCases() []validationCase {
	var cs []validationCase
	add := func(c validationCase) { cs = append(cs, c) }
	props := func(p eventloop.Properties) *eventloop.Properties { return &p }
	for what, s := range badStrings {
		add(validationCase{name: "Publish.Topic " + what, field: "Publish.Topic", req: eventloop.Publish{Topic: s, QoS: 1}, also: eventloop.ErrInvalidTopic})
		add(validationCase{name: "Publish.ContentType " + what, field: "Publish.Properties.ContentType", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{ContentType: s})}})
		add(validationCase{name: "Publish.ResponseTopic " + what, field: "Publish.Properties.ResponseTopic", v: 5, req: eventloop.Publish{Topic: "t", QoS: 2, Properties: props(eventloop.Properties{ResponseTopic: s})}})
		add(validationCase{name: "Publish.User key " + what, field: "Publish.Properties.User[1].Key", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{User: eventloop.UserProps("ok", "ok", s, "v")})}})
		add(validationCase{name: "Publish.User value " + what, field: "Publish.Properties.User[0].Value", v: 5, req: eventloop.Publish{Topic: "t", QoS: 2, Properties: props(eventloop.Properties{User: eventloop.UserProps("k", s)})}})
		add(validationCase{name: "Subscribe.Topic " + what, field: "Subscribe.Filters[1].Topic", req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "ok"}, {Topic: s}}}, also: eventloop.ErrInvalidTopic})
		add(validationCase{name: "Subscribe.UserProperties " + what, field: "Subscribe.UserProperties[0].Key", v: 5, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "ok"}}, UserProperties: eventloop.UserProps(s, "v")}})
		add(validationCase{name: "Unsubscribe.Topics " + what, field: "Unsubscribe.Topics[0]", req: eventloop.Unsubscribe{Topics: []string{s}}, also: eventloop.ErrInvalidTopic})
		add(validationCase{name: "Unsubscribe.UserProperties " + what, field: "Unsubscribe.UserProperties[0].Value", v: 5, req: eventloop.Unsubscribe{Topics: []string{"ok"}, UserProperties: eventloop.UserProps("k", s)}})
	}
	for _, c := range []validationCase{
		{name: "Publish.Topic empty", field: "Publish.Topic", req: eventloop.Publish{QoS: 1}, also: eventloop.ErrInvalidTopic},
		{name: "Publish.Topic wildcard", field: "Publish.Topic", req: eventloop.Publish{Topic: "a/+", QoS: 1}, also: eventloop.ErrInvalidTopic},
		{name: "Publish.QoS 3", field: "Publish.QoS", req: eventloop.Publish{Topic: "t", QoS: 3}, also: eventloop.ErrInvalidQoS},
		{name: "Publish.MessageExpiry negative", field: "Publish.Properties.MessageExpiry", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{MessageExpiry: -time.Second})}},
		{name: "Publish.MessageExpiry over 2^32-1 s", field: "Publish.Properties.MessageExpiry", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{MessageExpiry: overUint32})}},
		{name: "Publish.ResponseTopic wildcard", field: "Publish.Properties.ResponseTopic", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{ResponseTopic: "r/#"})}},
		{name: "Publish.CorrelationData too long", field: "Publish.Properties.CorrelationData", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{CorrelationData: tooLongBinary})}},
		{name: "Publish.PayloadIsUTF8 with invalid UTF-8", field: "Publish.Properties.PayloadIsUTF8", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Payload: []byte{0xff}, Properties: props(eventloop.Properties{PayloadIsUTF8: true})}},
		{name: "Publish.User odd", field: "Publish.Properties.User", v: 5, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{User: eventloop.UserProps("k")})}},
		{name: "Publish.Properties on 3.1.1", field: "Publish.Properties", v: 4, req: eventloop.Publish{Topic: "t", QoS: 1, Properties: props(eventloop.Properties{ContentType: "c"})}, also: eventloop.ErrMQTT5Only},
		{name: "Subscribe without filters", field: "Subscribe.Filters", req: eventloop.Subscribe{}},
		{name: "Subscribe.Topic bad wildcard", field: "Subscribe.Filters[0].Topic", req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a#"}}}, also: eventloop.ErrInvalidTopic},
		{name: "Subscribe.QoS 3", field: "Subscribe.Filters[0].QoS", req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a", QoS: 3}}}, also: eventloop.ErrInvalidQoS},
		{name: "Subscribe.RetainHandling 3", field: "Subscribe.Filters[0].RetainHandling", v: 5, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a", RetainHandling: 3}}}},
		{name: "Subscribe.NoLocal shared", field: "Subscribe.Filters[0].NoLocal", v: 5, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "$share/g/a", NoLocal: true}}}},
		{name: "Subscribe.SubscriptionID negative", field: "Subscribe.SubscriptionID", v: 5, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a"}}, SubscriptionID: -1}},
		{name: "Subscribe.SubscriptionID too large", field: "Subscribe.SubscriptionID", v: 5, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a"}}, SubscriptionID: 268435456}},
		{name: "Subscribe.UserProperties odd", field: "Subscribe.UserProperties", v: 5, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a"}}, UserProperties: eventloop.UserProps("k")}},
		{name: "Subscribe.SubscriptionID on 3.1.1", field: "Subscribe.SubscriptionID", v: 4, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a"}}, SubscriptionID: 1}, also: eventloop.ErrMQTT5Only},
		{name: "Subscribe.UserProperties on 3.1.1", field: "Subscribe.UserProperties", v: 4, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a"}}, UserProperties: eventloop.UserProps("k", "v")}, also: eventloop.ErrMQTT5Only},
		{name: "Subscribe.NoLocal on 3.1.1", field: "NoLocal", v: 4, req: eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "a", NoLocal: true}}}, also: eventloop.ErrMQTT5Only},
		{name: "Unsubscribe without topics", field: "Unsubscribe.Topics", req: eventloop.Unsubscribe{}},
		{name: "Unsubscribe.UserProperties odd", field: "Unsubscribe.UserProperties", v: 5, req: eventloop.Unsubscribe{Topics: []string{"a"}, UserProperties: eventloop.UserProps("k")}},
		{name: "Unsubscribe.UserProperties on 3.1.1", field: "Unsubscribe.UserProperties", v: 4, req: eventloop.Unsubscribe{Topics: []string{"a"}, UserProperties: eventloop.UserProps("k", "v")}, also: eventloop.ErrMQTT5Only},
		{name: "Ack.ReasonCode not an ack code", field: "Ack.ReasonCode", v: 5, req: eventloop.Ack{PacketID: 1, QoS: 1, ReasonCode: 0x05}},
		{name: "Ack.ReasonCode server only", field: "Ack.ReasonCode", v: 5, req: eventloop.Ack{PacketID: 1, QoS: 2, ReasonCode: 0x8E}},
		{name: "Ack.ReasonCode on 3.1.1", field: "reason code 0x80", v: 4, req: eventloop.Ack{PacketID: 1, QoS: 1, ReasonCode: 0x80}, also: eventloop.ErrMQTT5Only},
		{name: "Disconnect.ReasonCode server only", field: "Disconnect.ReasonCode", v: 5, req: eventloop.Disconnect{ReasonCode: 0x8E}},
		{name: "Disconnect.ReasonCode unknown", field: "Disconnect.ReasonCode", v: 5, req: eventloop.Disconnect{ReasonCode: 0x05}},
		{name: "Disconnect.SessionExpiry negative", field: "Disconnect.SessionExpiry", v: 5, req: eventloop.Disconnect{SessionExpiry: dur(-time.Second)}},
		{name: "Disconnect.SessionExpiry over 2^32-1 s", field: "Disconnect.SessionExpiry", v: 5, req: eventloop.Disconnect{SessionExpiry: dur(overUint32)}},
		{name: "Disconnect.SessionExpiry where CONNECT had none", field: "Disconnect.SessionExpiry", v: 5, req: eventloop.Disconnect{SessionExpiry: dur(time.Hour)}},
		{name: "Disconnect.SessionExpiry on 3.1.1", field: "SessionExpiry", v: 4, req: eventloop.Disconnect{SessionExpiry: dur(0)}, also: eventloop.ErrMQTT5Only},
		{name: "Disconnect.ReasonCode on 3.1.1", field: "ReasonCode", v: 4, req: eventloop.Disconnect{ReasonCode: 0x04}, also: eventloop.ErrMQTT5Only},
		{name: "Throttle NaN", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: math.NaN()}},
		{name: "Throttle +Inf", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: math.Inf(1)}},
		{name: "Throttle -Inf", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: math.Inf(-1)}},
		{name: "Throttle negative", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: -1}},
		{name: "Throttle 1e-12", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: 1e-12}},
		{name: "Throttle 1e-300", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: 1e-300}},
		{name: "Throttle 1e12", field: "Throttle.PerSecond", req: eventloop.Throttle{PerSecond: 1e12}},
		{name: "Throttle negative burst", field: "Throttle.Burst", req: eventloop.Throttle{PerSecond: 1, Burst: -1}},
	} {
		add(c)
	}
	return cs
}

// TestRequestValidation sends every request of the table, each breaking
// one rule for one field, through a real loop connected to the embedded
// broker, with MQTT 5 and 3.1.1. Each must come back as RequestFailed
// wrapping ErrInvalidRequest and naming the field, in order, with the
// connection untouched: a valid QoS 1 and QoS 2 publish sent last
// complete.
func TestRequestValidation(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{DisableCapture: true})
	for _, v := range []byte{5, 4} {
		t.Run(map[byte]string{5: "v5", 4: "v4"}[v], func(t *testing.T) {
			c := startClient(t, mb.URL(), eventloop.Options{ProtocolVersion: v})
			var cases []validationCase
			for _, tc := range requestCases() {
				if tc.v == 0 || tc.v == v {
					cases = append(cases, tc)
				}
			}
			go func() {
				for _, tc := range cases {
					c.reqs <- tc.req
					c.woke()
				}
				c.reqs <- eventloop.Publish{Topic: "valid", QoS: 1, Tag: "q1"}
				c.reqs <- eventloop.Publish{Topic: "valid", QoS: 2, Tag: "q2"}
				c.woke()
			}()
			for _, tc := range cases {
				n := c.next()
				rf, ok := n.(eventloop.RequestFailed)
				if !ok {
					t.Fatalf("%s: got %T %+v, want RequestFailed", tc.name, n, n)
				}
				if !errors.Is(rf.Err, eventloop.ErrInvalidRequest) {
					t.Errorf("%s: error %v does not wrap ErrInvalidRequest", tc.name, rf.Err)
				}
				if tc.also != nil && !errors.Is(rf.Err, tc.also) {
					t.Errorf("%s: error %v does not wrap %v", tc.name, rf.Err, tc.also)
				}
				if !strings.Contains(rf.Err.Error(), tc.field) {
					t.Errorf("%s: error %q does not name %s", tc.name, rf.Err, tc.field)
				}
				if len(rf.Err.Error()) > 1000 {
					t.Errorf("%s: error of %d bytes quotes the value whole", tc.name, len(rf.Err.Error()))
				}
			}
			for _, tag := range []string{"q1", "q2"} {
				p := expect[eventloop.Published](c)
				if p.Request.Tag != tag || p.Err != nil {
					t.Fatalf("got Published %v (%v), want %s done", p.Request.Tag, p.Err, tag)
				}
			}
			if n := c.loop.State().InFlight() + c.loop.State().Queued(); n != 0 {
				t.Fatalf("%d requests left in the session", n)
			}
		})
	}
}

// TestOptionsValidation: New refuses every option field that breaks a
// rule, naming the field, with MQTT 5 and 3.1.1.
func TestOptionsValidation(t *testing.T) {
	type optCase struct {
		name, field string
		v           byte
		opts        eventloop.Options
		also        error
	}
	var cases []optCase
	will := func(w eventloop.Will) *eventloop.Will {
		if w.Topic == "" {
			w.Topic = "will"
		}
		return &w
	}
	for what, s := range badStrings {
		cases = append(cases,
			optCase{name: "ClientID " + what, field: "ClientID", opts: eventloop.Options{ClientID: s}},
			optCase{name: "Username " + what, field: "Username", opts: eventloop.Options{ClientID: "c", Username: s}},
			optCase{name: "Will.Topic " + what, field: "Will.Topic", opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Topic: s})}, also: eventloop.ErrInvalidTopic},
			optCase{name: "Will.ContentType " + what, field: "Will.Properties.ContentType", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{ContentType: s}})}},
			optCase{name: "Will.ResponseTopic " + what, field: "Will.Properties.ResponseTopic", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{ResponseTopic: s}})}},
			optCase{name: "Will.User " + what, field: "Will.Properties.User[0].Value", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{User: eventloop.UserProps("k", s)}})}},
		)
	}
	cases = append(cases,
		optCase{name: "Password too long", field: "Password", opts: eventloop.Options{ClientID: "c", Username: "u", Password: tooLongBinary}},
		optCase{name: "Will.QoS 3", field: "Will.QoS", opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{QoS: 3})}, also: eventloop.ErrInvalidQoS},
		optCase{name: "Will.Topic wildcard", field: "Will.Topic", opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Topic: "w/#"})}, also: eventloop.ErrInvalidTopic},
		optCase{name: "Will.Payload too long", field: "Will.Payload", opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Payload: tooLongBinary})}},
		optCase{name: "Will.Delay negative", field: "Will.Delay", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Delay: -time.Second})}},
		optCase{name: "Will.Delay over 2^32-1 s", field: "Will.Delay", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Delay: overUint32})}},
		optCase{name: "Will.MessageExpiry negative", field: "Will.Properties.MessageExpiry", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{MessageExpiry: -time.Second}})}},
		optCase{name: "Will.MessageExpiry over 2^32-1 s", field: "Will.Properties.MessageExpiry", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{MessageExpiry: overUint32}})}},
		optCase{name: "Will.CorrelationData too long", field: "Will.Properties.CorrelationData", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{CorrelationData: tooLongBinary}})}},
		optCase{name: "Will.PayloadIsUTF8 invalid", field: "Will.Properties.PayloadIsUTF8", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Payload: []byte{0xff}, Properties: &eventloop.Properties{PayloadIsUTF8: true}})}},
		optCase{name: "Will.User odd", field: "Will.Properties.User", v: 5, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{User: eventloop.UserProps("k")}})}},
		optCase{name: "Will.Delay on 3.1.1", field: "Will.Delay", v: 4, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Delay: time.Second})}, also: eventloop.ErrMQTT5Only},
		optCase{name: "Will.Properties on 3.1.1", field: "Will.Properties", v: 4, opts: eventloop.Options{ClientID: "c", Will: will(eventloop.Will{Properties: &eventloop.Properties{ContentType: "c"}})}, also: eventloop.ErrMQTT5Only},
		optCase{name: "SessionExpiry negative", field: "ession expiry", v: 5, opts: eventloop.Options{ClientID: "c", SessionExpiry: -time.Second}},
		optCase{name: "SessionExpiry over 2^32-1 s", field: "ession expiry", v: 5, opts: eventloop.Options{ClientID: "c", SessionExpiry: overUint32}},
	)
	for _, v := range []byte{5, 4} {
		for _, tc := range cases {
			if tc.v != 0 && tc.v != v {
				continue
			}
			t.Run(map[byte]string{5: "v5/", 4: "v4/"}[v]+tc.name, func(t *testing.T) {
				o := tc.opts
				o.Servers = []string{"mqtt://127.0.0.1:1883"}
				o.ProtocolVersion = v
				o.CleanStart = true
				_, err := eventloop.New(o)
				if !errors.Is(err, eventloop.ErrInvalidOptions) {
					t.Fatalf("New = %v, want ErrInvalidOptions", err)
				}
				if tc.also != nil && !errors.Is(err, tc.also) {
					t.Errorf("error %v does not wrap %v", err, tc.also)
				}
				if !strings.Contains(err.Error(), tc.field) {
					t.Errorf("error %q does not name %s", err, tc.field)
				}
				if strings.Contains(err.Error(), strings.Repeat("x", 100)) {
					t.Errorf("error quotes the value whole")
				}
			})
		}
	}
}

// TestIntervalsRoundUp: a fraction of a second is rounded up on the
// wire, so a 500 ms expiry does not become 0 ("never expires"), and the
// largest interval MQTT carries is accepted.
func TestIntervalsAccepted(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 1500 * time.Millisecond, eventloop.SessionNeverExpires} {
		_, err := eventloop.New(eventloop.Options{Servers: []string{"mqtt://127.0.0.1:1883"}, ClientID: "c", SessionExpiry: d,
			Will: &eventloop.Will{Topic: "w", Delay: d, Properties: &eventloop.Properties{MessageExpiry: d}}})
		if err != nil {
			t.Fatalf("New with intervals of %v: %v", d, err)
		}
	}
}
