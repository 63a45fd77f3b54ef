// Package devstack starts what `llmgate dev` and the end-to-end tests need
// on one machine with nothing installed: an embedded Redis-protocol store
// (miniredis), the development OpenID Provider with its demo users, and
// the demo OpenAI- and Anthropic-compatible upstream. Everything listens on
// free loopback ports and is gone when the stack is closed.
package devstack

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/alicebob/miniredis/v2"

	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/devidp"
)

// ClientID is the OAuth client the gateway is registered as at the dev provider.
const ClientID = "llmgate"

// Options configure a stack.
type Options struct {
	// GatewayURL is the public URL of the gateway that will use the stack;
	// its callback and signed-out pages are registered at the provider.
	GatewayURL string
	// UpstreamURL, when set, is used instead of starting the demo upstream.
	UpstreamURL string
	// Users replaces the demo users when not empty.
	Users  []devidp.User
	Logger *slog.Logger
}

// Stack is a running set of development services.
type Stack struct {
	RedisURL     string
	Redis        *miniredis.Miniredis
	Provider     *devidp.Provider
	ClientID     string
	ClientSecret string
	Users        []devidp.User
	UpstreamURL  string
	// Upstream is the demo upstream, nil when Options.UpstreamURL was given.
	Upstream *demoupstream.Server

	closers []func() error
}

// Start brings up the stack. Close it when done.
func Start(opts Options) (*Stack, error) {
	if opts.GatewayURL == "" {
		return nil, errors.New("devstack: GatewayURL is required")
	}
	s := &Stack{ClientID: ClientID, ClientSecret: randomHex(24), Users: opts.Users}
	if len(s.Users) == 0 {
		s.Users = devidp.DemoUsers()
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded store: %w", err)
	}
	s.Redis, s.RedisURL = mr, "redis://"+mr.Addr()
	s.closers = append(s.closers, func() error { mr.Close(); return nil })

	p, err := devidp.Start("127.0.0.1:0", devidp.Config{
		Users: s.Users,
		Clients: []devidp.Client{{
			ID: s.ClientID, Secret: s.ClientSecret,
			RedirectURIs:           []string{opts.GatewayURL + "/oauth2/callback"},
			PostLogoutRedirectURIs: []string{opts.GatewayURL + "/oauth2/signed_out"},
		}},
		Logger: opts.Logger,
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start development identity provider: %w", err)
	}
	s.Provider = p
	s.closers = append(s.closers, p.Close)

	if opts.UpstreamURL != "" {
		s.UpstreamURL = opts.UpstreamURL
	} else {
		up, base, closeUp, err := demoupstream.Start("127.0.0.1:0", demoupstream.Options{})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("start demo upstream: %w", err)
		}
		s.Upstream, s.UpstreamURL = up, base
		s.closers = append(s.closers, closeUp)
	}
	return s, nil
}

// Close stops everything the stack started.
func (s *Stack) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
