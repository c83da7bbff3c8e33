package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
)

const rrExamples = `  mqttloop rr -t svc/time -e svc/time/reply -m now   # print the response
  mqttloop rr -t svc/echo -m hi -W 5 -v             # response topic: the broker's Response Information or a random one
  mqttloop rr -t svc/calc -f request.json --content-type application/json --json
`

func runRR(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "rr"
	fs := newFlagSet(name, `Sends an MQTT 5 request and prints the response, like mosquitto_rr: it subscribes to
the response topic, publishes the request with Response Topic and a fresh
Correlation Data, and exits with the first message on the response topic
that carries the same Correlation Data.`, rrExamples, stderr)
	var cf connFlags
	cf.register(fs)
	var mf msgFlags
	mf.register(fs)
	topic := fs.String("t", "", "request `topic` (required)")
	respTopic := fs.String("e", "", "response `topic` (default: under the broker's Response Information, or mqttloop/rr/<random>)")
	message := fs.String("m", "", "the request message")
	file := fs.String("f", "", "send the contents of this `file` as the request")
	qos := fs.Int("q", 1, "`QoS` of the request and the response subscription")
	wait := fs.Int("W", 30, "give up (exit 4) after this many `seconds`")
	verbose := fs.Bool("v", false, "print the response topic before the payload")
	format := fs.String("F", "", "print the response with this `template` (as sub -F)")
	asJSON := fs.Bool("json", false, "print the response as a JSON line with its properties")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	switch {
	case *topic == "":
		return usageErr(stderr, name, "-t: a request topic is required")
	case *qos < 0 || *qos > 2:
		return usageErr(stderr, name, "-q %d: want 0, 1 or 2", *qos)
	case *wait <= 0:
		return usageErr(stderr, name, "-W %d: want a positive number of seconds", *wait)
	case *message != "" && *file != "":
		return usageErr(stderr, name, "-m and -f: give one")
	case mf.responseTopic != "" || mf.correlation != "":
		return usageErr(stderr, name, "rr sets --response-topic and --correlation-data itself (use -e for the response topic)")
	}
	if v, err := cf.protocol(); err == nil && v != 5 {
		return usageErr(stderr, name, "request/response needs MQTT 5 (-V 5)")
	}
	opts, err := cf.options(name, stderr)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	payload := []byte(*message)
	if *file != "" {
		if payload, err = readFileArg(*file); err != nil {
			fmt.Fprintf(stderr, "mqttloop rr: -f: %v\n", err)
			return exitError
		}
	}
	opts.RequestResponseInformation = *respTopic == ""
	loop, err := eventloop.New(opts)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	var corr [16]byte
	_, _ = rand.Read(corr[:])
	correlation := []byte(hex.EncodeToString(corr[:]))
	props := mf.properties()
	if props == nil {
		props = &eventloop.Properties{}
	}
	props.CorrelationData = correlation

	ctx, cancel := context.WithTimeout(ctx, time.Duration(*wait)*time.Second)
	defer cancel()
	requests := make(chan eventloop.Request, 4)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	pr := printer{verbose: *verbose, newline: true, format: *format, json: *asJSON}
	reply := *respTopic
	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			switch {
			case errors.Is(err, eventloop.ErrDisconnected):
				return exitOK
			case errors.Is(err, context.DeadlineExceeded):
				fmt.Fprintf(stderr, "mqttloop rr: no response on %s within %d s\n", reply, *wait)
				return exitTimeout
			case errors.Is(err, eventloop.ErrStopped):
				return exitError
			}
			return exitFor(stderr, name, err)
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			if reply == "" {
				var r [6]byte
				_, _ = rand.Read(r[:])
				base := "mqttloop/rr"
				if ev.ResponseInformation != "" {
					base = strings.TrimSuffix(ev.ResponseInformation, "/")
				}
				reply = base + "/" + hex.EncodeToString(r[:])
			}
			if cf.debug {
				fmt.Fprintf(stderr, "connected to %s over %s; response topic %s\n", ev.Server, ev.Transport, reply)
			}
			props.ResponseTopic = reply
			requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: reply, QoS: byte(*qos)}}}
		case eventloop.Subscribed:
			if err := ev.Err(); err != nil {
				fmt.Fprintf(stderr, "mqttloop rr: subscribing to the response topic refused: %v\n", err)
				return exitRefused
			}
			requests <- eventloop.Publish{Topic: *topic, Payload: payload, QoS: byte(*qos), Properties: props}
		case eventloop.Published:
			if ev.Err != nil {
				fmt.Fprintf(stderr, "mqttloop rr: request refused: %v\n", ev.Err)
				return exitRefused
			}
		case eventloop.Message:
			if ev.Topic != reply || ev.Properties == nil || !bytes.Equal(ev.Properties.CorrelationData, correlation) {
				if cf.debug {
					fmt.Fprintf(stderr, "ignoring a message on %s without our correlation data\n", ev.Topic)
				}
				continue
			}
			pr.print(out, ev, time.Now())
			out.Flush()
			requests <- eventloop.Disconnect{}
		case eventloop.RequestFailed:
			fmt.Fprintf(stderr, "mqttloop rr: %v\n", ev.Err)
			return exitError
		}
	}
}
