// Package redistest gives tests a Redis to run against: miniredis
// in-process always, and the real server named by LLMGATE_TEST_REDIS_URL
// when the environment provides one. With LLMGATE_TEST_REQUIRE_REDIS=1 (CI)
// a missing real server fails the test instead of skipping it.
//
// Every Server hands out a key prefix unique to the test, so packages and
// tests sharing one real redis-server never see each other's keys.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is one Redis for one test.
type Server struct {
	// Client talks to the server; it is closed when the test ends.
	Client redis.UniversalClient
	// Prefix is unique to this test: give it to the store under test.
	Prefix string
	// Mini is the in-process server, nil on a real one.
	Mini *miniredis.Miniredis
	// Addr is host:port of the server.
	Addr string
}

// Real reports whether s is a real redis-server.
func (s *Server) Real() bool { return s.Mini == nil }

// FastForward lets d pass for key expiry: instantly on miniredis, by
// sleeping on a real server (so keep d short there).
func (s *Server) FastForward(d time.Duration) {
	if s.Mini != nil {
		s.Mini.FastForward(d)
		return
	}
	time.Sleep(d)
}

// Mini starts a miniredis for tb.
func Mini(tb testing.TB) *Server {
	tb.Helper()
	m := miniredis.RunT(tb)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	tb.Cleanup(func() { c.Close() })
	return &Server{Client: c, Prefix: prefix(), Mini: m, Addr: m.Addr()}
}

// RealURL returns LLMGATE_TEST_REDIS_URL, skipping tb when it is unset
// (failing it under LLMGATE_TEST_REQUIRE_REDIS=1).
func RealURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("LLMGATE_TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("LLMGATE_TEST_REQUIRE_REDIS") == "1" {
			tb.Fatal("LLMGATE_TEST_REQUIRE_REDIS=1 but LLMGATE_TEST_REDIS_URL is not set: start redis-server and point LLMGATE_TEST_REDIS_URL at it")
		}
		tb.Skip("no real Redis: set LLMGATE_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run this test against redis-server")
	}
	return u
}

// Real connects to the real server, skipping or failing as RealURL does.
// Keys under the test's prefix are deleted when the test ends.
func Real(tb testing.TB) *Server {
	tb.Helper()
	u := RealURL(tb)
	opt, err := redis.ParseURL(u)
	if err != nil {
		tb.Fatalf("LLMGATE_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		tb.Fatalf("LLMGATE_TEST_REDIS_URL=%s does not answer PING: %v", opt.Addr, err)
	}
	s := &Server{Client: c, Prefix: prefix(), Addr: opt.Addr}
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, s.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return s
}

// Each runs fn as subtest "miniredis" and as subtest "redis" on the real
// server (skipped or failed as Real says).
func Each(t *testing.T, fn func(t *testing.T, s *Server)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, Mini(t)) })
	t.Run("redis", func(t *testing.T) { fn(t, Real(t)) })
}

func prefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "test:" + hex.EncodeToString(b) + ":"
}

// Process starts a private redis-server for tb, one it may stop and start
// again (outage tests). It needs the redis-server binary: without it the
// test is skipped, or failed under LLMGATE_TEST_REQUIRE_REDIS=1.
func Process(tb testing.TB) *Proc {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("LLMGATE_TEST_REQUIRE_REDIS") == "1" {
			tb.Fatal("LLMGATE_TEST_REQUIRE_REDIS=1 but redis-server is not on PATH: install it (apt-get install redis-server)")
		}
		tb.Skip("redis-server is not installed: install it to run this outage test against a real server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &Proc{tb: tb, bin: bin, dir: tb.TempDir(), Addr: addr}
	p.Start()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	p.Server = &Server{Client: c, Prefix: prefix(), Addr: addr}
	tb.Cleanup(func() {
		c.Close()
		p.Stop()
	})
	return p
}

// Proc is a redis-server process of one test.
type Proc struct {
	*Server
	tb   testing.TB
	bin  string
	dir  string
	Addr string
	cmd  *exec.Cmd
}

// Start starts the server (again), with append-only persistence in the
// test's directory so data survives a Stop, and waits until it answers.
func (p *Proc) Start() {
	p.tb.Helper()
	_, port, _ := net.SplitHostPort(p.Addr)
	p.cmd = exec.Command(p.bin, "--port", port, "--bind", "127.0.0.1", "--dir", p.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", p.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.tb.Fatalf("redis-server on %s did not start listening within 5 s", p.Addr)
}

// Stop kills the server and waits for it to exit.
func (p *Proc) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

// Dump renders every key under the test's prefix with its type and value,
// sorted by key, so a test can look for strings that must never be
// stored (cookie values, tokens, states).
func (s *Server) Dump(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	c := s.Client
	var keys []string
	iter := c.Scan(ctx, 0, s.Prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		tb.Fatalf("SCAN: %v", err)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			tb.Fatalf("TYPE %s: %v", k, err)
		}
		var val any
		switch typ {
		case "string":
			val, err = c.Get(ctx, k).Result()
		case "zset":
			val, err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "set":
			val, err = c.SMembers(ctx, k).Result()
		case "hash":
			val, err = c.HGetAll(ctx, k).Result()
		case "list":
			val, err = c.LRange(ctx, k, 0, -1).Result()
		case "stream":
			val, err = c.XRange(ctx, k, "-", "+").Result()
		default:
			tb.Fatalf("key %s has unexpected type %s", k, typ)
		}
		if err != nil {
			tb.Fatalf("read %s: %v", k, err)
		}
		fmt.Fprintf(&b, "%s %s = %v\n", typ, k, val)
	}
	return b.String()
}
