package filestore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/state"
)

// The damaged-file sweep: every case is a copy of a real store's file,
// truncated or with one byte changed, opened and loaded in a child
// process (the test binary again), so that a crash, a runaway allocation
// or a hang fails the test instead of killing it. A child runs many cases
// one after the other; when it dies the parent notes the case it died in
// and starts a new child at the next one.
//
// go test -run TestDamagedStoreSweep ./state/filestore/ runs the CI form
// (every truncation at a 512-byte boundary and a sample of the others,
// every byte of the live bytes flipped); -sweep=full runs every truncation
// and all eight single-bit flips plus the inversion of every byte.
var sweepMode = flag.String("sweep", "ci", "damaged-store sweep: ci or full")

const sweepChildEnv = "FILESTORE_SWEEP_CHILD"

// sweepJob is what a child runs.
type sweepJob struct {
	Original string      // the intact file
	Want     string      // sha256 of the session's Save, hex
	Dir      string      // where to write the damaged copies
	Cases    []sweepCase // the cases, from First on
	First    int
}

type sweepCase struct {
	Trunc int  // file cut to this length (-1: not cut)
	Pos   int  // byte changed (-1: none)
	Mask  byte // XORed into it
}

func (c sweepCase) String() string {
	if c.Trunc >= 0 {
		return fmt.Sprintf("truncated to %d bytes", c.Trunc)
	}
	return fmt.Sprintf("byte %d ^ %#02x", c.Pos, c.Mask)
}

// Outcomes of a case.
const (
	outSame      = "same"      // opened and loaded the original session
	outCorrupt   = "corrupt"   // ErrCorruptState (or ErrUnsupportedVersion for the version field)
	outOther     = "other"     // another error
	outDifferent = "different" // loaded a session that is not the original
	outAlloc     = "alloc"     // allocated more than the bound
	outCrash     = "crash"     // the child died
	outHang      = "hang"      // the child stopped answering
	outLeak      = "leak"      // after a failed Open, the repaired file could not be opened
)

// sweepAllocBound is the most a case may allocate: a few times the file
// and a constant (Open, LoadStore and Save of a session this size).
func sweepAllocBound(size int) uint64 { return 16<<20 + 64*uint64(size) }

// TestDamagedStoreSweepChild runs the cases of a job; run by
// TestDamagedStoreSweep.
func TestDamagedStoreSweepChild(t *testing.T) {
	jobPath := os.Getenv(sweepChildEnv)
	if jobPath == "" {
		t.Skip("run by TestDamagedStoreSweep")
	}
	limitChildMemory()
	data, err := os.ReadFile(jobPath)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var job sweepJob
	if err := json.Unmarshal(data, &job); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	orig, err := os.ReadFile(job.Original)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := job.First; i < len(job.Cases); i++ {
		c := job.Cases[i]
		fmt.Fprintf(out, "start %d\n", i)
		out.Flush()
		bad := damage(orig, c)
		path := filepath.Join(job.Dir, "case-"+strconv.Itoa(i))
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		outcome, detail := openDamaged(path, job.Want)
		runtime.ReadMemStats(&ms)
		alloc := ms.TotalAlloc - before
		if alloc > sweepAllocBound(len(orig)) {
			outcome = outAlloc
		}
		if outcome != outSame {
			// A failed Open must leave nothing behind: the repaired
			// file opens.
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				fmt.Fprintln(out, "error", err)
				out.Flush()
				os.Exit(2)
			}
			st, err := Open(path, Options{Timeout: 100 * time.Millisecond})
			if err != nil {
				outcome, detail = outLeak, err.Error()
			} else {
				st.Close()
			}
		}
		os.Remove(path)
		fmt.Fprintf(out, "done %d %s %d %s\n", i, outcome, alloc, strings.ReplaceAll(detail, "\n", " "))
		out.Flush()
	}
	os.Exit(0)
}

func damage(orig []byte, c sweepCase) []byte {
	bad := bytes.Clone(orig)
	if c.Trunc >= 0 {
		bad = bad[:c.Trunc]
	}
	if c.Pos >= 0 {
		bad[c.Pos] ^= c.Mask
	}
	return bad
}

// openDamaged opens and loads a store file and says what came of it.
func openDamaged(path, want string) (outcome, detail string) {
	st, err := Open(path, Options{Timeout: time.Second})
	if err == nil {
		var s *state.MqttState
		s, err = state.LoadStore(st)
		if cerr := st.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err == nil {
			var b bytes.Buffer
			if serr := s.Save(&b); serr != nil {
				return outOther, serr.Error()
			}
			sum := sha256.Sum256(b.Bytes())
			if hex.EncodeToString(sum[:]) == want {
				return outSame, ""
			}
			return outDifferent, fmt.Sprintf("queued %d in flight %d subscriptions %d", s.Queued(), s.InFlight(), len(s.Subscriptions()))
		}
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + fmt.Sprintf("… (%d bytes)", len(msg))
	}
	if errors.Is(err, state.ErrCorruptState) || errors.Is(err, state.ErrUnsupportedVersion) {
		return outCorrupt, msg
	}
	return outOther, msg
}

// sweepResult is the outcome of one case.
type sweepResult struct {
	outcome, detail string
	alloc           uint64
}

// runSweep runs the cases in child processes and returns their outcomes.
func runSweep(t *testing.T, original []byte, want string, cases []sweepCase) []sweepResult {
	t.Helper()
	dir := t.TempDir()
	origPath := filepath.Join(dir, "original")
	if err := os.WriteFile(origPath, original, 0o600); err != nil {
		t.Fatal(err)
	}
	res := make([]sweepResult, len(cases))
	for first := 0; first < len(cases); {
		job := sweepJob{Original: origPath, Want: want, Dir: dir, Cases: cases, First: first}
		jb, _ := json.Marshal(job)
		jobPath := filepath.Join(dir, "job.json")
		if err := os.WriteFile(jobPath, jb, 0o600); err != nil {
			t.Fatal(err)
		}
		first = runChild(t, jobPath, first, res)
	}
	return res
}

