package leakcheck

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a testing.TB that records failures instead of failing the
// real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// parkedFunction blocks until release is closed; its name marks the leaked
// goroutine in stack dumps.
func parkedFunction(started chan<- uint64, release <-chan struct{}) {
	started <- CurrentID()
	<-release
}

func TestDetectsLeakAndPassesAfterExit(t *testing.T) {
	release := make(chan struct{})
	started := make(chan uint64)
	exited := make(chan struct{})

	rec := &recorder{TB: t}
	check := Checker{Timeout: 20 * time.Millisecond}.Check(rec)
	go func() {
		defer close(exited)
		parkedFunction(started, release)
	}()
	leakedID := <-started

	check()
	errs := rec.failures()
	if len(errs) != 1 {
		t.Fatalf("want 1 failure for the parked goroutine, got %d: %q", len(errs), errs)
	}
	if !strings.Contains(errs[0], "parkedFunction") || !strings.Contains(errs[0], fmt.Sprintf("goroutine %d ", leakedID)) {
		t.Fatalf("report does not show the leaked goroutine %d:\n%s", leakedID, errs[0])
	}

	// A check that ignores it by function name passes while it still runs.
	rec2 := &recorder{TB: t}
	Checker{Timeout: 20 * time.Millisecond, Ignore: []string{"leakcheck.parkedFunction"}}.Check(rec2)()
	// A fresh check taken after the leak started does not see it.
	Checker{Timeout: 20 * time.Millisecond}.Check(rec2)()
	if errs := rec2.failures(); len(errs) != 0 {
		t.Fatalf("unexpected failures: %q", errs)
	}

	// Once the goroutine is released, the original snapshot is clean again:
	// the wait absorbs the moment the goroutine needs to finish.
	close(release)
	<-exited
	rec3 := &recorder{TB: t}
	check3 := Checker{}.Check(rec3)
	check3()
	if errs := rec3.failures(); len(errs) != 0 {
		t.Fatalf("unexpected failures after exit: %q", errs)
	}
}

func TestCheckWaitsForExitingGoroutine(t *testing.T) {
	rec := &recorder{TB: t}
	check := Check(rec)
	release := make(chan struct{})
	go func() { <-release }()
	close(release) // the goroutine may or may not have exited when check runs
	check()
	if errs := rec.failures(); len(errs) != 0 {
		t.Fatalf("unexpected failures: %q", errs)
	}
}

func TestVerifyNoneRunsAtCleanup(t *testing.T) {
	var rec *recorder
	release := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		rec = &recorder{TB: t}
		Checker{Timeout: 20 * time.Millisecond}.VerifyNone(rec)
		go func() { <-release }()
	})
	defer close(release)
	if errs := rec.failures(); len(errs) != 1 {
		t.Fatalf("want 1 failure from the cleanup check, got %q", errs)
	}
}

func TestSnapshotNewAndParents(t *testing.T) {
	me := CurrentID()
	before := Snapshot()
	if _, ok := before[me]; !ok {
		t.Fatalf("snapshot lacks the current goroutine %d", me)
	}

	release := make(chan struct{})
	started := make(chan uint64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		parkedFunction(started, release)
	}()
	id := <-started
	after := Snapshot()
	close(release)
	<-done

	gs := after.New(before)
	if len(gs) != 1 {
		t.Fatalf("want exactly one new goroutine, got %d:\n%s", len(gs), Report(gs))
	}
	g := gs[0]
	if g.ID != id {
		t.Errorf("ID = %d, want %d", g.ID, id)
	}
	if g.ParentID != me {
		t.Errorf("ParentID = %d, want %d (this test's goroutine)", g.ParentID, me)
	}
	if !strings.Contains(g.CreatedBy, "TestSnapshotNewAndParents") {
		t.Errorf("CreatedBy = %q", g.CreatedBy)
	}
	if !g.Matches("leakcheck.parkedFunction") || g.Matches("no.such.func") {
		t.Errorf("Matches is wrong for %v", g.Funcs)
	}
	if len(Without(gs, "parkedFunction")) != 0 || len(Without(gs, "other")) != 1 {
		t.Errorf("Without filters wrongly")
	}
	if len(Started(before, after, "parkedFunction")) != 0 {
		t.Errorf("Started does not apply ignores")
	}
}

func TestStandardIgnoresSignalLoop(t *testing.T) {
	before := Snapshot()
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	defer signal.Stop(c)
	// The signal loop is started once per process; if an earlier test (or
	// package init) started it, there is nothing new to see, which is fine.
	if left := Wait(before, DefaultTimeout, Standard()...); len(left) > 0 {
		t.Fatalf("Standard ignores miss the signal goroutine:\n%s", Report(left))
	}
	for _, g := range Snapshot() {
		if g.Matches(SignalLoop) && !strings.Contains(g.CreatedBy, "os/signal") {
			t.Errorf("unexpected creator %q of the signal loop", g.CreatedBy)
		}
	}
}

func TestParse(t *testing.T) {
	text := `goroutine 7 [chan receive, 3 minutes]:
example.com/p.(*T).Run(0xc000010000, {0x4a0f20?, 0xc0000a0000})
	/src/p/t.go:10 +0x25
example.com/p.F[...](...)
	/src/p/f.go:3
created by example.com/p.Start in goroutine 1
	/src/p/s.go:5 +0x3b

goroutine 1 [running]:
main.main()
	/src/main.go:1 +0x1
`
	set := Parse([]byte(text))
	if len(set) != 2 {
		t.Fatalf("parsed %d goroutines, want 2", len(set))
	}
	g := set[7]
	if g.State != "chan receive, 3 minutes" || g.Top != "example.com/p.(*T).Run" ||
		g.CreatedBy != "example.com/p.Start" || g.ParentID != 1 ||
		len(g.Funcs) != 2 || g.Funcs[1] != "example.com/p.F[...]" {
		t.Fatalf("bad parse: %+v", g)
	}
	if m := set[1]; m.Top != "main.main" || m.CreatedBy != "" || m.ParentID != 0 {
		t.Fatalf("bad parse of main: %+v", m)
	}
}
