package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadResult is one closed-loop load run: conns connections each sending
// the next request as soon as the previous answer ended.
type loadResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // answers that were not 2xx/3xx
	Timeout    int64   `json:"timeout"`
	P50        int64   `json:"p50"` // latency percentiles, µs
	P90        int64   `json:"p90"`
	P99        int64   `json:"p99"`
	P999       int64   `json:"p999"`
	Max        int64   `json:"max"`
	Mean       float64 `json:"mean"`
	// Quant is the latency (µs) at each of quantileGrid's percentiles: the
	// shape of the distribution, so that runs taken in slices can be merged.
	Quant []int64 `json:"q"`

	// GenCPU is the CPU time the load generator used (not in its output).
	GenCPU time.Duration `json:"-"`
}

func (r loadResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

func (r loadResult) errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

// quantileGrid is where a run's latency distribution is sampled (percent):
// every 0.1 up to 99, then every 0.01 up to 99.99, then the maximum.
var quantileGrid = func() []float64 {
	var g []float64
	for i := 1; i <= 990; i++ {
		g = append(g, float64(i)/10)
	}
	for i := 9901; i <= 9999; i++ {
		g = append(g, float64(i)/100)
	}
	return append(g, 100)
}()

// quantiles samples the sorted latencies lat at quantileGrid, as wrk's
// percentile does.
func quantiles(lat []int64) []int64 {
	if len(lat) == 0 {
		return nil
	}
	q := make([]int64, len(quantileGrid))
	for i, p := range quantileGrid {
		q[i] = lat[min(len(lat)-1, int(p/100*float64(len(lat))))]
	}
	q[len(q)-1] = lat[len(lat)-1]
	return q
}

// luaGrid is quantileGrid as a Lua table constructor.
func luaGrid() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, q := range quantileGrid {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(q, 'f', -1, 64))
	}
	b.WriteByte('}')
	return b.String()
}

// mergeRuns combines slices of one target's load into one result: counts
// and durations add up; the percentiles come from the slices' sampled
// distributions, each weighted by its number of calls.
func mergeRuns(runs []loadResult) loadResult {
	if len(runs) == 1 {
		return runs[0]
	}
	var m loadResult
	type point struct {
		v int64
		w float64
	}
	var pts []point
	var sum float64
	for _, r := range runs {
		m.Requests += r.Requests
		m.DurationUS += r.DurationUS
		m.Bytes += r.Bytes
		m.Connect += r.Connect
		m.Read += r.Read
		m.Write += r.Write
		m.Status += r.Status
		m.Timeout += r.Timeout
		m.GenCPU += r.GenCPU
		m.Max = max(m.Max, r.Max)
		sum += r.Mean * float64(r.Requests)
		if len(r.Quant) != len(quantileGrid) {
			continue
		}
		prev := 0.0
		for i, q := range quantileGrid {
			pts = append(pts, point{r.Quant[i], (q - prev) / 100 * float64(r.Requests)})
			prev = q
		}
	}
	if m.Requests > 0 {
		m.Mean = sum / float64(m.Requests)
	}
	slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.v, b.v) })
	var total float64
	for _, p := range pts {
		total += p.w
	}
	at := func(pct float64) int64 {
		want, cum := pct/100*total, 0.0
		for _, p := range pts {
			if cum += p.w; cum >= want-1e-9 {
				return p.v
			}
		}
		return m.Max
	}
	if len(pts) > 0 {
		m.P50, m.P90, m.P99, m.P999 = at(50), at(90), at(99), at(99.9)
		m.Quant = make([]int64, len(quantileGrid))
		for i, q := range quantileGrid {
			m.Quant[i] = at(q)
		}
	}
	return m
}

// loadSpec is what a load run sends.
type loadSpec struct {
	url      string // full URL, path included
	bodyFile string
	token    string
	conns    int
	duration time.Duration
}

// loader runs load: wrk when installed, else this program's own
// generator in a child process (pinned like wrk would be).
type loader struct {
	wrk  string // path of wrk, or ""
	self string // this executable, for the Go generator
	dir  string
	cpus string
}

