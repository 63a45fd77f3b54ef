package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/internal/webtest"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/tokens"
)

// clock is real time plus the jumps a test makes. It moves on by itself,
// as real Redis does, so a key's real expiry and the gateway's idea of
// time never drift apart however slowly a loaded machine runs the test.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// setup tunes one harness.
type setup struct {
	proxy    ProxyConfig // Upstreams empty: the demo upstream at /v1/
	upstream demoupstream.Options
	// issuer, when set, is the token issuer instead of the gateway's URL:
	// replicas of one deployment share it.
	issuer string
	// noBackchannel leaves the provider without the gateway's back-channel
	// logout URL, as with providers that do not support it.
	noBackchannel bool
	// recheck is LLMGATE_USER_RECHECK_INTERVAL (0: off).
	recheck time.Duration
	// requireLogin is LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN.
	requireLogin time.Duration
	// webhook receives security events when set.
	webhook string
	// upstreamKey is the demo upstream's credential, sent by the gateway.
	upstreamKey string
	oidc        oidc.Config // policy fields only
	sessions    sessions.Config
	claimsHook  func(clientID string, u devidp.User, claims map[string]any)
	users       []devidp.User
	// claudeCode, idpAudiences and otlp are the Claude Code settings (§8).
	claudeCode   ClaudeCodeConfig
	idpAudiences []string
	otlp         *url.URL
}

// harness is a gateway on loopback, signed into by a real OpenID Provider
// (the dev provider) and backed by a real Redis protocol server.
type harness struct {
	t      testing.TB
	url    string
	idp    *devidp.Provider
	gw     *Server
	store  *sessions.Store
	tokens *tokens.Service
	usage  *usage.Recorder
	audit  *audit.Log
	// upstream is the demo upstream, routed at /v1/ unless the setup
	// routes elsewhere.
	upstream *demoupstream.Server
	redis    *redistest.Server
	clock    *clock
	logBuf   *logtest.Buffer
}

func newHarness(tb testing.TB, rs *redistest.Server, opts ...func(*setup)) *harness {
	tb.Helper()
	var st setup
	for _, o := range opts {
		o(&st)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	users := st.users
	if users == nil {
		users = devidp.DemoUsers()
	}
	backchannel := base + "/oauth2/backchannel_logout"
	if st.noBackchannel {
		backchannel = ""
	}
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{
		Users: users,
		Clients: []devidp.Client{{
			ID: "llmgate", Secret: "test-client-secret",
			RedirectURIs:           []string{base + "/oauth2/callback"},
			PostLogoutRedirectURIs: []string{base + "/oauth2/signed_out"},
			BackChannelLogoutURI:   backchannel,
		}},
		ClaimsHook: st.claimsHook,
	})
	if err != nil {
		tb.Fatalf("start dev provider: %v", err)
	}
	tb.Cleanup(func() { idp.Close() })

	clk := &clock{}
	logBuf := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	scfg := st.sessions
	scfg.Prefix = rs.Prefix
	scfg.Now = clk.Now
	store := sessions.New(rs.Client, scfg)

	ocfg := st.oidc
	ocfg.Issuer = idp.Issuer()
	ocfg.ClientID = "llmgate"
	ocfg.ClientSecret = "test-client-secret"
	ocfg.RedirectURL = base + "/oauth2/callback"
	ocfg.Scopes = []string{"openid", "email", "profile", "groups", "offline_access"}
	if ocfg.AdminEmails == nil {
		ocfg.AdminEmails = []string{"alice@example.com"}
	}
	ocfg.Now = clk.Now
	rp := oidc.New(ocfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rp.Discover(ctx); err != nil {
		tb.Fatalf("discover dev provider: %v", err)
	}

	issuer := base
	if st.issuer != "" {
		issuer = st.issuer
	}
	tok := newTokens(tb, rs, issuer, clk.Now)

	demo, demoURL, closeDemo, err := demoupstream.Start("127.0.0.1:0", st.upstream)
	if err != nil {
		tb.Fatalf("start demo upstream: %v", err)
	}
	tb.Cleanup(func() { closeDemo() })
	pcfg := st.proxy
	if len(pcfg.Upstreams) == 0 {
		u, _ := url.Parse(demoURL)
		pcfg.Upstreams = []Upstream{{Name: "demo", URL: u, Paths: []string{"/v1/"}, APIKey: st.upstreamKey}}
	}
	rec := usage.NewRecorder(rs.Client, usage.Config{Prefix: rs.Prefix, FlushInterval: 10 * time.Millisecond})
	tb.Cleanup(func() { rec.Close() })
	auditLog := audit.New(rs.Client, audit.Config{Prefix: rs.Prefix, Logger: log, WebhookURL: st.webhook})
	tb.Cleanup(func() { auditLog.Close() })
	people := newUsers(tb, rs, st.recheck, clk.Now)

	pub, _ := url.Parse(base)
	gw, err := New(Config{
		PublicURL:          pub,
		Secret:             []byte("test-secret-test-secret-test-secret-0123456789"),
		Now:                clk.Now,
		Logger:             log,
		Proxy:              pcfg,
		RequireLoginWithin: st.requireLogin,
		KeyPrefix:          rs.Prefix,
		ClaudeCode:         st.claudeCode,
		IDPTokenAudiences:  st.idpAudiences,
		OTLPEndpoint:       st.otlp,
	}, Deps{Sessions: store, RP: rp, Tokens: tok, Usage: rec, Audit: auditLog, Users: people, Redis: rs.Client, Checks: []Check{{Name: "redis", Check: func(ctx context.Context) error {
		return rs.Client.Ping(ctx).Err()
	}}}})
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(sctx, ln) }()
	tb.Cleanup(func() {
		stop()
		<-done
		if tb.Failed() {
			tb.Logf("gateway log:\n%s", logBuf.String())
		}
	})
	return &harness{t: tb, url: base, idp: idp, gw: gw, store: store, tokens: tok, usage: rec, audit: auditLog,
		upstream: demo, redis: rs, clock: clk, logBuf: logBuf}
}

