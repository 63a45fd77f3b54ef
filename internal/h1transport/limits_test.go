package h1transport_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/h1transport"
)

// serveRaw accepts one connection on loopback and hands it to fn.
func serveRaw(t *testing.T, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fn(c, bufio.NewReader(c))
	}()
	return "http://" + ln.Addr().String()
}

// readHead reads a request's line and headers.
func readHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

// TestHeadersTooLarge: an upstream that sends headers without end fails
// the call once MaxResponseHeaderBytes came, instead of growing the
// gateway's memory.
func TestHeadersTooLarge(t *testing.T) {
	url := serveRaw(t, func(c net.Conn, br *bufio.Reader) {
		if readHead(br) != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for range 1 << 10 { // 1 MiB of headers
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	tr := h1transport.New(h1transport.Config{MaxResponseHeaderBytes: 64 << 10})
	defer tr.Close()
	req, _ := http.NewRequest("GET", url+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("1 MiB of headers with a 64 KiB limit: got an answer, want an error")
	}
	if !strings.Contains(err.Error(), "headers exceed MaxResponseHeaderBytes") {
		t.Errorf("error %q does not say the headers were too large", err)
	}
}

// TestEarlyAnswer: an upstream that refuses a request before taking its
// body (413 and close) gets its answer relayed, not a write error.
func TestEarlyAnswer(t *testing.T) {
	url := serveRaw(t, func(c net.Conn, br *bufio.Reader) {
		if readHead(br) != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
		c.(*net.TCPConn).CloseWrite()
		// Take a little of the body, then stop reading and close.
		io.CopyN(io.Discard, br, 64<<10)
		time.Sleep(50 * time.Millisecond)
	})
	tr := h1transport.New(h1transport.Config{})
	defer tr.Close()
	body := bytes.Repeat([]byte("x"), 2<<20) // written while the answer is awaited
	req, _ := http.NewRequest("POST", url+"/", bytes.NewReader(body))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("RoundTrip: %v", err)
		}
		t.Fatalf("RoundTrip: %v; want the upstream's 413", err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != "too large" {
		t.Errorf("answer %d %q, want 413 \"too large\"", resp.StatusCode, got)
	}
}
