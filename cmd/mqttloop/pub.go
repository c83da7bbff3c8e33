package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
)

// stdin is what pub -s and -l read (a variable for tests).
var stdin io.Reader = os.Stdin

// msgFlags are the MQTT 5 properties of a published message.
type msgFlags struct {
	userProps     propFlag
	contentType   string
	responseTopic string
	correlation   string
	expiry        int64
	utf8          bool
}

func (m *msgFlags) register(fs *flag.FlagSet) {
	fs.Var(&m.userProps, "user-property", "MQTT 5 user property `name=value` (repeatable)")
	fs.StringVar(&m.contentType, "content-type", "", "MQTT 5 content `type` (e.g. application/json)")
	fs.StringVar(&m.responseTopic, "response-topic", "", "MQTT 5 response `topic`")
	fs.StringVar(&m.correlation, "correlation-data", "", "MQTT 5 correlation `data`")
	fs.Int64Var(&m.expiry, "message-expiry", 0, "MQTT 5 message expiry `seconds` (0: none)")
	fs.BoolVar(&m.utf8, "payload-utf8", false, "MQTT 5 payload format indicator: the payload is UTF-8 text")
}

// properties returns the publish properties (nil: none).
func (m *msgFlags) properties() *eventloop.Properties {
	p := &eventloop.Properties{
		PayloadIsUTF8: m.utf8,
		MessageExpiry: time.Duration(m.expiry) * time.Second,
		ContentType:   m.contentType,
		ResponseTopic: m.responseTopic,
		User:          eventloop.UserProps(m.userProps.kv...),
	}
	if m.correlation != "" {
		p.CorrelationData = []byte(m.correlation)
	}
	if !p.PayloadIsUTF8 && p.MessageExpiry == 0 && p.ContentType == "" && p.ResponseTopic == "" &&
		p.CorrelationData == nil && len(m.userProps.kv) == 0 {
		return nil
	}
	return p
}

const pubExamples = `  mqttloop pub -t sensors/t1 -m 21.5                  # QoS 0 to localhost:1883
  mqttloop pub -t sensors/t1 -m 21.5 -q 1 -r           # retained, acknowledged
  mqttloop pub -L quic://broker:14567 -t a/b -m hi     # over QUIC
  mqttloop pub -L quic://b:14567,mqtts://b:8883 -t a -m x  # QUIC, falling back to TLS
  tail -f app.log | mqttloop pub -t logs/app -l -q 1   # one message per line
  mqttloop pub -t cfg -f config.json --content-type application/json -r
  mqttloop pub -t a/b -m x --user-property source=cli --message-expiry 60
  mqttloop pub -t a/b -m tick --repeat 10 --repeat-delay 1s
  mqttloop pub -t a/b -n -r                            # clear the retained message
`

func runPub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "pub"
	fs := newFlagSet(name, "Publishes a message (or many) and exits when the broker acknowledged them.", pubExamples, stderr)
	var cf connFlags
	cf.register(fs)
	var mf msgFlags
	mf.register(fs)
	topic := fs.String("t", "", "`topic` to publish to (required)")
	message := fs.String("m", "", "the message")
	file := fs.String("f", "", "send the contents of this `file` as the message")
	whole := fs.Bool("s", false, "send stdin, read to the end, as the message")
	lines := fs.Bool("l", false, "send each line of stdin as a message")
	_ = fs.Bool("n", false, "send an empty (null) message")
	qos := fs.Int("q", 0, "`QoS` 0, 1 or 2")
	retain := fs.Bool("r", false, "retain the message")
	repeat := fs.Int("repeat", 1, "publish the message this many `times`")
	delay := fs.Duration("repeat-delay", 0, "wait this `long` between repeats")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	sources := 0
	for _, s := range []string{"m", "f", "s", "l", "n"} {
		if set[s] {
			sources++
		}
	}
	switch {
	case *topic == "":
		return usageErr(stderr, name, "-t: a topic is required")
	case sources != 1:
		return usageErr(stderr, name, "give exactly one message source: -m, -f, -s, -l or -n")
	case *qos < 0 || *qos > 2:
		return usageErr(stderr, name, "-q %d: want 0, 1 or 2", *qos)
	case *repeat < 1:
		return usageErr(stderr, name, "--repeat %d: want at least 1", *repeat)
	case *lines && *repeat != 1:
		return usageErr(stderr, name, "--repeat does not go with -l")
	}
	opts, err := cf.options(name, stderr)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	var payload []byte
	switch {
	case set["m"]:
		payload = []byte(*message)
	case *file != "":
		if payload, err = readFileArg(*file); err != nil {
			fmt.Fprintf(stderr, "mqttloop pub: -f: %v\n", err)
			return exitError
		}
	case *whole:
		if payload, err = io.ReadAll(stdin); err != nil {
			fmt.Fprintf(stderr, "mqttloop pub: reading stdin: %v\n", err)
			return exitError
		}
	}
	loop, err := eventloop.New(opts)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	props := mf.properties()
	pub := func(p []byte) eventloop.Publish {
		return eventloop.Publish{Topic: *topic, Payload: p, QoS: byte(*qos), Retain: *retain, Properties: props}
	}

	requests := make(chan eventloop.Request, 64)
	done := make(chan struct{})
	produced := make(chan error, 1)
	go func() {
		defer close(requests)
		send := func(r eventloop.Request) bool {
			select {
			case requests <- r:
				return true
			case <-done:
				return false
			}
		}
		if *lines {
			sc := bufio.NewScanner(stdin)
			sc.Buffer(make([]byte, 64<<10), 256<<20)
			for sc.Scan() {
				if !send(pub([]byte(sc.Text()))) {
					return
				}
			}
			produced <- sc.Err()
			return
		}
		for i := 0; i < *repeat; i++ {
			if i > 0 && *delay > 0 {
				select {
				case <-time.After(*delay):
				case <-done:
					return
				}
			}
			if !send(pub(payload)) {
				return
			}
		}
	}()
	defer close(done)

	code := exitOK
	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			if errors.Is(err, eventloop.ErrRequestsDone) {
				select {
				case perr := <-produced:
					if perr != nil {
						fmt.Fprintf(stderr, "mqttloop pub: reading stdin: %v\n", perr)
						return exitError
					}
				default:
				}
				return code
			}
			return exitFor(stderr, name, err)
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			if cf.debug {
				fmt.Fprintf(stderr, "connected to %s over %s (MQTT %s, session present %v)\n", ev.Server, ev.Transport, versionName(ev.ProtocolVersion), ev.SessionPresent)
			}
		case eventloop.Published:
			if ev.Err != nil {
				fmt.Fprintf(stderr, "mqttloop pub: refused: %v\n", ev.Err)
				code = exitRefused
			} else if cf.debug {
				fmt.Fprintf(stderr, "acknowledged: %s (reason code 0x%02X)\n", ev.Request.Topic, ev.ReasonCode)
			}
		case eventloop.RequestFailed:
			fmt.Fprintf(stderr, "mqttloop pub: %v\n", ev.Err)
			if errors.Is(ev.Err, eventloop.ErrNotSupported) {
				code = exitRefused
			} else if code == exitOK {
				code = exitError
			}
		case eventloop.Disconnected:
			if cf.debug {
				fmt.Fprintf(stderr, "disconnected: %v\n", ev.Err)
			}
		}
	}
}

func versionName(v byte) string {
	if v == 4 {
		return "3.1.1"
	}
	return "5"
}

// readFileArg reads the file named by a flag.
func readFileArg(path string) ([]byte, error) { return os.ReadFile(path) }
