package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// ScopeGroups is the scope that adds the "groups" claim to ID tokens and
// userinfo.
const ScopeGroups = "groups"

// Lifetimes of what the provider issues.
const (
	accessTokenTTL    = time.Hour
	idTokenTTL        = time.Hour
	refreshTokenTTL   = 30 * 24 * time.Hour
	authRequestTTL    = 10 * time.Minute
	authCodeTTL       = 2 * time.Minute
	browserSessionTTL = 12 * time.Hour
)

// Sign-in refusals returned by SignIn.
var (
	// ErrBadCredentials means the email is unknown or the password is wrong.
	ErrBadCredentials = errors.New("wrong email or password")
	// ErrUserDisabled means the user exists but was disabled with SetDisabled.
	ErrUserDisabled = errors.New("user is disabled")
)

// User is a person who can sign in at the provider.
type User struct {
	// Subject is the stable "sub" claim; when empty it is derived from the
	// email, so it stays the same across restarts.
	Subject  string
	Email    string
	Password string
	Name     string
	Groups   []string
	// EmailUnverified makes tokens and userinfo carry email_verified=false.
	EmailUnverified bool
}

// Client is an OAuth client (relying party) registered at the provider.
type Client struct {
	// ID is the client_id. Secret is its client_secret; an empty Secret makes
	// a public client, which authenticates with PKCE only (auth method none)
	// and, as a native app (RFC 8252), may use any port on a registered
	// loopback redirect URI. A confidential client authenticates with
	// client_secret_basic or client_secret_post.
	ID, Secret string
	// RedirectURIs must match the redirect_uri of an authorization request
	// exactly.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the URIs end_session may redirect to.
	PostLogoutRedirectURIs []string
	// BackChannelLogoutURI, when set, receives OpenID Connect Back-Channel
	// Logout 1.0 logout tokens (a form POST with the field logout_token)
	// when a browser session during which someone signed into the client
	// ends: at end_session, SetDisabled and LogoutUser (not when it merely
	// expires).
	BackChannelLogoutURI string
}

// Config configures a Provider.
type Config struct {
	// Users who can sign in. Nil means DemoUsers(); an empty, non-nil slice
	// means nobody.
	Users []User
	// Clients registered at start; AddClient registers more later.
	Clients []Client
	// ClaimsHook, when set, may change the ID token's claims for a client and
	// user just before signing: tests use it to forge a wrong "aud", a wrong
	// "nonce", email_verified=false or a foreign "iss". It gets every claim
	// (numbers as json.Number, arrays as []any) and may add, change or delete
	// any of them; the token is then signed with the provider's key. It runs
	// for every ID token the token endpoint returns (code exchange and
	// refresh), may run concurrently, and does not change userinfo.
	ClaimsHook func(clientID string, user User, claims map[string]any)
	// Logger receives the provider's own log lines; nil discards them.
	// zitadel/oidc logs through slog.Default whatever is set here.
	Logger *slog.Logger
}

// DemoUsers returns the demo users that `llmgate dev` prints:
// alice@example.com (password "alice", groups admins and engineering) and
// bob@example.com (password "bob", group engineering).
func DemoUsers() []User {
	return []User{
		{
			Email:    "alice@example.com",
			Password: "alice",
			Name:     "Alice Example",
			Groups:   []string{"admins", "engineering"},
		},
		{
			Email:    "bob@example.com",
			Password: "bob",
			Name:     "Bob Example",
			Groups:   []string{"engineering"},
		},
	}
}

