package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// benchRedis is the Redis llmgate runs against: a redis-server child
// when one is installed, else miniredis inside the harness.
type benchRedis struct {
	url    string
	client *redis.Client
	proc   *proc                // redis-server, or nil
	mini   *miniredis.Miniredis // or this
}

func startRedis(ctx context.Context, dir, cpus string) (*benchRedis, error) {
	if path, err := exec.LookPath("redis-server"); err == nil {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := start(ctx, dir, "redis", cpus, nil, false, path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--maxclients", "10000")
		if err != nil {
			return nil, err
		}
		r := &benchRedis{url: fmt.Sprintf("redis://127.0.0.1:%d/0", port), proc: p}
		r.client = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		for range 100 {
			if r.client.Ping(ctx).Err() == nil {
				return r, nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil, fmt.Errorf("redis-server on port %d did not answer PING", port)
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, err
	}
	return &benchRedis{url: "redis://" + m.Addr() + "/0", mini: m, client: redis.NewClient(&redis.Options{Addr: m.Addr()})}, nil
}

func (r *benchRedis) kind() string {
	if r.mini != nil {
		return "miniredis (in the harness process; redis-server not found)"
	}
	out, _ := exec.Command("redis-server", "--version").Output()
	return strings.TrimSpace(string(out))
}

// cmdStats is the number of calls per command name.
type cmdStats map[string]int64

// stats reads the calls per command: INFO commandstats, or miniredis's
// total (as "all") when there is no real server. The harness's own INFO
// calls are left out.
func (r *benchRedis) stats(ctx context.Context) (cmdStats, error) {
	if r.mini != nil {
		return cmdStats{"all": int64(r.mini.CommandCount())}, nil
	}
	info, err := r.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := cmdStats{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if name == "info" {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] = n
			}
		}
	}
	return out, nil
}

// sub returns s − before.
func (s cmdStats) sub(before cmdStats) cmdStats {
	out := cmdStats{}
	for k, v := range s {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (s cmdStats) add(o cmdStats) {
	for k, v := range o {
		s[k] += v
	}
}

func (s cmdStats) total() int64 {
	var n int64
	for _, v := range s {
		n += v
	}
	return n
}

// top returns the command with the most calls.
func (s cmdStats) top() (string, int64) {
	var name string
	var n int64
	for k, v := range s {
		if v > n || v == n && k < name {
			name, n = k, v
		}
	}
	return name, n
}

// String lists the commands, most called first.
func (s cmdStats) String() string {
	names := make([]string, 0, len(s))
	for k := range s {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		if s[a] != s[b] {
			if s[a] > s[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s=%d", k, s[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (r *benchRedis) close() {
	r.client.Close()
	if r.mini != nil {
		r.mini.Close()
	}
	if r.proc != nil {
		r.proc.stop()
	}
}
