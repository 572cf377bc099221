package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// ProcStat is what Linux says about a process at one moment.
type ProcStat struct {
	// CPU is user plus system time of all its threads (utime + stime of
	// /proc/PID/stat), in clock ticks of usually 10 ms: measure windows of
	// seconds, not milliseconds.
	CPU time.Duration
	// RSS and PeakRSS are VmRSS and VmHWM of /proc/PID/status, in bytes.
	RSS, PeakRSS int64
}

// ProcProbe reads process pid (0 means this process) from /proc.
func ProcProbe(pid int) Probe {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	return func() (ProcStat, error) { return readProc(dir) }
}

func readProc(dir string) (ProcStat, error) {
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ProcStat{}, err
	}
	ticks, err := parseStatTicks(stat)
	if err != nil {
		return ProcStat{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return ProcStat{}, err
	}
	rss, peak, err := parseStatusMemory(status)
	if err != nil {
		return ProcStat{}, fmt.Errorf("%s/status: %w", dir, err)
	}
	return ProcStat{CPU: TicksToDuration(ticks, clockTicks()), RSS: rss, PeakRSS: peak}, nil
}

// parseStatTicks returns utime + stime from the content of /proc/PID/stat.
// The second field is the command name in parentheses, which may itself
// hold spaces and parentheses, so fields are counted after the last ')'.
func parseStatTicks(stat []byte) (int64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("no command name")
	}
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	fields := bytes.Fields(stat[end+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("only %d fields after the command name", len(fields))
	}
	u, err := strconv.ParseInt(string(fields[utime]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseInt(string(fields[stime]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + s, nil
}

// parseStatusMemory returns VmRSS and VmHWM, in bytes, from the content of
// /proc/PID/status (where they are in kB).
func parseStatusMemory(status []byte) (rss, peak int64, err error) {
	var foundRSS, foundPeak bool
	for line := range bytes.Lines(status) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmRSS":
			dst, foundRSS = &rss, true
		case "VmHWM":
			dst, foundPeak = &peak, true
		default:
			continue
		}
		f := bytes.Fields(value)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected value %q", name, bytes.TrimSpace(value))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		*dst = kb << 10
	}
	if !foundRSS || !foundPeak {
		return 0, 0, errors.New("no VmRSS or VmHWM (a kernel thread, or a zombie?)")
	}
	return rss, peak, nil
}

// SystemStat is the whole machine's CPU time since boot, summed over CPUs.
type SystemStat struct {
	// Busy is user, nice, system, irq and softirq time.
	Busy time.Duration
	// Steal is time the hypervisor gave to other guests while this one
	// wanted to run.
	Steal time.Duration
}

// ReadSystem reads /proc/stat.
func ReadSystem() (SystemStat, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return SystemStat{}, err
	}
	busy, steal, err := parseSystemTicks(data)
	if err != nil {
		return SystemStat{}, fmt.Errorf("/proc/stat: %w", err)
	}
	hz := clockTicks()
	return SystemStat{Busy: TicksToDuration(busy, hz), Steal: TicksToDuration(steal, hz)}, nil
}

// parseSystemTicks returns busy and steal ticks from the first ("cpu") line
// of /proc/stat: user nice system idle iowait irq softirq steal guest
// guest_nice. Guest time is already inside user and nice.
func parseSystemTicks(stat []byte) (busy, steal int64, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, 0, errors.New("no aggregate cpu line")
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(string(f[i+1]), 10, 64); err != nil {
			return 0, 0, err
		}
	}
	const user, nice, system, irq, softirq, stealCol = 0, 1, 2, 5, 6, 7
	return v[user] + v[nice] + v[system] + v[irq] + v[softirq], v[stealCol], nil
}

// TicksToDuration converts clock ticks at hz ticks per second.
func TicksToDuration(ticks, hz int64) time.Duration {
	return time.Duration(ticks) * time.Second / time.Duration(hz)
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime. Go has no
// sysconf(_SC_CLK_TCK) without cgo, but the kernel passes the value to every
// process in its auxiliary vector (AT_CLKTCK); 100 is the value on every
// common architecture, used if the vector cannot be read.
var clockTicks = sync.OnceValue(func() int64 {
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if hz := auxvValue(auxv, atClkTck); hz > 0 {
		return int64(hz)
	}
	return 100
})

const atClkTck = 17

// auxvValue finds tag in an auxiliary vector of native-endian (key, value)
// pairs of 64-bit words, as on every 64-bit Linux.
func auxvValue(auxv []byte, tag uint64) uint64 {
	for len(auxv) >= 16 {
		k := binary.NativeEndian.Uint64(auxv)
		v := binary.NativeEndian.Uint64(auxv[8:])
		if k == tag {
			return v
		}
		if k == 0 {
			return 0
		}
		auxv = auxv[16:]
	}
	return 0
}
