package leakcheck

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Names of goroutines that the standard library starts once per process and
// never stops. Pass them as ignore patterns (or use Standard).
const (
	// SignalLoop is the os/signal goroutine that receives signals for
	// signal.Notify; the runtime starts it at the first Notify call.
	SignalLoop = "os/signal.loop"
	// SignalRecv is the runtime function SignalLoop blocks in.
	SignalRecv = "os/signal.signal_recv"
	// RuntimeCleanups is the runtime's goroutine for runtime.AddCleanup
	// functions (crypto/tls and quic-go use them); it is a system
	// goroutine, but goroutine dumps show it while it runs a cleanup.
	RuntimeCleanups = "runtime.runCleanups"
)

// DefaultTimeout is how long Check and VerifyNone wait for goroutines to exit
// before reporting them. Goroutines often need a moment after a Close returns
// to run their last instructions; this is a failure guard, not a measurement.
const DefaultTimeout = 5 * time.Second

// Standard returns the ignore patterns for goroutines the standard library
// starts once per process and keeps for its lifetime.
func Standard() []string {
	return []string{SignalLoop, SignalRecv, RuntimeCleanups}
}

// Goroutine is one goroutine of a dump.
type Goroutine struct {
	// ID is the runtime's goroutine id.
	ID uint64
	// State is the wait reason shown in the dump header, such as "running",
	// "chan receive" or "IO wait, 2 minutes".
	State string
	// Top is the function running at the top of the stack, without
	// arguments, e.g. "net.(*netFD).Read".
	Top string
	// Funcs are the functions of all frames, top first, without arguments.
	Funcs []string
	// CreatedBy is the function whose go statement started the goroutine
	// ("" for the main goroutine).
	CreatedBy string
	// ParentID is the id of the goroutine that ran that go statement, or 0
	// when the dump does not say.
	ParentID uint64
	// Stack is the goroutine's full dump text.
	Stack string
}

// String returns the goroutine's dump text.
func (g Goroutine) String() string { return g.Stack }

// Matches reports whether any of the patterns is a substring of one of the
// goroutine's function names (its frames or its creator).
func (g Goroutine) Matches(patterns ...string) bool {
	for _, p := range patterns {
		if p == "" {
			continue
		}
		if strings.Contains(g.CreatedBy, p) {
			return true
		}
		for _, f := range g.Funcs {
			if strings.Contains(f, p) {
				return true
			}
		}
	}
	return false
}

// Set is a snapshot of the goroutines alive at one moment, by id.
type Set map[uint64]Goroutine

// Snapshot returns the goroutines of the process that are alive now,
// including the caller's.
func Snapshot() Set {
	return Parse(dump(true))
}

// New returns the goroutines of s that are not in since, ordered by id.
func (s Set) New(since Set) []Goroutine {
	var out []Goroutine
	for id, g := range s {
		if _, ok := since[id]; !ok {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Goroutine) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Sorted returns the goroutines of s ordered by id.
func (s Set) Sorted() []Goroutine {
	return s.New(nil)
}

// Without returns the goroutines of gs that match none of the ignore
// patterns (see Goroutine.Matches).
func Without(gs []Goroutine, ignore ...string) []Goroutine {
	var out []Goroutine
	for _, g := range gs {
		if !g.Matches(ignore...) {
			out = append(out, g)
		}
	}
	return out
}

// Started returns the goroutines alive in after but not in before that match
// none of the ignore patterns.
func Started(before, after Set, ignore ...string) []Goroutine {
	return Without(after.New(before), ignore...)
}

// CurrentID returns the id of the calling goroutine.
func CurrentID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		panic("leakcheck: cannot parse goroutine header: " + err.Error())
	}
	return id
}

// Poll returns once cond returns true, or when timeout has passed, and
// reports which. It calls cond at once, then after yielding the processor,
// then at growing intervals (up to 10 ms). It is meant for waiting until
// goroutines observed through snapshots have exited: there is nothing to
// wait on for that but the goroutine list itself.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := 50 * time.Microsecond
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		if i < 20 {
			runtime.Gosched()
			continue
		}
		timer := time.NewTimer(min(wait, time.Until(deadline)))
		<-timer.C
		wait = min(2*wait, 10*time.Millisecond)
	}
}

// Wait waits up to timeout until no goroutine that is absent from since and
// matches none of the ignore patterns is alive. It returns the goroutines
// still left when it gave up, or nil.
func Wait(since Set, timeout time.Duration, ignore ...string) []Goroutine {
	var left []Goroutine
	if Poll(timeout, func() bool {
		left = Started(since, Snapshot(), ignore...)
		return len(left) == 0
	}) {
		return nil
	}
	return left
}

