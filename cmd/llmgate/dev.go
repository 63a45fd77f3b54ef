package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/llmgate/llmgate/internal/devstack"
	"github.com/llmgate/llmgate/internal/logbuf"
)

const devSummary = `Run llmgate with everything embedded, like 'vault server -dev': an in-memory
Redis-protocol store, a development OpenID Provider with demo users and a
demo OpenAI- and Anthropic-compatible upstream. Nothing to install; all data
is lost on exit. Not for production: use 'llmgate serve'.

It prints, one per line, the gateway, provider and upstream URLs and a
"login:" line per demo user (alice@example.com is an admin).

Examples:
  llmgate dev
  llmgate dev --listen 127.0.0.1:9000 --upstream http://127.0.0.1:4000`

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev", devSummary, stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway listen address (the provider and demo upstream take free loopback ports)")
	upstream := fs.String("upstream", "", "send API calls to this upstream instead of the demo one, e.g. http://127.0.0.1:4000")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	lw := logbuf.New(stderr, 0, 0) // see cmdServe
	defer lw.Close()
	stderr = lw
	log := newLogger(*logFormat, stderr)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "llmgate dev: cannot listen on %s: %v (choose another with --listen)\n", *listen, err)
		return exitFailure
	}
	gatewayURL := "http://" + ln.Addr().String()
	stack, err := devstack.Start(devstack.Options{GatewayURL: gatewayURL, UpstreamURL: *upstream, Logger: log})
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "llmgate dev: %v\n", err)
		return exitFailure
	}
	defer stack.Close()

	cfg := devConfig(gatewayURL, stack)
	if err := cfg.Validate(); err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "llmgate dev: internal configuration is not valid:\n%v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "gateway:  %s\n", gatewayURL)
	fmt.Fprintf(stdout, "provider: %s\n", stack.Provider.Issuer())
	fmt.Fprintf(stdout, "upstream: %s\n", stack.UpstreamURL)
	for _, u := range stack.Users {
		fmt.Fprintf(stdout, "login:    %s / %s\n", u.Email, u.Password)
	}
	fmt.Fprintf(stdout, "\nOpen %s and sign in; %s is an admin. Data lives in memory and is lost on exit. Ctrl-C stops.\n",
		gatewayURL, cfg.AdminEmails[0])

	if err := runGateway(ctx, cfg, ln, log); err != nil {
		fmt.Fprintf(stderr, "llmgate dev: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// devConfig is the serve configuration of `llmgate dev`: the defaults of
// every setting, pointed at the embedded stack.
func devConfig(gatewayURL string, stack *devstack.Stack) *Config {
	cfg := DefaultConfig()
	cfg.Listen = gatewayURL[len("http://"):]
	cfg.PublicURL = gatewayURL
	cfg.Secret = newSecret()
	cfg.RedisURL = stack.RedisURL
	cfg.OIDCIssuer = stack.Provider.Issuer()
	cfg.OIDCClientID = stack.ClientID
	cfg.OIDCClientSecret = stack.ClientSecret
	cfg.OIDCScopes = []string{"openid", "email", "profile", "groups", "offline_access"}
	cfg.AdminEmails = []string{stack.Users[0].Email}
	cfg.UpstreamURL = stack.UpstreamURL
	cfg.LogFormat = "text"
	cfg.ShutdownGrace = 2 * time.Second
	return cfg
}