// newUsers starts a users store with re-checks every recheck (0: off).
func newUsers(tb testing.TB, rs *redistest.Server, recheck time.Duration, now func() time.Time) *users.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := users.New(ctx, rs.Client, users.Config{
		Prefix: rs.Prefix, Secret: []byte("test-secret-test-secret-test-secret-0123456789"),
		RecheckInterval: recheck, SyncInterval: 50 * time.Millisecond, Now: now,
	})
	if err != nil {
		tb.Fatalf("users.New: %v", err)
	}
	tb.Cleanup(func() { u.Close() })
	return u
}

// newTokens starts a token service for a gateway at issuer.
func newTokens(tb testing.TB, rs *redistest.Server, issuer string, now func() time.Time) *tokens.Service {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := tokens.New(ctx, rs.Client, tokens.Config{
		Issuer: issuer,
		Secret: []byte("test-secret-test-secret-test-secret-0123456789"),
		Prefix: rs.Prefix,
		Now:    now,
	})
	if err != nil {
		tb.Fatalf("tokens.New: %v", err)
	}
	tb.Cleanup(func() { tok.Close() })
	return tok
}

// advance lets d pass for the gateway and for Redis key expiry: on
// miniredis by jumping both clocks, on real Redis by waiting (keep d short).
func (h *harness) advance(d time.Duration) {
	if h.redis.Real() {
		time.Sleep(d)
		return
	}
	h.clock.Add(d)
	h.redis.FastForward(d)
}

// browser is a webtest.Browser with gateway-specific steps.
type browser struct {
	*webtest.Browser
	t testing.TB
}

func newBrowser(tb testing.TB) *browser {
	return &browser{Browser: webtest.NewBrowser(tb), t: tb}
}

// signIn goes through the whole login from path on the gateway and returns
// the page it ended on.
func (b *browser) signIn(h *harness, path, email, password string) webtest.Page {
	b.t.Helper()
	p := b.Get(h.url + path)
	if p.URL.Host == h.host() {
		b.t.Fatalf("GET %s ended on the gateway at %s (status %d), want the provider's login form", path, p.URL, p.Status)
	}
	return b.SubmitLogin(p, email, password)
}