func (l *loader) name() string {
	if l.wrk != "" {
		out, _ := exec.Command(l.wrk, "--version").CombinedOutput()
		v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if v == "" {
			v = "wrk"
		}
		return strings.TrimSpace(v) + ", 1 thread"
	}
	return "built-in Go generator (wrk not found; install it for lower client overhead: apt-get install wrk)"
}

// wrkScript sends the body in bodyFile with the token, and prints the
// summary as one JSON line that the harness parses.
const wrkScript = `
local f = assert(io.open(%q, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. %q
wrk.headers["Anthropic-Version"] = "2023-06-01"
wrk.headers["User-Agent"] = "llmgate-bench"

local grid = %s

function done(summary, latency, requests)
  local e = summary.errors
  local q = {}
  for i, p in ipairs(grid) do
    q[i] = string.format("%%d", latency:percentile(p))
  end
  io.write(string.format('BENCH {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"p50":%%d,"p90":%%d,"p99":%%d,"p999":%%d,"max":%%d,"mean":%%.1f,"q":[%%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    table.concat(q, ",")))
end
`

func (l *loader) run(ctx context.Context, s loadSpec) (loadResult, error) {
	var argv []string
	if l.wrk != "" {
		script := filepath.Join(l.dir, "post.lua")
		if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, s.bodyFile, s.token, luaGrid()), 0o600); err != nil {
			return loadResult{}, err
		}
		argv = []string{l.wrk, "-t1", "-c" + strconv.Itoa(s.conns), "-d" + durationArg(s.duration), "--timeout", "10s", "-s", script, s.url}
	} else {
		argv = []string{l.self, "-loadgen", "-url", s.url, "-body", s.bodyFile, "-token", s.token,
			"-conns", strconv.Itoa(s.conns), "-duration", s.duration.String()}
	}
	argv = append(cpuPrefix(l.cpus), argv...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("%s: %w: %s%s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	for line := range strings.SplitSeq(out.String(), "\n") {
		if js, ok := strings.CutPrefix(line, "BENCH "); ok {
			var r loadResult
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return loadResult{}, fmt.Errorf("parse load result %q: %w", js, err)
			}
			r.GenCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			return r, nil
		}
	}
	return loadResult{}, fmt.Errorf("no result from %s: %s%s", argv[0], out.String(), errb.String())
}

// durationArg formats d for wrk, which takes whole seconds (at least 1).
func durationArg(d time.Duration) string {
	return strconv.Itoa(max(int(d.Round(time.Second)/time.Second), 1)) + "s"
}

// runLoadgen is the built-in generator (-loadgen): conns goroutines, each
// with its own keep-alive connection, for duration; it prints the result
// line wrk's script would.
func runLoadgen(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	url := fs.String("url", "", "")
	bodyFile := fs.String("body", "", "")
	token := fs.String("token", "", "")
	conns := fs.Int("conns", 1, "")
	duration := fs.Duration("duration", 5*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		return err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		mu     sync.Mutex
		lat    []int64
		res    loadResult
		wg     sync.WaitGroup
		stopAt = time.Now().Add(*duration)
	)
	start := time.Now()
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []int64
			var r loadResult
			for time.Now().Before(stopAt) {
				req, _ := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+*token)
				req.Header.Set("Anthropic-Version", "2023-06-01")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) {
						r.Timeout++
					} else {
						r.Read++
					}
					continue
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0).Microseconds())
				r.Requests++
				r.Bytes += n
				if resp.StatusCode >= 400 {
					r.Status++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.Requests += r.Requests
			res.Bytes += r.Bytes
			res.Status += r.Status
			res.Read += r.Read
			res.Timeout += r.Timeout
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.DurationUS = time.Since(start).Microseconds()
	slices.Sort(lat)
	pct := func(p float64) int64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p/100*float64(len(lat))))]
	}
	res.P50, res.P90, res.P99, res.P999 = pct(50), pct(90), pct(99), pct(99.9)
	res.Quant = quantiles(lat)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
		var sum int64
		for _, v := range lat {
			sum += v
		}
		res.Mean = float64(sum) / float64(len(lat))
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	b, _ := json.Marshal(res)
	_, err = fmt.Fprintf(w, "BENCH %s\n", b)
	return err
}