// sweepWatchdog is how long a child may stay silent before it is taken
// for hung: a watchdog, far above what a case takes (milliseconds).
const sweepWatchdog = 2 * time.Minute

// runChild runs one child from case first; it returns where the next child
// starts.
func runChild(t *testing.T, jobPath string, first int, res []sweepResult) int {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDamagedStoreSweepChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), sweepChildEnv+"="+jobPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	current := -1
	watchdog := time.NewTimer(sweepWatchdog)
	defer watchdog.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				werr := cmd.Wait()
				if current < 0 {
					if werr != nil {
						t.Fatalf("sweep child failed before its first case: %v\n%s", werr, tail(stderr.String()))
					}
					return len(res)
				}
				// The child died in the middle of a case.
				res[current] = sweepResult{outcome: outCrash, detail: crashText(werr, stderr.String())}
				return current + 1
			}
			watchdog.Reset(sweepWatchdog)
			f := strings.SplitN(line, " ", 5)
			switch {
			case f[0] == "start" && len(f) == 2:
				current, _ = strconv.Atoi(f[1])
			case f[0] == "done" && len(f) >= 4:
				i, _ := strconv.Atoi(f[1])
				alloc, _ := strconv.ParseUint(f[3], 10, 64)
				r := sweepResult{outcome: f[2], alloc: alloc}
				if len(f) == 5 {
					r.detail = f[4]
				}
				res[i] = r
				current = -1
				if i == len(res)-1 {
					for range lines {
					}
					cmd.Wait()
					return len(res)
				}
			case f[0] == "error":
				t.Fatalf("sweep child: %s", line)
			}
		case <-watchdog.C:
			cmd.Process.Kill()
			for range lines {
			}
			cmd.Wait()
			if current < 0 {
				t.Fatalf("sweep child silent between cases")
			}
			res[current] = sweepResult{outcome: outHang, detail: "no answer within " + sweepWatchdog.String()}
			return current + 1
		}
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// crashText names how a child died: the runtime's fatal error line and
// the signal.
func crashText(werr error, stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "unexpected fault") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "[signal") {
			return l
		}
	}
	return fmt.Sprint(werr)
}

// realStore makes a store the way the event loop uses one: a session
// written through it for several rounds of every kind of change.
func realStore(t *testing.T) (data []byte, want string) {
	t.Helper()
	// Compact early, so that the file holds a log that was compacted and
	// grew again: a snapshot, then frames of every kind of change.
	defer func(old int64) { compactMin = old }(compactMin)
	compactMin = 4 << 10
	path := filepath.Join(t.TempDir(), "real.db")
	st := open(t, path)
	s := state.New(state.Config{ManualAcks: true})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	for round := range 6 {
		if round == 4 {
			compactMin = 1 << 20 // the last rounds' frames stay in the log
		}
		work(t, s, round)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(saved(t, s))
	return data, hex.EncodeToString(sum[:])
}

// TestDamagedStoreSweep: every damaged copy of a real store is refused
// with ErrCorruptState or loads the very session it held; none crashes,
// hangs, allocates beyond a bound of its size, or loads another session.
func TestDamagedStoreSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	data, want := realStore(t)
	live := liveBytes(t, data)
	full := *sweepMode == "full"
	var cases []sweepCase
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < len(data); n++ {
		if full || n%512 == 0 || n%4096 == 4095 || rng.IntN(16) == 0 {
			cases = append(cases, sweepCase{Trunc: n, Pos: -1})
		}
	}
	masks := []byte{0xff}
	if full {
		masks = append(masks, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
	}
	for _, pos := range live {
		for _, m := range masks {
			cases = append(cases, sweepCase{Trunc: -1, Pos: pos, Mask: m})
		}
	}
	start := time.Now()
	res := runSweep(t, data, want, cases)
	counts := map[string]int{}
	var maxAlloc uint64
	bad := 0
	for i, r := range res {
		what := "flip"
		if cases[i].Trunc >= 0 {
			what = "trunc"
		}
		counts[what+" "+r.outcome]++
		if r.outcome == outCrash {
			counts["crash: "+crashKind(r.detail)]++
		}
		maxAlloc = max(maxAlloc, r.alloc)
		switch r.outcome {
		case outSame, outCorrupt:
			if cases[i].Trunc >= 0 && cases[i].Trunc < len(data) && r.outcome == outSame && !truncationHarmless(data, cases[i].Trunc) {
				t.Errorf("%v: loaded as if intact", cases[i])
				bad++
			}
		default:
			if bad < 20 {
				t.Errorf("%v: %s %s", cases[i], r.outcome, r.detail)
			}
			bad++
		}
	}
	t.Logf("%d-byte store, %d live bytes; %d cases (%s sweep) in %v: %v; largest allocation %d bytes (bound %d)",
		len(data), len(live), len(cases), *sweepMode, time.Since(start).Round(time.Millisecond), counts, maxAlloc, sweepAllocBound(len(data)))
	if bad > 0 {
		t.Errorf("%d of %d damaged stores mishandled", bad, len(cases))
	}
}

func crashKind(detail string) string {
	for _, k := range []string{"SIGBUS", "SIGSEGV", "out of memory", "panic"} {
		if strings.Contains(detail, k) {
			return k
		}
	}
	return detail
}
