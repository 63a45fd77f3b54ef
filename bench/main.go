// Command bench is llmgate's whole-process benchmark harness (issue 5).
//
// In one run it builds `llmgate` from this tree, starts a Redis, the demo
// upstream, a bare httputil.ReverseProxy and `llmgate serve` with a valid
// token, drives them with one load generator (wrk, else a built-in Go
// generator) and prints a table of llmgate against the bare proxy with the
// issue's targets. See README.md.
//
//	go run ./bench                 # default run, about 3 minutes
//	go run ./bench -duration 2s -streams 1000   # quick look
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/tokens"
)

// options are the command-line flags.
type options struct {
	duration, warmup time.Duration
	slice            time.Duration
	conns            []int
	streams          int
	samples          int
	pin              bool
	loadgen          string
	keep             bool
	out              string
	skipStreams      bool
	direct           bool
	whatIf           bool
	bodyKiB          int
	quiet            time.Duration
	nginx            string
}

// target is one server under load.
type target struct {
	name string
	url  string
	proc *proc
}

const (
	secret      = "bench-secret-bench-secret-bench-secret-0123456789"
	upstreamKey = "sk-bench-upstream"
	// proxyCPU runs the proxy under test; everything else (load generator,
	// upstream, Redis, this harness) shares harnessCPU.
	proxyCPU, harnessCPU = "0", "1"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-loadgen" {
		if err := runLoadgen(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	var conns string
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "length of each measured load run")
	flag.DurationVar(&o.slice, "slice", time.Second, "take each one-connection load run in slices of this length, the targets in turn (0: one piece)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measured run")
	flag.StringVar(&conns, "conns", "1,16,64,256", "connection counts of the non-stream load runs")
	flag.IntVar(&o.streams, "streams", 5000, "concurrent idle SSE streams for the memory test")
	flag.IntVar(&o.samples, "samples", 300, "streamed calls per target in the first-byte test")
	flag.BoolVar(&o.pin, "pin", true, "pin the proxy under test to CPU 0 and everything else to CPU 1 (needs taskset and 2 CPUs)")
	flag.StringVar(&o.loadgen, "loadgen", "auto", "load generator: auto (wrk if installed), wrk, or go")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, logs of every process)")
	flag.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	flag.BoolVar(&o.skipStreams, "skip-streams", false, "skip the idle-stream memory test")
	streamsOnly := flag.Bool("streams-only", false, "run only the idle-stream memory test")
	flag.BoolVar(&o.direct, "direct", false, "also load the upstream directly (no proxy) in the non-stream runs")
	flag.BoolVar(&o.whatIf, "whatif", true, "also measure idle-stream memory of a bare proxy with a pooled 4 KiB copy buffer")
	flag.DurationVar(&o.quiet, "quiet-wait", 20*time.Second, "before each measured run, wait up to this long for other processes on the machine to use < 0.1 CPU")
	flag.IntVar(&o.bodyKiB, "large-body-kib", 100, "size of the Claude-Code-like /v1/messages body, KiB")
	flag.StringVar(&o.nginx, "nginx", "auto", "also measure nginx as a plain reverse proxy: auto (when installed), on, off")
	flag.Parse()
	if *streamsOnly {
		conns, o.samples, o.skipStreams = "", 0, false
	}
	for c := range strings.SplitSeq(conns, ",") {
		if c == "" && *streamsOnly {
			break
		}
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fatalf("-conns: %q is not a connection count", c)
		}
		o.conns = append(o.conns, n)
	}
	if o.pin && os.Getenv("BENCH_PINNED") == "" {
		if _, err := exec.LookPath("taskset"); err != nil || onlineCPUs() < 2 {
			fmt.Fprintln(os.Stderr, "bench: pinning off (needs taskset and 2 CPUs)")
			o.pin = false
		}
	}
	// The harness itself runs on harnessCPU, away from the proxy: re-exec
	// under taskset once.
	if o.pin && os.Getenv("BENCH_PINNED") == "" {
		self, err := os.Executable()
		if err == nil {
			if ts, err := exec.LookPath("taskset"); err == nil {
				env := append(os.Environ(), "BENCH_PINNED=1")
				err = syscall.Exec(ts, append([]string{"taskset", "-c", harnessCPU, self}, os.Args[1:]...), env)
				fatalf("re-exec under taskset: %v", err)
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o)
	stopAll()
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	stopAll()
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	nofile, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if need := uint64(3*o.streams + 1000); nofile < need && !o.skipStreams {
		return fmt.Errorf("RLIMIT_NOFILE is %d; %d idle streams need about %d (raise the hard limit or lower -streams)", nofile, o.streams, need)
	}
	dir, err := os.MkdirTemp("", "llmgate-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("work directory (kept): %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	cpus := func(c string) string {
		if o.pin {
			return c
		}
		return ""
	}

	// Build.
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	logf("building llmgate, the demo upstream and the bare proxy")
	for _, b := range [][2]string{{"llmgate", "./cmd/llmgate"}, {"upstream", "./bench/upstream"}, {"bareproxy", "./bench/bareproxy"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, b[0]), b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	bin := func(name string) string { return filepath.Join(dir, name) }

	// Load generator.
	ld := &loader{dir: dir, cpus: cpus(harnessCPU)}
	switch o.loadgen {
	case "auto", "wrk":
		if p, err := exec.LookPath("wrk"); err == nil {
			ld.wrk = p
		} else if o.loadgen == "wrk" {
			return errors.New("-loadgen wrk: wrk not found (apt-get install wrk)")
		}
	case "go":
	default:
		return fmt.Errorf("-loadgen %q: want auto, wrk or go", o.loadgen)
	}
	if ld.wrk == "" {
		if ld.self, err = os.Executable(); err != nil {
			return err
		}
	}

	// Bodies.
	chatFile, largeFile := filepath.Join(dir, "chat.json"), filepath.Join(dir, "messages.json")
	large := demoupstream.ClaudeCodeBody(o.bodyKiB << 10)
	if err := os.WriteFile(chatFile, []byte(chatBody), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(largeFile, large, 0o600); err != nil {
		return err
	}

	// Redis, the identity provider and a token.
	rds, err := startRedis(ctx, dir, cpus(harnessCPU))
	if err != nil {
		return err
	}
	defer rds.close()
	gwPort, err := freePort()
	if err != nil {
		return err
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{Clients: []devidp.Client{{
		ID: "llmgate", Secret: "bench-client-secret", RedirectURIs: []string{public + "/oauth2/callback"},
	}}})
	if err != nil {
		return fmt.Errorf("start dev identity provider: %w", err)
	}
	defer idp.Close()
	token, err := mint(ctx, rds, public)
	if err != nil {
		return err
	}

	// Upstream, bare proxy, llmgate.
	up, err := start(ctx, dir, "upstream", cpus(harnessCPU), nil, true, bin("upstream"))
	if err != nil {
		return err
	}
	startBare := func(name, upURL string, extra ...string) (*proc, error) {
		return start(ctx, dir, name, cpus(proxyCPU), nil, true, append([]string{bin("bareproxy"), "-upstream", upURL, "-api-key", upstreamKey}, extra...)...)
	}
	startGate := func(name, upURL string, port int) (*proc, error) {
		pub := fmt.Sprintf("http://127.0.0.1:%d", port)
		env := []string{
			"LLMGATE_LISTEN=127.0.0.1:" + strconv.Itoa(port),
			"LLMGATE_PUBLIC_URL=" + public, // the tokens' issuer
			"LLMGATE_SECRET=" + secret,
			"LLMGATE_REDIS_URL=" + rds.url,
			"LLMGATE_UPSTREAM_URL=" + upURL,
			"LLMGATE_UPSTREAM_API_KEY=" + upstreamKey,
			"LLMGATE_OIDC_ISSUER=" + idp.Issuer(),
			"LLMGATE_OIDC_CLIENT_ID=llmgate",
			"LLMGATE_OIDC_CLIENT_SECRET=bench-client-secret",
			"LLMGATE_ADMIN_EMAILS=alice@example.com",
		}
		p, err := start(ctx, dir, name, cpus(proxyCPU), env, false, bin("llmgate"), "serve")
		if err != nil {
			return nil, err
		}
		p.url = pub
		if err := waitHTTP(ctx, pub+"/readyz", 60*time.Second, p); err != nil {
			return nil, fmt.Errorf("llmgate did not get ready: %w (log: %s)", err, filepath.Join(dir, name+".log"))
		}
		return p, nil
	}
	bare, err := startBare("bareproxy", up.url)
	if err != nil {
		return err
	}
	gate, err := startGate("llmgate", up.url, gwPort)
	if err != nil {
		return err
	}
	direct := target{"direct", up.url, up}
	bareT := target{"bare", bare.url, bare}
	gateT := target{"llmgate", gate.url, gate}

	rep := &report{opts: o, loadgen: ld.name(), redis: rds.kind(), nofile: nofile, pinned: o.pin}

	// nginx, when installed: the proxy most teams would otherwise put there.
	var nginxBin string
	switch o.nginx {
	case "auto", "on":
		nginxBin = nginxPath()
		if nginxBin == "" && o.nginx == "on" {
			return errors.New("-nginx on: nginx not found (apt-get install nginx-light)")
		}
	case "off":
	default:
		return fmt.Errorf("-nginx %q: want auto, on or off", o.nginx)
	}
	var nginxT *target
	if nginxBin != "" {
		rep.nginx = nginxVersion(nginxBin)
		ng, err := startNginx(ctx, nginxBin, dir, "nginx", cpus(proxyCPU), up.url)
		if err != nil {
			return err
		}
		nginxT = &target{"nginx", ng.url, ng}
	}
	withNginx := func(ts []target) []target {
		if nginxT != nil {
			return append(ts, *nginxT)
		}
		return ts
	}

	// 1. Streaming first byte.
	if o.samples > 0 {
		logf("SSE first byte: %d streamed calls per target, direct / bare / llmgate in turn", o.samples)
		waitQuiet(ctx, 0.1, o.quiet)
	}
	for _, sb := range streamBodies {
		if o.samples == 0 {
			break
		}
		fb, err := firstByte(ctx, withNginx([]target{direct, bareT, gateT}), sb.path, sb.body, token, o.samples)
		if err != nil {
			return fmt.Errorf("first byte: %w", err)
		}
		rep.firstByte = append(rep.firstByte, fbRow{name: sb.name, d: fb})
	}

	// 2. Non-stream load. Redis commands are counted around every llmgate run.
	idle0, err := rds.stats(ctx)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	idle1, _ := rds.stats(ctx)
	rep.redisIdle = idle1.sub(idle0)
	rep.redisIdleSecs = 2
	rep.redisCmds = cmdStats{}
	bodies := []struct{ name, path, file string }{
		{"chat (small JSON)", "/v1/chat/completions", chatFile},
		{fmt.Sprintf("messages (%d KB Claude Code)", len(large)/1000), "/v1/messages", largeFile},
	}
	for bi, b := range bodies {
		for ci, c := range o.conns {
			ts := []target{bareT, gateT}
			if (bi+ci)%2 == 1 {
				ts = []target{gateT, bareT}
			}
			if o.direct {
				ts = append([]target{direct}, ts...)
			}
			ts = withNginx(ts)
			row := loadRow{body: b.name, conns: c, res: map[string]runResult{}}
			for _, t := range ts {
				if o.warmup > 0 {
					spec := loadSpec{url: t.url + b.path, bodyFile: b.file, token: token, conns: c, duration: o.warmup}
					if _, err := ld.run(ctx, spec); err != nil {
						return err
					}
				}
			}
			// At one connection, where p99 is the service time, the
			// measured load is taken in slices, the targets in turn
			// (A B B A A B …): a burst of noise on the machine then lands
			// on every target alike instead of on whichever ran then. At
			// more connections every slice would open its connections
			// anew and measure that too (−20 % req/s at 64), so those
			// runs stay in one piece.
			n, slice := 1, o.duration
			if c == 1 {
				n, slice = sliceRun(o.duration, o.slice)
			}
			runs := map[string][]loadResult{}
			acc := map[string]*runResult{}
			waitQuiet(ctx, 0.1, o.quiet)
			for k := range n {
				order := ts
				if k%2 == 1 {
					order = reversed(ts)
				}
				for _, t := range order {
					spec := loadSpec{url: t.url + b.path, bodyFile: b.file, token: token, conns: c, duration: slice}
					before, _ := rds.stats(ctx)
					cpu0, upCPU0 := cpuTime(t.proc.pid()), cpuTime(up.pid())
					busy0, own0 := machineBusy(), ownCPU()
					res, err := ld.run(ctx, spec)
					if err != nil {
						return err
					}
					a := acc[t.name]
					if a == nil {
						a = &runResult{}
						acc[t.name] = a
					}
					a.cpu += cpuTime(t.proc.pid()) - cpu0
					a.upCPU += cpuTime(up.pid()) - upCPU0
					if res.DurationUS > 0 {
						// CPU-seconds for now; per second of run below.
						a.foreign += max(float64((machineBusy()-busy0)-(ownCPU()-own0)-res.GenCPU), 0) / float64(time.Second)
					}
					runs[t.name] = append(runs[t.name], res)
					if t.name == "llmgate" {
						after, _ := rds.stats(ctx)
						d := after.sub(before)
						rep.redisCmds.add(d)
						rep.redisRequests += res.Requests
						if c == 64 && bi == 0 {
							if rep.redis64 == nil {
								rep.redis64 = cmdStats{}
							}
							rep.redis64.add(d)
							rep.redis64Requests += res.Requests
						}
					}
				}
			}
			for _, t := range ts {
				rr := acc[t.name]
				rr.load = mergeRuns(runs[t.name])
				if n > 1 {
					rr.slices = runs[t.name]
				}
				res := rr.load
				if res.DurationUS > 0 {
					rr.foreign /= float64(time.Duration(res.DurationUS)*time.Microsecond) / float64(time.Second)
				}
				if res.errors() > 0 || res.Requests == 0 {
					rep.problems = append(rep.problems, fmt.Sprintf("%s %s c=%d: %d requests, errors: connect %d read %d write %d non-2xx %d timeout %d",
						t.name, b.name, c, res.Requests, res.Connect, res.Read, res.Write, res.Status, res.Timeout))
				}
				if rr.foreign > 0.15 {
					rep.problems = append(rep.problems, fmt.Sprintf("%s %s c=%d: other processes on the machine used %.2f CPU during the run",
						t.name, b.name, c, rr.foreign))
				}
				row.res[t.name] = *rr
				logf("%-8s %-28s c=%-4d %9.0f req/s  p50 %6dµs  p99 %6dµs  CPU µs/req: proxy %5.1f upstream %5.1f loadgen %5.1f; other processes %.2f CPU",
					t.name, b.name, c, res.rps(), res.P50, res.P99, rr.cpuPerReq(), perReq(rr.upCPU, res.Requests), perReq(res.GenCPU, res.Requests), rr.foreign)
			}
			rep.load = append(rep.load, row)
		}
	}
	bare.stop()
	gate.stop()
	if nginxT != nil {
		nginxT.proc.stop()
	}

	// 3. Memory per idle stream, each proxy fresh, in front of an upstream
	// that sends a stream's opening events and then nothing for 10 minutes.
	if !o.skipStreams {
		slow, err := start(ctx, dir, "upstream-slow", cpus(harnessCPU), nil, true, bin("upstream"), "-chunk-delay", "10m")
		if err != nil {
			return err
		}
		type variant struct {
			name  string
			start func() (*proc, error)
		}
		vs := []variant{
			{"bare", func() (*proc, error) { return startBare("bareproxy-streams", slow.url) }},
			{"llmgate", func() (*proc, error) {
				port, err := freePort()
				if err != nil {
					return nil, err
				}
				return startGate("llmgate-streams", slow.url, port)
			}},
		}
		if nginxBin != "" {
			vs = append(vs, variant{"nginx", func() (*proc, error) {
				return startNginx(ctx, nginxBin, dir, "nginx-streams", cpus(proxyCPU), slow.url)
			}})
		}
		if o.whatIf {
			vs = append(vs, variant{"bare, pooled 4 KiB copy buffer", func() (*proc, error) {
				return startBare("bareproxy-streams-4k", slow.url, "-buffer", "4096")
			}})
		}
		for _, v := range vs {
			waitQuiet(ctx, 0.1, o.quiet)
			p, err := v.start()
			if err != nil {
				return err
			}
			row, err := measureStreams(ctx, v.name, p, token, o.streams, chatFile)
			p.stop()
			if err != nil {
				return err
			}
			rep.streams = append(rep.streams, row)
			logf("%-8s %d idle streams: RSS %d → %d KiB, %.1f KiB per stream", v.name, o.streams, row.before, row.after, row.perStream())
		}
		slow.stop()
	}
	rep.elapsed = time.Since(began)

	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sliceRun splits a measured run of d into n slices of length slice (at
// least a second, wrk's resolution); slice 0 means one piece.
func sliceRun(d, slice time.Duration) (n int, length time.Duration) {
	if slice <= 0 || slice >= d {
		return 1, d
	}
	slice = max(slice.Round(time.Second), time.Second)
	n = max(int((d+slice/2)/slice), 1)
	return n, slice
}

// reversed returns ts in reverse order.
func reversed(ts []target) []target {
	r := make([]target, len(ts))
	for i, t := range ts {
		r[len(ts)-1-i] = t
	}
	return r
}

// measureStreams warms p with non-stream calls, then holds n idle
// streams open through it and reads its RSS before and after.
func measureStreams(ctx context.Context, name string, p *proc, token string, n int, chatFile string) (streamRow, error) {
	body, err := os.ReadFile(chatFile)
	if err != nil {
		return streamRow{}, err
	}
	if err := warm(ctx, p.url+"/v1/chat/completions", body, token, 200); err != nil {
		return streamRow{}, fmt.Errorf("%s: warm up: %w", name, err)
	}
	time.Sleep(time.Second)
	before, err := rssKiB(p.pid())
	if err != nil {
		return streamRow{}, err
	}
	t0 := time.Now()
	conns, err := idleStreams(ctx, p.url, token, n)
	if err != nil {
		return streamRow{}, fmt.Errorf("%s: %w", name, err)
	}
	opened := time.Since(t0)
	// Let the proxy settle (the garbage of the opening is part of the
	// footprint only until the next GC), then take the last of 3 samples.
	var after int64
	for range 3 {
		time.Sleep(time.Second)
		if after, err = rssKiB(p.pid()); err != nil {
			break
		}
	}
	closeAll(conns)
	return streamRow{name: name, n: n, before: before, after: after, open: opened}, err
}

// mint issues a token for alice against the same Redis llmgate uses.
func mint(ctx context.Context, rds *benchRedis, issuer string) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc, err := tokens.New(tctx, rds.client, tokens.Config{Issuer: issuer, Secret: []byte(secret)})
	if err != nil {
		return "", fmt.Errorf("token service: %w", err)
	}
	defer svc.Close()
	raw, _, err := svc.Issue(tctx, tokens.IssueRequest{
		Name: "bench", Email: "alice@example.com", Subject: "alice-sub", UserName: "Alice Example", TTL: 24 * time.Hour,
	})
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	return raw, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the harness from inside the llmgate module (go run ./bench)")
	}
	return filepath.Dir(gomod), nil
}
