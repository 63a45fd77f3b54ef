package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// streamBodies are the streamed calls of the first-byte test.
var streamBodies = []struct{ name, path, body string }{
	{"anthropic /v1/messages", "/v1/messages", `{"model":"claude-sonnet-4-6","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"hello there"}]}`},
	{"openai /v1/chat/completions", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello there"}]}`},
}

// firstByte is the time to the first whole SSE event of a streamed call,
// per target, over samples sequential calls on a warm keep-alive
// connection; the targets take turns so that drift hits them alike.
func firstByte(ctx context.Context, targets []target, path, body, token string, samples int) (map[string][]time.Duration, error) {
	clients := make([]*http.Client, len(targets))
	for i := range targets {
		clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true, Proxy: nil}}
		defer clients[i].Transport.(*http.Transport).CloseIdleConnections()
	}
	one := func(c *http.Client, base string) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader([]byte(body)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Anthropic-Version", "2023-06-01")
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return 0, fmt.Errorf("POST %s%s: %d %s", base, path, resp.StatusCode, b)
		}
		br := bufio.NewReader(resp.Body)
		data := false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return 0, fmt.Errorf("POST %s%s: stream ended before its first event: %w", base, path, err)
			}
			if bytes.HasPrefix(line, []byte("data:")) {
				data = true
			}
			if data && len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
		d := time.Since(t0)
		io.Copy(io.Discard, br)
		return d, nil
	}
	out := map[string][]time.Duration{}
	for i := range samples + 20 {
		for j, t := range targets {
			d, err := one(clients[j], t.url)
			if err != nil {
				return nil, err
			}
			if i >= 20 { // the first calls warm connections and caches
				out[t.name] = append(out[t.name], d)
			}
		}
	}
	return out, nil
}

// percentile returns the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(p/100*float64(len(ds))))]
}

// idleStreams opens n streamed /v1/messages calls through base whose
// upstream then stays silent (a long ChunkDelay), each held open after
// its first event, and returns them; close them with closeAll.
func idleStreams(ctx context.Context, base, token string, n int) ([]net.Conn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	body := streamBodies[0].body
	req := []byte("POST /v1/messages HTTP/1.1\r\nHost: " + u.Host + "\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nAnthropic-Version: 2023-06-01\r\nUser-Agent: llmgate-bench\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	conns := make([]net.Conn, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	d := net.Dialer{Timeout: 10 * time.Second}
	for range min(n, 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := openStream(ctx, &d, u.Host, req, buf)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("stream %d of %d: %w", i+1, n, err) })
					next.Store(int64(n))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

// openStream dials, sends req and reads until the first event of an
// answer with status 200 has arrived.
func openStream(ctx context.Context, d *net.Dialer, host string, req, buf []byte) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	var got []byte
	for {
		k, err := c.Read(buf)
		got = append(got, buf[:k]...)
		if h := bytes.Index(got, []byte("\r\n\r\n")); h >= 0 {
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
				c.Close()
				line, _, _ := bytes.Cut(got, []byte("\r\n"))
				return nil, fmt.Errorf("answer %q", line)
			}
			if ev := bytes.Index(got[h:], []byte("message_start")); ev >= 0 && bytes.Contains(got[h+ev:], []byte("\n\n")) {
				break
			}
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("before the first event: %w", err)
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