// Provider is a running development OpenID Provider.
type Provider struct {
	issuer     string
	store      *storage
	op         *op.Provider
	srv        *http.Server
	log        *slog.Logger
	hook       func(clientID string, user User, claims map[string]any)
	cookieName string

	// logoutClient delivers back-channel logout tokens.
	logoutClient *http.Client
	// foreignKey signs ForeignLogoutToken's tokens; made on first use.
	foreignOnce sync.Once
	foreignKey  *rsa.PrivateKey
	foreignErr  error

	served    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start listens on addr (for example "127.0.0.1:0") and serves the provider
// in the background until Close. The issuer is "http://" + the address it
// actually listens on (127.0.0.1 when addr names no host).
func Start(addr string, cfg Config) (*Provider, error) {
	users := cfg.Users
	if users == nil {
		users = DemoUsers()
	}
	if err := validate(users, cfg.Clients); err != nil {
		return nil, fmt.Errorf("devidp: invalid config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devidp: listen: %w", err)
	}
	issuer, port := issuerFor(ln.Addr())

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("devidp: generate signing key: %w", err)
	}
	var cryptoKey [32]byte // encrypts the opaque access tokens and codes
	rand.Read(cryptoKey[:])

	store := newStorage(issuer, key, users, cfg.Clients)
	provider, err := op.NewOpenIDProvider(issuer, &op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              "devidp",
		DefaultLogoutRedirectURI: issuer + loggedOutPath,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,

		BackChannelLogoutSupported:        true,
		BackChannelLogoutSessionSupported: true,
		SupportedScopes: []string{
			oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile, ScopeGroups, oidc.ScopeOfflineAccess,
		},
		SupportedClaims: []string{
			"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "at_hash", "c_hash",
			"email", "email_verified", "name", "preferred_username", "groups", "sid",
		},
	}, store, op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("devidp: create provider: %w", err)
	}

	p := &Provider{
		issuer:     issuer,
		store:      store,
		op:         provider,
		log:        log,
		hook:       cfg.ClaimsHook,
		cookieName: "llmgate_devidp_" + port,
		served:     make(chan struct{}),
		logoutClient: &http.Client{
			Timeout: logoutDeliveryTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a logout is answered, not redirected
			},
		},
	}
	store.logout = p.deliverLogouts
	p.srv = &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(p.served)
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("devidp: serve", "error", err)
		}
	}()
	log.Info("devidp: started", "issuer", issuer)
	return p, nil
}

// routes returns the provider's HTTP handler: the login UI beside the
// zitadel OP, which serves every OpenID endpoint.
func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, p.loginPage)
	mux.HandleFunc("POST "+loginPath, p.loginSubmit)
	mux.HandleFunc("GET "+loggedOutPath, p.loggedOut)
	mux.Handle("/", p.withDiscoveryTrimmed(p.withClaimsHook(p.op)))
	return p.withBrowserSession(mux)
}

// issuerFor returns the issuer URL and the port of the listen address a.
func issuerFor(a net.Addr) (issuer, port string) {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), port
}

// Issuer returns the issuer URL, e.g. "http://127.0.0.1:41234".
func (p *Provider) Issuer() string { return p.issuer }

// Close stops the server at once, closing open connections, and forgets
// everything. Calling it again returns the first result.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.srv.Close()
		<-p.served
		p.log.Info("devidp: stopped", "issuer", p.issuer)
	})
	return p.closeErr
}

// AddClient registers c, replacing a client with the same ID. An invalid
// client (no ID, no or relative redirect URIs) is ignored and logged.
func (p *Provider) AddClient(c Client) {
	if err := validateClient(c); err != nil {
		p.log.Error("devidp: add client", "client_id", c.ID, "error", err)
		return
	}
	p.store.addClient(c)
	p.log.Info("devidp: client added", "client_id", c.ID, "public", c.Secret == "")
}

// SetDisabled disables or enables the user with email (case-insensitive).
// Disabling signs the user out everywhere: their browser sessions, access
// tokens and refresh tokens are deleted, so a refresh answers invalid_grant
// and userinfo refuses; the login page then refuses them. As with
// LogoutUser, the clients signed into during the ended sessions get their
// back-channel logout tokens before SetDisabled returns; failed deliveries
// are logged. Enabling again lets them sign in but does not bring old tokens
// back. An unknown email is ignored (and logged).
func (p *Provider) SetDisabled(email string, disabled bool) {
	notices, ok := p.store.setDisabled(email, disabled)
	if !ok {
		p.log.Warn("devidp: set disabled: no such user", "email", email)
		return
	}
	p.log.Info("devidp: user status changed", "email", email, "disabled", disabled)
	p.deliverLogouts(context.Background(), notices) // failures are logged
}

