// Command bareproxy is the bench harness's baseline: a bare
// httputil.ReverseProxy in a process of its own, with the Transport tuned
// as llmgate tunes its own (a clone of http.DefaultTransport with a pool
// sized for high concurrency, idle connections closed before the
// upstream's keep-alive timeout, no transparent compression, no
// HTTP_PROXY). It rewrites with SetURL and SetXForwarded and swaps the
// credential for the upstream's, and does nothing else: no
// verification, no body buffering, no metering, no logging.
//
// It prints "LISTENING <base URL>" on stdout once it accepts connections
// and serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "upstream base URL (required)")
	apiKey := flag.String("api-key", "", "credential sent upstream as Authorization: Bearer")
	buffer := flag.Int("buffer", 0, "copy buffer size in bytes from a sync.Pool; 0 = ReverseProxy's default (a new 32 KiB buffer per response)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until SIGINT or SIGTERM")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		log.Fatalf("-upstream: %q is not a URL", *upstream)
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2048
	tr.MaxIdleConnsPerHost = 512
	tr.IdleConnTimeout = 4 * time.Second
	tr.ResponseHeaderTimeout = 10 * time.Minute
	tr.ForceAttemptHTTP2 = true
	tr.DisableCompression = true
	tr.Proxy = nil

	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("X-Api-Key")
			if *apiKey != "" {
				pr.Out.Header["Authorization"] = []string{"Bearer " + *apiKey}
			}
		},
		Transport: tr,
	}
	if *buffer > 0 {
		rp.BufferPool = newPool(*buffer)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 20}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("LISTENING http://%s\n", ln.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
}

// pool is an httputil.BufferPool of fixed-size buffers.
type pool struct{ p sync.Pool }

func newPool(size int) *pool {
	return &pool{p: sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

func (p *pool) Get() []byte  { return *(p.p.Get().(*[]byte)) }
func (p *pool) Put(b []byte) { p.p.Put(&b) }
