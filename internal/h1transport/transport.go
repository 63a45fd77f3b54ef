package h1transport

import (
	"errors"
	"net/http"
	"time"
)

// Config tunes a Transport. Zero values take the defaults noted.
type Config struct {
	// MaxIdlePerHost caps the idle connections kept per host:port
	// (default 512); more are closed when released.
	MaxIdlePerHost int
	// IdleTimeout closes a pooled connection idle this long (default
	// 4 s); keep it below the upstream's own keep-alive timeout.
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds writing the request and reading the
	// response headers (default 10 min); it then fails with an error
	// whose Timeout() is true. It never cuts a body.
	ResponseHeaderTimeout time.Duration
	// DialTimeout bounds connecting (default 30 s).
	DialTimeout time.Duration
	// Fallback carries what this transport does not: https URLs,
	// upgrade requests (WebSocket), CONNECT. Nil refuses them.
	Fallback http.RoundTripper
}

// Transport is an http.RoundTripper for http:// upstreams. It is safe
// for concurrent use; Close stops its idle-connection sweeper.
type Transport struct {
	cfg Config
}

// New returns a Transport with cfg's settings.
func New(cfg Config) *Transport {
	return &Transport{cfg: cfg}
}

// RoundTrip sends req and returns the response once its headers have
// arrived; the body streams from the connection. The connection goes
// back to the pool when the body has been read to its end and closed,
// and is closed instead when the body is closed early, the answer says
// Connection: close, or req's context ends.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return nil, errors.New("h1transport: not implemented")
}

// CloseIdleConnections closes every pooled connection.
func (t *Transport) CloseIdleConnections() {}

// Close closes the pooled connections and stops the sweeper. Requests
// still in flight finish.
func (t *Transport) Close() error { return nil }