// SignIn signs a person in the way a browser would, for tests: it GETs
// authURL (an authorization request of this provider, or a relying party's
// URL that redirects to one) with hc, which follows redirects as its
// CheckRedirect allows, and when that ends on this provider's login page it
// posts email and password there. It returns the response the sign-in ended
// with (when hc stops at the client's redirect_uri, a redirect whose Location
// carries the code); the caller closes its body. When the browser session of
// hc's cookie jar already signed someone in, the form is skipped and the
// response of the GET is returned as it is. A refused sign-in returns an error
// wrapping ErrBadCredentials or ErrUserDisabled.
func (p *Provider) SignIn(ctx context.Context, hc *http.Client, authURL, email, password string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sign in: open authorization URL: %w", err)
	}
	id, ok := p.loginRequestID(resp.Request.URL)
	if !ok || resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	drain(resp)

	form := url.Values{
		formUsername:      {email},
		formPassword:      {password},
		formAuthRequestID: {id},
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, p.issuer+loginPath, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sign in: post login form: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		drain(resp)
		return nil, fmt.Errorf("sign in as %s: %w", email, ErrBadCredentials)
	case http.StatusForbidden:
		drain(resp)
		return nil, fmt.Errorf("sign in as %s: %w", email, ErrUserDisabled)
	}
	return resp, nil
}

// loginRequestID returns the auth request ID when u is this provider's login
// page.
func (p *Provider) loginRequestID(u *url.URL) (string, bool) {
	iss, err := url.Parse(p.issuer)
	if err != nil || u.Host != iss.Host || u.Path != loginPath {
		return "", false
	}
	id := u.Query().Get(formAuthRequestID)
	return id, id != ""
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// subjectFor derives a stable, opaque subject from an email.
func subjectFor(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "u-" + hex.EncodeToString(sum[:12])
}

// validate reports every problem of the users and clients at once.
func validate(users []User, clients []Client) error {
	var errs []error
	emails := map[string]int{}
	subjects := map[string]int{}
	for i, u := range users {
		switch {
		case u.Email == "":
			errs = append(errs, fmt.Errorf("Users[%d].Email is empty", i))
		case !strings.Contains(u.Email, "@"):
			errs = append(errs, fmt.Errorf("Users[%d].Email %q is not an email address", i, u.Email))
		default:
			e := strings.ToLower(u.Email)
			if j, dup := emails[e]; dup {
				errs = append(errs, fmt.Errorf("Users[%d].Email %q repeats Users[%d]", i, u.Email, j))
			}
			emails[e] = i
		}
		if u.Password == "" {
			errs = append(errs, fmt.Errorf("Users[%d].Password is empty", i))
		}
		sub := u.Subject
		if sub == "" && u.Email != "" {
			sub = subjectFor(u.Email)
		}
		if sub != "" {
			if j, dup := subjects[sub]; dup {
				errs = append(errs, fmt.Errorf("Users[%d].Subject %q repeats Users[%d]", i, sub, j))
			}
			subjects[sub] = i
		}
	}
	ids := map[string]int{}
	for i, c := range clients {
		for _, err := range clientProblems(c) {
			errs = append(errs, fmt.Errorf("Clients[%d]: %w", i, err))
		}
		if j, dup := ids[c.ID]; dup && c.ID != "" {
			errs = append(errs, fmt.Errorf("Clients[%d].ID %q repeats Clients[%d]", i, c.ID, j))
		}
		ids[c.ID] = i
	}
	return errors.Join(errs...)
}

func validateClient(c Client) error {
	return errors.Join(clientProblems(c)...)
}

func clientProblems(c Client) []error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("ID is empty"))
	}
	if len(c.RedirectURIs) == 0 {
		errs = append(errs, errors.New("RedirectURIs is empty"))
	}
	for _, raw := range slices.Concat(c.RedirectURIs, c.PostLogoutRedirectURIs) {
		if u, err := url.Parse(raw); err != nil || !u.IsAbs() {
			errs = append(errs, fmt.Errorf("redirect URI %q is not an absolute URL", raw))
		}
	}
	if raw := c.BackChannelLogoutURI; raw != "" {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("BackChannelLogoutURI %q is not an absolute http(s) URL without a fragment", raw))
		}
	}
	return errs
}
