//go:build linux || darwin || freebsd || netbsd || dragonfly

package eventloop_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// freshEnv makes the test binary run TestStandardGoroutinesFreshProcess's
// child side: "loops URL" or "none".
const freshEnv = "MQTTLOOP_FRESH_PROCESS"

// TestStandardGoroutinesFreshProcess measures which goroutines, runtime
// goroutines included, the standard library starts on the loop's behalf.
// Two fresh processes (this test binary re-executed) end with a SIGQUIT
// dump (GOTRACEBACK=system lists every goroutine): one that did nothing,
// one in which three loops connected, waited for readiness and ended.
// What the second has more is exactly two goroutines, once per process
// whatever the number of loops: os/signal's loop (started by the first
// signal.Notify) and the runtime's ensureSigM, which keeps an OS thread
// of its own so that SIGIO stays deliverable. README states this; the
// test keeps it true.
func TestStandardGoroutinesFreshProcess(t *testing.T) {
	if mode := os.Getenv(freshEnv); mode != "" {
		freshChild(mode)
		return
	}
	b := mqtttest.StartT(t, mqtttest.Options{DisableCapture: true})
	before := freshDump(t, "none")
	after := freshDump(t, "loops "+b.URL())
	var started []string
	for fn, n := range after {
		if gcBookkeeping[fn] {
			continue
		}
		for range n - before[fn] {
			started = append(started, fn)
		}
	}
	slices.Sort(started)
	want := []string{"os/signal.loop", "runtime.ensureSigM.func1"}
	if !slices.Equal(started, want) {
		t.Fatalf("goroutines started on the loops' behalf: %q, want %q\nbefore: %v\nafter: %v", started, want, before, after)
	}
	t.Logf("started on the loops' behalf: %q", started)

	// Loops that wait in the poller (Options.WakeAfterSend) never use
	// SIGIO: nothing of the standard library stays. (The context package
	// ran each loop's context.AfterFunc function on a goroutine of its
	// own when the context ended; those ended with it.)
	wake := freshDump(t, "wakeloops "+b.URL())
	started = nil
	for fn, n := range wake {
		if gcBookkeeping[fn] {
			continue
		}
		for range n - before[fn] {
			started = append(started, fn)
		}
	}
	if len(started) > 0 {
		t.Fatalf("goroutines left on behalf of loops waiting in the poller: %q, want none\nbefore: %v\nafter: %v", started, before, wake)
	}
}

// gcBookkeeping are runtime goroutines that come and go with garbage
// collection cycles (mark workers, one caught switching stacks by the
// dump, whose traceback then ends at mcall, systemstack_switch or, seen
// once in CI, morestack), whatever the process does.
var gcBookkeeping = map[string]bool{"runtime.gcBgMarkWorker": true, "runtime.mcall": true, "runtime.systemstack_switch": true, "runtime.morestack": true}

// freshDump runs the child in mode and returns how many goroutines run
// each function in its final dump.
func freshDump(t *testing.T, mode string) map[string]int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStandardGoroutinesFreshProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), freshEnv+"="+mode, "GOTRACEBACK=system")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output() // exits with status 2 after the dump
	if !strings.Contains(string(out), "READY") {
		t.Fatalf("child %q: %s\n%s", mode, out, stderr.Bytes())
	}
	counts := map[string]int{}
	for _, block := range strings.Split(stderr.String(), "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		// The goroutine's own function: the last frame above "created by".
		fn := ""
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "created by") {
				break
			}
			if !strings.HasPrefix(l, "\t") {
				if i := strings.LastIndexByte(l, '('); i > 0 && l[:i] != "runtime.goexit" {
					fn = l[:i]
				}
			}
		}
		counts[fn]++
	}
	if len(counts) == 0 {
		t.Fatalf("child %q printed no goroutine dump:\n%s", mode, stderr.Bytes())
	}
	return counts
}

// freshChild runs in the re-executed process: with "loops URL", three
// loops connect, subscribe, wait for readiness and end ("wakeloops URL":
// the same with Options.WakeAfterSend); then (in both
// modes) it collects garbage, prints READY and dumps every goroutine
// (SIGQUIT).
func freshChild(mode string) {
	url, loops := strings.CutPrefix(mode, "loops ")
	wakeURL, wake := strings.CutPrefix(mode, "wakeloops ")
	if wake {
		url, loops = wakeURL, true
	}
	if loops {
		base := runtime.NumGoroutine()
		for i := range 3 {
			loop, err := eventloop.New(eventloop.Options{Servers: []string{url}, ClientID: fmt.Sprintf("fresh-%d-%d", os.Getpid(), i), WakeAfterSend: wake})
			if err != nil {
				fmt.Println("ERROR", err)
				os.Exit(1)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			reqs := make(chan eventloop.Request, 1)
			reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "fresh/x"}}}
			events := loop.Run(ctx, reqs)
			for {
				if _, err := events.Next(); err != nil {
					break // the context ends the run after an idle wait
				}
			}
			cancel()
		}
		if wake {
			// Let the context package's AfterFunc goroutines finish.
			leakcheck.Poll(10*time.Second, func() bool { return runtime.NumGoroutine() <= base })
		}
	}
	runtime.GC() // both children then have the GC's worker goroutines
	fmt.Println("READY")
	_ = os.Stdout.Sync()
	_ = syscall.Kill(os.Getpid(), syscall.SIGQUIT)
	time.Sleep(time.Minute) // the runtime exits from the signal handler
}
