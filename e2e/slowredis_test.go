package e2e

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latencyProxy is a loopback TCP proxy that holds every chunk going to the
// backend for a settable delay: one Redis round trip then takes at least
// that long.
type latencyProxy struct {
	ln      net.Listener
	backend string
	delay   atomic.Int64 // nanoseconds
	mu      sync.Mutex
	conns   []net.Conn
}

func startLatencyProxy(tb testing.TB, backend string) *latencyProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &latencyProxy{ln: ln, backend: backend}
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *latencyProxy) addr() string { return p.ln.Addr().String() }

func (p *latencyProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *latencyProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *latencyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		go func() {
			// Client → backend: each chunk waits for the delay first, in
			// order, so pipelines and pub/sub keep their order.
			defer b.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					time.Sleep(time.Duration(p.delay.Load()))
					if _, werr := b.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer c.Close()
			io.Copy(c, b)
		}()
	}
}

// TestSlowRedis puts 300 ms of latency between the replicas and Redis: calls
// with tokens already seen keep their latency (they are verified from
// memory, their usage is written in the background), while Redis itself is
// visibly slow.
func TestSlowRedis(t *testing.T) {
	var proxy *latencyProxy
	st := newStack(t, options{replicas: 1, redis: func(addr string) string {
		proxy = startLatencyProxy(t, addr)
		return proxy.addr()
	}})
	bob := st.signIn("bob@example.com")
	tok := st.mint(bob, "slow-redis")
	st.mustWork(tok.raw)

	measure := func() delays {
		var d delays
		for range 100 {
			t0 := time.Now()
			status, _, body := st.call(st.replicas[0], tok.raw)
			if status != http.StatusOK {
				t.Fatalf("call: %d %s, want 200", status, firstLine(body))
			}
			d = append(d, time.Since(t0))
		}
		return d
	}
	fast := measure()
	const slow = 300 * time.Millisecond
	proxy.setDelay(slow)
	// Redis is slow now: a session call, which reads Redis, shows it.
	t0 := time.Now()
	if status, body := st.as(bob, st.replicas[0], http.MethodGet, "/api/me", ""); status != http.StatusOK {
		t.Fatalf("GET /api/me with Redis slow: %d %s", status, body)
	}
	sessionTook := time.Since(t0)
	slowed := measure()
	t.Logf("API call latency, Redis fast: %v", fast)
	t.Logf("API call latency, Redis +%v per round trip: %v (a session call, which reads Redis, took %v)", slow, slowed, sessionTook)
	if sessionTook < slow {
		t.Errorf("GET /api/me took %v with %v Redis latency: the latency proxy is not in the way", sessionTook, slow)
	}
	if slowed.pct(50) > fast.pct(50)+slow/3 || slowed.pct(99) > slow {
		t.Errorf("API call latency followed Redis latency: p50 %v → %v, p99 %v → %v with Redis %v slower",
			fast.pct(50), slowed.pct(50), fast.pct(99), slowed.pct(99), slow)
	}
}
