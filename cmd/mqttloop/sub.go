package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state/filestore"
)

const subExamples = `  mqttloop sub -t 'sensors/#' -v                       # print topic and payload
  mqttloop sub -t a/b -t 'c/+' -q 1 -C 10               # two filters, exit after 10 messages
  mqttloop sub -t a/b -C 1 -W 5                         # exit 4 if nothing comes within 5 s
  mqttloop sub -t 'x/#' --json                          # JSON lines with properties
  mqttloop sub -t 'x/#' -F '%I %t %q %p'                # a template (see -F)
  mqttloop sub -t 'x/#' -q 1 --session-file x.session   # resumes after a kill: misses nothing
  mqttloop sub -L quic://localhost:14567 --insecure -t 'a/#'
`

// formatHelp documents -F.
const formatHelp = "print each message with this `template`: %t topic, %p payload, %x payload in hex, %l length, %q QoS, %r retain (0/1), %m packet id, %I ISO-8601 time, %U Unix time, %C content type, %E message expiry, %R response topic, %D correlation data, %P user properties, %S subscription ids, %j the JSON line, %% a %; \\n \\t \\\\ escapes"

func runSub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "sub"
	fs := newFlagSet(name, "Subscribes to one or more topic filters and prints the messages that arrive.", subExamples, stderr)
	var cf connFlags
	cf.register(fs)
	var topics listFlag
	fs.Var(&topics, "t", "topic `filter` to subscribe to (repeatable)")
	qos := fs.Int("q", 0, "maximum `QoS` to receive at")
	noLocal := fs.Bool("nl", false, "no local: do not receive what this client publishes (MQTT 5)")
	rap := fs.Bool("rap", false, "retain as published (MQTT 5)")
	rh := fs.Int("rh", 0, "retain `handling`: 0 send retained messages on subscribe, 1 only for a new subscription, 2 never (MQTT 5)")
	subID := fs.Int("sub-id", 0, "subscription `identifier` (MQTT 5)")
	count := fs.Int("C", 0, "exit after this many messages (0: never)")
	wait := fs.Int("W", 0, "exit (code 4) after this many `seconds` if -C messages have not arrived (0: never)")
	noStale := fs.Bool("R", false, "do not print stale (retained) messages")
	verbose := fs.Bool("v", false, "print the topic before the payload")
	noNewline := fs.Bool("N", false, "no newline after each payload")
	format := fs.String("F", "", formatHelp)
	asJSON := fs.Bool("json", false, "print JSON lines: topic, QoS, retain, payload (payload_hex when it is not UTF-8), properties")
	asHex := fs.Bool("hex", false, "print payloads in hex")
	sessionFile := fs.String("session-file", "", "keep the session in this `file` (persistent session, manual acks after printing): a sub killed and restarted misses nothing")
	noReconnect := fs.Bool("no-reconnect", false, "exit (code 1) when the connection is lost, instead of reconnecting with back-off")
	manual := fs.Bool("manual-ack", false, "acknowledge each QoS 1/2 message only after it is printed (on with --session-file)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	switch {
	case len(topics.vals) == 0:
		return usageErr(stderr, name, "-t: at least one topic filter is required")
	case *qos < 0 || *qos > 2:
		return usageErr(stderr, name, "-q %d: want 0, 1 or 2", *qos)
	case *rh < 0 || *rh > 2:
		return usageErr(stderr, name, "--rh %d: want 0, 1 or 2", *rh)
	case *count < 0 || *wait < 0:
		return usageErr(stderr, name, "-C and -W must not be negative")
	case *format != "" && *asJSON:
		return usageErr(stderr, name, "-F and --json: give one")
	}
	if *sessionFile != "" {
		if cf.id == "" {
			// The session belongs to a client id: derive a stable one from
			// the file, so that a restart finds its session.
			abs, _ := filepath.Abs(*sessionFile)
			sum := sha256.Sum256([]byte(abs))
			cf.id = "mqttloop-sub-" + hex.EncodeToString(sum[:6])
		}
		cf.persistent = true
		*manual = true
	}
	opts, err := cf.options(name, stderr)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	opts.ManualAcks = *manual
	// Requests are sent only between two calls of Next: the loop may wait
	// for the broker in the poller rather than watch the channel.
	opts.WakeAfterSend = true
	if !*noReconnect {
		// As mosquitto_sub: a wrong address fails at once, a lost
		// connection is retried (and the subscriptions made again if the
		// broker lost the session).
		opts.Reconnect = reconnect.AfterFirstSuccess
	}
	if *sessionFile != "" {
		st, err := filestore.Open(*sessionFile, filestore.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "mqttloop sub: --session-file: %v\n", err)
			return exitError
		}
		defer st.Close()
		opts.Store = st
	}
	loop, err := eventloop.New(opts)
	if err != nil {
		if errors.Is(err, eventloop.ErrStoreMismatch) {
			fmt.Fprintf(stderr, "mqttloop sub: --session-file %s holds another broker's or client's session: %v\n", *sessionFile, err)
			return exitError
		}
		return usageErr(stderr, name, "%v", err)
	}

	// Subscribe to the filters the session does not hold already: a
	// resumed session keeps its subscriptions (the loop re-subscribes them
	// if the broker lost it), and subscribing again would resend retained
	// messages.
	held := loop.State().Subscriptions()
	var filters []eventloop.Filter
	for _, t := range topics.vals {
		if _, ok := held[t]; ok {
			continue
		}
		filters = append(filters, eventloop.Filter{Topic: t, QoS: byte(*qos), NoLocal: *noLocal, RetainAsPublished: *rap, RetainHandling: byte(*rh)})
	}
	requests := make(chan eventloop.Request, 4)
	if len(filters) > 0 {
		requests <- eventloop.Subscribe{Filters: filters, SubscriptionID: *subID}
	}

	if *wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*wait)*time.Second)
		defer cancel()
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	pr := printer{verbose: *verbose, newline: !*noNewline, format: *format, json: *asJSON, hex: *asHex}
	received := 0
	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			out.Flush()
			switch {
			case errors.Is(err, eventloop.ErrDisconnected):
				return exitOK
			case *wait > 0 && errors.Is(err, context.DeadlineExceeded):
				fmt.Fprintf(stderr, "mqttloop sub: -W: %d messages within %d s\n", received, *wait)
				return exitTimeout
			case errors.Is(err, eventloop.ErrStopped):
				return exitOK // interrupted
			}
			return exitFor(stderr, name, err)
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			if cf.debug {
				fmt.Fprintf(stderr, "connected to %s over %s (MQTT %s, session present %v)\n", ev.Server, ev.Transport, versionName(ev.ProtocolVersion), ev.SessionPresent)
			}
			if len(filters) == 0 && cf.debug {
				fmt.Fprintf(stderr, "subscribed: resuming the session's subscriptions %s\n", strings.Join(topics.vals, " "))
			}
		case eventloop.Subscribed:
			if err := ev.Err(); err != nil {
				fmt.Fprintf(stderr, "mqttloop sub: subscribe refused: %v\n", err)
				return exitRefused
			}
			if cf.debug {
				var fl []string
				for i, f := range ev.Request.Filters {
					fl = append(fl, fmt.Sprintf("%s (QoS %d)", f.Topic, ev.ReasonCodes[i]))
				}
				fmt.Fprintf(stderr, "subscribed: %s\n", strings.Join(fl, ", "))
			}
		case eventloop.Message:
			if *count > 0 && received >= *count {
				continue // beyond -C: not printed, not acknowledged (a session delivers it again)
			}
			if !(*noStale && ev.Retain) {
				pr.print(out, ev, time.Now())
				received++
			}
			if *manual && ev.QoS > 0 {
				if err := out.Flush(); err != nil {
					fmt.Fprintf(stderr, "mqttloop sub: writing: %v\n", err)
					return exitError
				}
				if err := loop.Ack(ev); err != nil {
					fmt.Fprintf(stderr, "mqttloop sub: ack: %v\n", err)
				}
			} else if *count > 0 || out.Buffered() > 0 {
				out.Flush()
			}
			if *count > 0 && received == *count {
				requests <- eventloop.Disconnect{}
			}
		case eventloop.RequestFailed:
			fmt.Fprintf(stderr, "mqttloop sub: %v\n", ev.Err)
			return exitError
		case eventloop.Reconnecting:
			fmt.Fprintf(stderr, "mqttloop sub: connection lost (%v); reconnecting in %v\n", ev.Err, ev.Delay.Round(time.Millisecond))
		case eventloop.Disconnected:
			if cf.debug {
				fmt.Fprintf(stderr, "disconnected: %v\n", ev.Err)
			}
		}
	}
}

