package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process of the harness.
type proc struct {
	name string
	cmd  *exec.Cmd
	url  string // base URL it serves, once known
	done chan struct{}
	err  error // Wait's result, after done
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// cpuPrefix returns the command prefix that pins a process to cpus
// ("0", "1", "0-1"), or nothing when pinning is off.
func cpuPrefix(cpus string) []string {
	if cpus == "" {
		return nil
	}
	return []string{"taskset", "-c", cpus}
}

// start runs argv (pinned to cpus) with env added to the harness's
// environment minus LLMGATE_*; stdout and stderr go to log files in dir.
// When waitListening is set it waits for the "LISTENING <url>" line.
func start(ctx context.Context, dir, name, cpus string, env []string, waitListening bool, argv ...string) (*proc, error) {
	full := append(cpuPrefix(cpus), argv...)
	cmd := exec.Command(full[0], full[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LLMGATE_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	// Children die with the harness even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	var lines chan string
	if waitListening {
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		lines = make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if u, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
					lines <- u
				}
			}
			io.Copy(io.Discard, out)
		}()
	} else {
		cmd.Stdout = stderr
	}
	if err := cmd.Start(); err != nil {
		stderr.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		stderr.Close()
		close(p.done)
	}()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	if waitListening {
		select {
		case p.url = <-lines:
		case <-p.done:
			return nil, fmt.Errorf("%s exited before listening (%v); see %s", name, p.err, stderr.Name())
		case <-time.After(30 * time.Second):
			p.stop()
			return nil, fmt.Errorf("%s did not listen within 30s; see %s", name, stderr.Name())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		}
	}
	return p, nil
}

// pid is the process id (taskset execs the program, so it is the program's).
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the process: SIGTERM, then SIGKILL after 5s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll stops every child still running.
func stopAll() {
	procsMu.Lock()
	ps := append([]*proc(nil), procs...)
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// rssKiB reads VmRSS of pid from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime reads the user+system CPU time pid has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses and may
	// contain spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// freePort returns a loopback port nobody listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200 or timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v)", p.name, p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("GET %s: not 200 within %v: %s", url, timeout, last)
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit; children
// inherit it.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// machineBusy reads the CPU time all CPUs spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// ownCPU is the CPU time of this process and its running children.
func ownCPU() time.Duration {
	t := cpuTime(os.Getpid())
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			t += cpuTime(p.pid())
		}
	}
	return t
}

// foreignLoad measures, over d, the CPU that processes other than the
// harness and its children use, in cores.
func foreignLoad(d time.Duration) float64 {
	b0, o0 := machineBusy(), ownCPU()
	time.Sleep(d)
	b1, o1 := machineBusy(), ownCPU()
	return max(float64((b1-b0)-(o1-o0)), 0) / float64(d)
}

// waitQuiet waits, at most max, until other processes use less than
// limit cores; it returns the last load seen.
func waitQuiet(ctx context.Context, limit float64, maxWait time.Duration) float64 {
	deadline := time.Now().Add(maxWait)
	for {
		l := foreignLoad(300 * time.Millisecond)
		if l < limit || time.Now().After(deadline) || ctx.Err() != nil {
			return l
		}
	}
}
