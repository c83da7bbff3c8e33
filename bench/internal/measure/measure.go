//go:build linux

// Package measure reads what the peer benchmark reports: CPU time of this
// process and of others, resident memory, the Go heap and stacks, and how
// busy the rest of the machine was.
package measure

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SelfCPU returns the user+system CPU time of this process (all threads).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is USER_HZ, the unit of /proc CPU times.
const clockTicks = 100

// PidCPU returns the user+system CPU time of process pid from /proc
// (10 ms resolution), 0 if it cannot be read.
func PidCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// MachineBusy returns the CPU time every process of the machine spent
// outside idle since boot, and the number of CPUs.
func MachineBusy() (time.Duration, int) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	var busy time.Duration
	cpus := 0
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if i > 0 {
			cpus++
			continue
		}
		for j, v := range f[1:] {
			if j == 3 || j == 4 || j > 6 {
				continue // idle, iowait, steal, guest
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			busy += time.Duration(n) * time.Second / clockTicks
		}
	}
	return busy, cpus
}

// RSS returns this process's resident set size in bytes.
func RSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// Mem is a snapshot of memory use.
type Mem struct {
	RSS        int64 // resident set size
	HeapInuse  int64 // bytes in in-use heap spans (runtime.MemStats.HeapInuse)
	StackInuse int64 // bytes of goroutine stacks
	Goroutines int
}

// Memory collects garbage twice and returns the memory now in use.
func Memory() Mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{RSS: RSS(), HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse), Goroutines: runtime.NumGoroutine()}
}

// RaiseFileLimit raises RLIMIT_NOFILE to n (soft and hard; the hard limit
// only goes up when the process may do so) and returns the soft limit in
// force.
func RaiseFileLimit(n uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur >= n {
		return rl.Cur
	}
	want := rl
	want.Cur = n
	if want.Max < n {
		want.Max = n
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		want.Cur = rl.Max
		want.Max = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}
