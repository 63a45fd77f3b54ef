// Package h1transport is the gateway's HTTP/1.1 client for plain-HTTP
// upstreams (LiteLLM and friends on the pod network).
//
// It exists for memory and speed on the proxy's hot path. net/http's
// Transport keeps two goroutines (readLoop, writeLoop) and two buffers
// per connection and hands every request and response between them; an
// LLM stream holds its connection for minutes, so thousands of open
// streams cost thousands of goroutine stacks. This transport does every
// step on the caller's goroutine: it takes a pooled connection (or
// dials), writes the request in one write, reads the response headers
// with the standard library's http.ReadResponse, and returns a body that
// reads straight from the connection. An idle stream therefore costs a
// connection and its read buffer, no goroutine.
//
// Request serialization (http.Request.Write) and response parsing
// (http.ReadResponse) are net/http's own; this package only decides
// which connection carries a request, for how long, and when it may be
// reused. What it does not do — TLS, HTTP/2, upgrades (WebSocket),
// proxies — goes to a fallback http.RoundTripper.
package h1transport
