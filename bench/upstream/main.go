// Command upstream serves the demo upstream (internal/demoupstream) in a
// process of its own, so that the bench harness can pin it to a CPU and
// account for its CPU separately from the proxies it measures.
//
// It prints "LISTENING <base URL>" on stdout once it accepts connections
// and serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/llmgate/llmgate/internal/demoupstream"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	delay := flag.Duration("chunk-delay", 0, "pause before each content delta of a streamed reply")
	idle := flag.Duration("idle-timeout", 5*time.Second, "keep-alive timeout of idle connections (uvicorn's default is 5s)")
	flag.Parse()

	_, url, closeFn, err := demoupstream.Start(*listen, demoupstream.Options{NoRecord: true, ChunkDelay: *delay, IdleTimeout: *idle})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("LISTENING %s\n", url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = closeFn()
}
