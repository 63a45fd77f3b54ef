package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// runResult is one measured load run of one target.
type runResult struct {
	load loadResult
	// slices are the pieces load was merged from, in the order taken,
	// when the run was taken in slices.
	slices []loadResult
	cpu    time.Duration // CPU the target process used during the run
	upCPU  time.Duration // CPU the upstream used during the run
	// foreign is the CPU (in cores) that processes outside the harness
	// used during the run: other work on the machine skews the result.
	foreign float64
}

func (r runResult) cpuPerReq() float64 { return perReq(r.cpu, r.load.Requests) }

// perReq is d in µs per request.
func perReq(d time.Duration, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(requests)
}

// busy is the target's CPU use as a share of one core.
func (r runResult) busy() float64 {
	if r.load.DurationUS == 0 {
		return 0
	}
	return 100 * float64(r.cpu.Microseconds()) / float64(r.load.DurationUS)
}

type loadRow struct {
	body  string
	conns int
	res   map[string]runResult // by target name
}

type fbRow struct {
	name string
	d    map[string][]time.Duration
}

type streamRow struct {
	name          string
	n             int
	before, after int64 // VmRSS, KiB
	open          time.Duration
}

func (s streamRow) perStream() float64 { return float64(s.after-s.before) / float64(s.n) }

type report struct {
	opts    options
	loadgen string
	redis   string
	nofile  uint64
	pinned  bool
	nginx   string // nginx version when it was measured, else ""
	elapsed time.Duration

	firstByte []fbRow
	load      []loadRow
	streams   []streamRow

	redisCmds       cmdStats // during every llmgate load run
	redisRequests   int64
	redis64         cmdStats // during the 64-connection chat run
	redis64Requests int64
	redisIdle       cmdStats // llmgate idle
	redisIdleSecs   int

	problems []string
}

func us(v int64) string {
	if v < 1000 {
		return fmt.Sprintf("%d µs", v)
	}
	return fmt.Sprintf("%.2f ms", float64(v)/1000)
}

func dur(d time.Duration) string { return us(d.Microseconds()) }

func signedUS(v int64) string {
	if v < 0 {
		return "−" + us(-v)
	}
	return "+" + us(v)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown"
}

// onlineCPUs counts the machine's CPUs (not only those this process may
// run on: the harness runs pinned to one).
func onlineCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	return max(strings.Count(string(b), "\nprocessor")+boolInt(strings.HasPrefix(string(b), "processor")), 1)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func (r *report) row(body string, conns int) (loadRow, bool) {
	for _, l := range r.load {
		if l.body == body && l.conns == conns {
			return l, true
		}
	}
	return loadRow{}, false
}

