// Command mqttloop is the MQTT command line on the mqttloop event loop:
// publish, subscribe, request/response, probe a broker, benchmark one, and
// run a local broker, over TCP, TLS, WebSocket and QUIC.
//
//	mqttloop broker                            # a local broker: tcp, tls, ws, quic
//	mqttloop sub -t 'sensors/#' -v             # print what arrives
//	mqttloop pub -t sensors/t1 -m 21.5 -q 1    # publish one message
//	mqttloop rr -t svc/time -e svc/time/reply -m now
//	mqttloop check -L mqtt://broker.example
//	mqttloop bench -c 100 --rate 10 -q 1
//
// Run 'mqttloop help' or 'mqttloop <command> --help' for the flags. The
// connection flags are spelt as mosquitto_pub and mosquitto_sub spell them
// (-h -p -t -m -q -r -i -u -P -k -C -W -v -F --cafile --cert --key
// --insecure), plus -L URL for any transport and a fallback list.
//
// Exit codes:
//
//	0  success
//	1  error: the connection failed, a file could not be read, ...
//	2  bad usage (flags)
//	3  the broker refused: CONNACK, PUBACK/PUBREC or SUBACK reason code >= 0x80
//	4  timed out: -W elapsed before -C messages, or no response (rr)
//	5  check: something asked for does not work
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of run.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitRefused = 3
	exitTimeout = 4
	exitCheck   = 5
)

const exitCodes = `Exit codes:
  0  success
  1  error (connection failed, file unreadable, ...)
  2  bad usage
  3  refused by the broker (CONNACK, PUBACK/PUBREC or SUBACK reason code >= 0x80)
  4  timed out (-W elapsed before -C messages; rr: no response)
  5  check: something asked for does not work
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is a subcommand: run gets the arguments after its name.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"pub", "publish messages", runPub},
		{"sub", "subscribe and print messages", runSub},
		{"rr", "MQTT 5 request/response: publish a request, print the response", runRR},
		{"check", "probe what a broker supports and print a table", runCheck},
		{"bench", "benchmark a broker: connections x rate x QoS x payload", runBench},
		{"broker", "run a local broker (TCP, TLS, WebSocket, QUIC)", runBroker},
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `mqttloop: the MQTT command line on the mqttloop event loop

Usage: mqttloop <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'mqttloop <command> --help' for its flags and examples.

First steps:
  mqttloop broker &                       # local broker on 1883 (tcp), 8883 (tls), 8080 (ws), 14567 (quic)
  mqttloop sub -t 'hello/#' -v &          # print messages
  mqttloop pub -t hello/world -m hi       # publish one

`)
	fmt.Fprint(w, exitCodes)
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-help", "--help", "-h":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "mqttloop: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// parse parses args with fs; it returns the exit code to end with, or -1
// to go on.
func parse(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage
	}
	return -1
}

// newFlagSet makes the flag set of a subcommand with its help text: the
// synopsis, the examples, the flags and the exit codes.
func newFlagSet(name, synopsis, examples string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mqttloop "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: mqttloop %s [flags]\n\n%s\n\nExamples:\n%s\nFlags (-x and --x are the same):\n", name, synopsis, examples)
		fs.PrintDefaults()
		fmt.Fprint(w, "\n"+exitCodes)
	}
	return fs
}

// usageErr prints a usage error and returns exitUsage.
func usageErr(stderr io.Writer, name, format string, args ...any) int {
	fmt.Fprintf(stderr, "mqttloop %s: %s\n", name, fmt.Sprintf(format, args...))
	fmt.Fprintf(stderr, "run 'mqttloop %s --help' for the flags\n", name)
	return exitUsage
}