// printer writes messages as sub's flags say.
type printer struct {
	verbose, newline, json, hex bool
	format                      string
}

func (p printer) print(w *bufio.Writer, m eventloop.Message, now time.Time) {
	switch {
	case p.json:
		w.Write(jsonLine(m, now))
		w.WriteByte('\n')
		return
	case p.format != "":
		w.WriteString(expand(p.format, m, now))
		return
	}
	if p.verbose {
		w.WriteString(m.Topic)
		w.WriteByte(' ')
	}
	if p.hex {
		w.WriteString(hex.EncodeToString(m.Payload))
	} else {
		w.Write(m.Payload)
	}
	if p.newline {
		w.WriteByte('\n')
	}
}

// jsonMessage is a message as --json prints it.
type jsonMessage struct {
	Time       string          `json:"time"`
	Topic      string          `json:"topic"`
	QoS        byte            `json:"qos"`
	Retain     bool            `json:"retain"`
	Duplicate  bool            `json:"dup,omitempty"`
	Payload    *string         `json:"payload,omitempty"`
	PayloadHex *string         `json:"payload_hex,omitempty"`
	Properties *jsonProperties `json:"properties,omitempty"`
}

type jsonProperties struct {
	PayloadUTF8        bool        `json:"payload_utf8,omitempty"`
	MessageExpiry      int64       `json:"message_expiry,omitempty"`
	ContentType        string      `json:"content_type,omitempty"`
	ResponseTopic      string      `json:"response_topic,omitempty"`
	CorrelationData    string      `json:"correlation_data,omitempty"`
	CorrelationDataHex string      `json:"correlation_data_hex,omitempty"`
	UserProperties     [][2]string `json:"user_properties,omitempty"`
	SubscriptionIDs    []int       `json:"subscription_ids,omitempty"`
}