func mark(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	ncpu := onlineCPUs()
	p("## llmgate bench, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	p("- Command: `go run ./bench %s`\n", strings.Join(os.Args[1:], " "))
	p("- Machine: %d CPUs (%s), Linux %s; %s\n", ncpu, cpuModel(), kernel(), goVersion())
	p("- Load generator: %s. Redis: %s. RLIMIT_NOFILE %d.\n", r.loadgen, r.redis, r.nofile)
	if r.nginx != "" {
		p("- nginx: %s, one worker, no master process, keep-alive upstream pool (512), credential swap, `proxy_buffering off` (see bench/nginx.go).\n", r.nginx)
	} else {
		p("- nginx: not installed, not measured (apt-get install nginx-light).\n")
	}
	if r.pinned {
		p("- Pinning: the proxy under test (bare, llmgate or nginx) alone on CPU %s (GOMAXPROCS=1, one nginx worker); load generator, demo upstream, Redis and harness on CPU %s.\n", proxyCPU, harnessCPU)
	} else {
		p("- Pinning: off; every process may use every CPU.\n")
	}
	if n, slice := sliceRun(r.opts.duration, r.opts.slice); n > 1 {
		p("- Each load run: %v measured per target after %v of warm-up, closed loop (each connection sends its next call when the answer has ended); at one connection in %d slices of %v taken by the targets in turn (A B B A …, so that noise on the machine lands on all alike; percentiles merged from each slice's distribution). Run took %v.\n\n",
			time.Duration(n)*slice, r.opts.warmup, n, slice, r.elapsed.Round(time.Second))
	} else {
		p("- Each load run: %v measured after %v of warm-up, closed loop (each connection sends its next call when the answer has ended). Run took %v.\n\n",
			r.opts.duration, r.opts.warmup, r.elapsed.Round(time.Second))
	}

	// Non-stream load.
	p("### Non-stream calls\n\n")
	direct := r.opts.direct
	p("| body | conns |")
	if direct {
		p(" direct req/s |")
	}
	p(" bare req/s | llmgate req/s | ratio | bare p50 | llmgate p50 | bare p99 | llmgate p99 | added p99 | bare CPU/req | llmgate CPU/req | CPU ratio |\n")
	p("|---|---:|")
	if direct {
		p("---:|")
	}
	p("---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range r.load {
		bb, gg := l.res["bare"], l.res["llmgate"]
		p("| %s | %d |", l.body, l.conns)
		if direct {
			p(" %.0f |", l.res["direct"].load.rps())
		}
		p(" %.0f | %.0f | %.2f× | %s | %s | %s | %s | %s | %.0f µs | %.0f µs | %.2f× |\n",
			bb.load.rps(), gg.load.rps(), gg.load.rps()/bb.load.rps(),
			us(bb.load.P50), us(gg.load.P50), us(bb.load.P99), us(gg.load.P99), signedUS(gg.load.P99-bb.load.P99),
			bb.cpuPerReq(), gg.cpuPerReq(), gg.cpuPerReq()/bb.cpuPerReq())
	}
	p("\nratio is llmgate ÷ bare throughput; CPU/req is the proxy process's user+system CPU time over the run ÷ its requests " +
		"(/proc/PID/stat, 10 ms ticks), and CPU ratio is llmgate ÷ bare: the cost that decides throughput where the proxy's core is the bottleneck.\n\n")
	if r.nginx != "" {
		p("Against nginx (same runs):\n\n")
		p("| body | conns | nginx req/s | llmgate req/s | llmgate ÷ nginx | nginx p50 | llmgate p50 | nginx p99 | llmgate p99 | nginx CPU/req | llmgate CPU/req |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, l := range r.load {
			nn, gg := l.res["nginx"], l.res["llmgate"]
			p("| %s | %d | %.0f | %.0f | %.2f× | %s | %s | %s | %s | %.0f µs | %.0f µs |\n", l.body, l.conns,
				nn.load.rps(), gg.load.rps(), gg.load.rps()/nn.load.rps(), us(nn.load.P50), us(gg.load.P50),
				us(nn.load.P99), us(gg.load.P99), nn.cpuPerReq(), gg.cpuPerReq())
		}
		p("\n")
	}
	p("CPU accounting per run (who was the bottleneck; \"other\" is CPU used by processes outside the harness, which skews a run):\n\n")
	p("| body | conns | target | proxy CPU busy | proxy CPU/req | upstream CPU/req | load generator CPU/req | other processes |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, l := range r.load {
		for _, name := range []string{"direct", "bare", "llmgate", "nginx"} {
			rr, ok := l.res[name]
			if !ok {
				continue
			}
			busy := fmt.Sprintf("%.0f%%", rr.busy())
			cpu := fmt.Sprintf("%.0f µs", rr.cpuPerReq())
			if name == "direct" {
				busy, cpu = "–", "–"
			}
			p("| %s | %d | %s | %s | %s | %.0f µs | %.0f µs | %.2f CPU |\n", l.body, l.conns, name, busy, cpu,
				perReq(rr.upCPU, rr.load.Requests), perReq(rr.load.GenCPU, rr.load.Requests), rr.foreign)
		}
	}
	p("\n")

	// First byte.
	p("### SSE time to first event (%d sequential streamed calls per target, warm keep-alive connection)\n\n", r.opts.samples)
	p("| stream | direct p50 | bare p50 | llmgate p50 | llmgate − direct p50 | llmgate − bare p50 | direct p99 | bare p99 | llmgate p99 | llmgate − direct p99 |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, f := range r.firstByte {
		d50, b50, g50 := percentile(f.d["direct"], 50), percentile(f.d["bare"], 50), percentile(f.d["llmgate"], 50)
		d99, b99, g99 := percentile(f.d["direct"], 99), percentile(f.d["bare"], 99), percentile(f.d["llmgate"], 99)
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f.name, dur(d50), dur(b50), dur(g50),
			signedUS((g50 - d50).Microseconds()), signedUS((g50 - b50).Microseconds()), dur(d99), dur(b99), dur(g99), signedUS((g99 - d99).Microseconds()))
	}
	if r.nginx != "" {
		p("\n| stream | nginx p50 | llmgate − nginx p50 | nginx p99 | llmgate − nginx p99 |\n|---|---:|---:|---:|---:|\n")
		for _, f := range r.firstByte {
			n50, g50 := percentile(f.d["nginx"], 50), percentile(f.d["llmgate"], 50)
			n99, g99 := percentile(f.d["nginx"], 99), percentile(f.d["llmgate"], 99)
			p("| %s | %s | %s | %s | %s |\n", f.name, dur(n50), signedUS((g50 - n50).Microseconds()), dur(n99), signedUS((g99 - n99).Microseconds()))
		}
	}
	p("\n")

	// Idle streams.
	var bareKiB, gateKiB float64
	if len(r.streams) > 0 {
		p("### Memory per open idle stream (fresh process each; /v1/messages streams held open after their first event, upstream silent)\n\n")
		p("| proxy | streams | VmRSS before | VmRSS after | KiB per stream | time to open all |\n|---|---:|---:|---:|---:|---:|\n")
		for _, s := range r.streams {
			p("| %s | %d | %.1f MiB | %.1f MiB | %.1f | %v |\n", s.name, s.n, float64(s.before)/1024, float64(s.after)/1024, s.perStream(), s.open.Round(10*time.Millisecond))
			switch s.name {
			case "bare":
				bareKiB = s.perStream()
			case "llmgate":
				gateKiB = s.perStream()
			}
		}
		p("\n")
	}

	// Redis.
	p("### Redis commands (INFO commandstats around every llmgate load run)\n\n")
	perReq := func(n int64) float64 {
		if r.redisRequests == 0 {
			return 0
		}
		return float64(n) / float64(r.redisRequests)
	}
	topName, topN := r.redisCmds.top()
	p("- llmgate load runs: %d requests, %d Redis commands = **%.4f per request**; most frequent: %s (%.4f per request).\n",
		r.redisRequests, r.redisCmds.total(), perReq(r.redisCmds.total()), orNone(topName), perReq(topN))
	p("- Commands: %s.\n", r.redisCmds)
	if r.redis64Requests > 0 {
		p("- Chat, 64 connections alone: %d requests, %d commands (%s).\n", r.redis64Requests, r.redis64.total(), r.redis64)
	}
	p("- llmgate idle for %d s (background: health PING, last-used flush, resync): %d commands (%s).\n\n", r.redisIdleSecs, r.redisIdle.total(), r.redisIdle)

	// Targets.
	p("### Targets (issue 5)\n\n| target | measured | |\n|---|---|---|\n")
	var tputParts, p99Parts, p99_64Parts []string
	tputOK, p99OK := true, true
	for _, l := range r.load {
		bb, gg := l.res["bare"], l.res["llmgate"]
		name := strings.SplitN(l.body, " ", 2)[0]
		if l.conns == 64 {
			ratio := gg.load.rps() / bb.load.rps()
			tputOK = tputOK && ratio >= 0.9
			tputParts = append(tputParts, fmt.Sprintf("%s %.2f×", name, ratio))
			p99_64Parts = append(p99_64Parts, fmt.Sprintf("%s %s", name, signedUS(gg.load.P99-bb.load.P99)))
		}
		if l.conns == 1 {
			added := gg.load.P99 - bb.load.P99
			p99OK = p99OK && added <= 200
			part := fmt.Sprintf("%s %s", name, signedUS(added))
			if q, ok := sliceSpread(gg.slices, bb.slices); ok {
				part += fmt.Sprintf(" (per slice: median %s, middle half %s to %s)", signedUS(q[1]), signedUS(q[0]), signedUS(q[2]))
			}
			p99Parts = append(p99Parts, part)
		}
	}
	if len(tputParts) > 0 {
		p("| non-stream throughput at 64 conns ≥ 0.9× bare | %s | %s |\n", strings.Join(tputParts, ", "), mark(tputOK))
	}
	if len(p99Parts) > 0 {
		p("| added p99 ≤ 200 µs over bare (1 connection: service time, no queueing) | %s | %s |\n", strings.Join(p99Parts, ", "), mark(p99OK))
	}
	if len(p99_64Parts) > 0 {
		ok := true
		for _, l := range r.load {
			if l.conns == 64 {
				ok = ok && l.res["llmgate"].load.P99-l.res["bare"].load.P99 <= 200
			}
		}
		p("| added p99 ≤ 200 µs over bare at 64 conns (queueing: ≈ conns ÷ throughput) | %s | %s |\n", strings.Join(p99_64Parts, ", "), mark(ok))
	}
	if len(r.firstByte) > 0 {
		var parts []string
		ok := true
		for _, f := range r.firstByte {
			o := (percentile(f.d["llmgate"], 50) - percentile(f.d["direct"], 50)).Microseconds()
			ok = ok && o <= 1000
			parts = append(parts, fmt.Sprintf("%s %s", strings.SplitN(f.name, " ", 2)[0], signedUS(o)))
		}
		p("| SSE first-byte overhead ≤ 1 ms (p50, llmgate − direct) | %s | %s |\n", strings.Join(parts, ", "), mark(ok))
	}
	if len(r.streams) > 0 {
		p("| ≤ 40 KiB RSS per idle stream at %d streams | llmgate %.1f KiB (bare %.1f KiB) | %s |\n", r.opts.streams, gateKiB, bareKiB, mark(gateKiB <= 40))
	}
	if r.redisRequests > 0 {
		perRequest := topN*2 >= r.redisRequests
		p("| 0 Redis commands per request (seen token) | no command runs per request (most frequent: %.4f per request); %.4f per request in all, from batched usage writes | %s |\n",
			perReq(topN), perReq(r.redisCmds.total()), mark(!perRequest))
	}
	if len(r.problems) > 0 {
		p("\n**Problems during the run** (results of these runs are not trustworthy):\n\n")
		for _, s := range r.problems {
			p("- %s\n", s)
		}
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sliceSpread returns the quartiles of the added p99 slice by slice (a's
// k-th slice against b's, taken one after the other), which shows how
// far the merged figure moves with the noise of the machine: a burst
// that lands on one target's slices moves the merged p99, but only a few
// of the slices. It needs four slices or more of each.
func sliceSpread(a, b []loadResult) (q [3]int64, ok bool) {
	n := min(len(a), len(b))
	if n < 4 {
		return q, false
	}
	d := make([]int64, n)
	for k := range n {
		d[k] = a[k].P99 - b[k].P99
	}
	slices.Sort(d)
	at := func(f float64) int64 { // linear between the closest ranks
		x := f * float64(n-1)
		i := int(x)
		if i+1 >= n {
			return d[n-1]
		}
		return d[i] + int64(math.Round((x-float64(i))*float64(d[i+1]-d[i])))
	}
	return [3]int64{at(0.25), at(0.5), at(0.75)}, true
}