// Report formats goroutines for a test failure message.
func Report(gs []Goroutine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d leaked goroutine(s):", len(gs))
	for _, g := range gs {
		b.WriteString("\n\n")
		b.WriteString(g.Stack)
	}
	return b.String()
}

// Checker holds the settings of a check; its zero value waits DefaultTimeout
// and ignores the Standard goroutines only.
type Checker struct {
	// Timeout is how long to wait for goroutines to exit (DefaultTimeout
	// when zero).
	Timeout time.Duration
	// Ignore lists function-name substrings of goroutines that may be left
	// running, in addition to Standard ones.
	Ignore []string
}

// Check takes a snapshot now and returns a function that waits until every
// goroutine started since has exited and, if some remain after the timeout,
// reports them with t.Errorf.
func (c Checker) Check(t testing.TB) func() {
	t.Helper()
	before := Snapshot()
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ignore := append(Standard(), c.Ignore...)
	return func() {
		t.Helper()
		if left := Wait(before, timeout, ignore...); len(left) > 0 {
			t.Errorf("leakcheck: %s", Report(left))
		}
	}
}

// VerifyNone takes a snapshot now and registers with t.Cleanup a check that
// every goroutine started since has exited by the end of the test. Call it
// first in a test so that it runs after the cleanups registered later
// (cleanups run last registered first).
func (c Checker) VerifyNone(t testing.TB) {
	t.Helper()
	t.Cleanup(c.Check(t))
}

// Check takes a snapshot now and returns a function to call (usually with
// defer) at the end of the code under test; it waits up to DefaultTimeout for
// the goroutines started since to exit and reports the rest, except those
// matching the ignore patterns or Standard.
func Check(t testing.TB, ignore ...string) func() {
	t.Helper()
	return Checker{Ignore: ignore}.Check(t)
}

// VerifyNone is Check run by t.Cleanup: goroutines started after this call
// must have exited by the end of the test.
func VerifyNone(t testing.TB, ignore ...string) {
	t.Helper()
	Checker{Ignore: ignore}.VerifyNone(t)
}

// dump returns runtime.Stack output for all goroutines (all=true) or only the
// caller's, growing the buffer until it fits.
func dump(all bool) []byte {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, all)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Parse parses goroutine dump text in the format of runtime.Stack (and of
// the "goroutine" profile at debug level 2). Records it cannot parse are
// skipped.
func Parse(text []byte) Set {
	set := Set{}
	for _, rec := range strings.Split(string(text), "\n\n") {
		rec = strings.TrimSpace(rec)
		if g, ok := parseOne(rec); ok {
			set[g.ID] = g
		}
	}
	return set
}

func parseOne(rec string) (Goroutine, bool) {
	lines := strings.Split(rec, "\n")
	header := lines[0]
	// "goroutine 12 [chan receive]:" possibly with extra fields between
	// the id and the state when GOTRACEBACK asks for more.
	rest, ok := strings.CutPrefix(header, "goroutine ")
	if !ok {
		return Goroutine{}, false
	}
	idText, rest, _ := strings.Cut(rest, " ")
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return Goroutine{}, false
	}
	g := Goroutine{ID: id, Stack: rec}
	if i := strings.IndexByte(rest, '['); i >= 0 {
		if j := strings.LastIndexByte(rest, ']'); j > i {
			g.State = rest[i+1 : j]
		}
	}
	for _, line := range lines[1:] {
		if strings.HasPrefix(line, "\t") || line == "" {
			continue // file:line of the frame above
		}
		if c, ok := strings.CutPrefix(line, "created by "); ok {
			fn, parent, found := strings.Cut(c, " in goroutine ")
			g.CreatedBy = fn
			if found {
				g.ParentID, _ = strconv.ParseUint(strings.TrimSpace(parent), 10, 64)
			}
			continue
		}
		if strings.HasPrefix(line, "...") {
			continue // "...additional frames elided..."
		}
		g.Funcs = append(g.Funcs, funcName(line))
	}
	if len(g.Funcs) > 0 {
		g.Top = g.Funcs[0]
	}
	return g, true
}

// funcName strips the argument list from a frame line such as
// "pkg.(*T).M(0xc000010000, 0x1)" or "panic({0x4a0f20?, 0xc0000a0000})".
func funcName(line string) string {
	if !strings.HasSuffix(line, ")") {
		return line
	}
	depth := 0
	for i := len(line) - 1; i >= 0; i-- {
		switch line[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				return line[:i]
			}
		}
	}
	return line
}