func jsonLine(m eventloop.Message, now time.Time) []byte {
	j := jsonMessage{Time: now.UTC().Format(time.RFC3339Nano), Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Duplicate: m.Duplicate}
	if utf8.Valid(m.Payload) {
		s := string(m.Payload)
		j.Payload = &s
	} else {
		s := hex.EncodeToString(m.Payload)
		j.PayloadHex = &s
	}
	if pr := m.Properties; pr != nil {
		jp := &jsonProperties{PayloadUTF8: pr.PayloadIsUTF8, MessageExpiry: int64(pr.MessageExpiry / time.Second),
			ContentType: pr.ContentType, ResponseTopic: pr.ResponseTopic, SubscriptionIDs: pr.SubscriptionIDs}
		if pr.CorrelationData != nil {
			if utf8.Valid(pr.CorrelationData) {
				jp.CorrelationData = string(pr.CorrelationData)
			} else {
				jp.CorrelationDataHex = hex.EncodeToString(pr.CorrelationData)
			}
		}
		for k, v := range pr.User.All() {
			jp.UserProperties = append(jp.UserProperties, [2]string{k, v})
		}
		j.Properties = jp
	}
	b, _ := json.Marshal(j) // cannot fail: strings, numbers and bools
	return b
}

// expand fills in the -F template for m.
func expand(format string, m eventloop.Message, now time.Time) string {
	var b strings.Builder
	pr := m.Properties
	if pr == nil {
		pr = &eventloop.Properties{}
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if (c != '%' && c != '\\') || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		d := format[i]
		if c == '\\' {
			switch d {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte('\\')
				b.WriteByte(d)
			}
			continue
		}
		switch d {
		case '%':
			b.WriteByte('%')
		case 't':
			b.WriteString(m.Topic)
		case 'p':
			b.Write(m.Payload)
		case 'x':
			b.WriteString(hex.EncodeToString(m.Payload))
		case 'l':
			b.WriteString(strconv.Itoa(len(m.Payload)))
		case 'q':
			b.WriteString(strconv.Itoa(int(m.QoS)))
		case 'r':
			if m.Retain {
				b.WriteByte('1')
			} else {
				b.WriteByte('0')
			}
		case 'm':
			b.WriteString(strconv.Itoa(int(m.PacketID)))
		case 'I':
			b.WriteString(now.Format(time.RFC3339))
		case 'U':
			b.WriteString(fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()))
		case 'C':
			b.WriteString(pr.ContentType)
		case 'E':
			if pr.MessageExpiry > 0 {
				b.WriteString(strconv.FormatInt(int64(pr.MessageExpiry/time.Second), 10))
			}
		case 'R':
			b.WriteString(pr.ResponseTopic)
		case 'D':
			b.Write(pr.CorrelationData)
		case 'P':
			first := true
			for k, v := range pr.User.All() {
				if !first {
					b.WriteByte(' ')
				}
				first = false
				b.WriteString(k + ":" + v)
			}
		case 'S':
			for i, id := range pr.SubscriptionIDs {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Itoa(id))
			}
		case 'j':
			b.Write(jsonLine(m, now))
		default:
			b.WriteByte('%')
			b.WriteByte(d)
		}
	}
	return b.String()
}
