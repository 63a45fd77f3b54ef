package devidp

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BackChannelLogoutEvent is the member of a logout token's "events" claim
// that makes it a logout token (OpenID Connect Back-Channel Logout 1.0 §2.4).
const BackChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Back-channel logout delivery.
const (
	// logoutTokenTTL is how long a logout token is valid: the spec
	// recommends at most two minutes.
	logoutTokenTTL = 2 * time.Minute
	// logoutDeliveryTimeout bounds one POST to a client.
	logoutDeliveryTimeout = 5 * time.Second
	// logoutTokenType is the explicit JWT type of logout tokens (§2.4).
	logoutTokenType = "logout+jwt"
)

// ErrUnknownUser is returned by LogoutUser, LogoutToken and
// ForeignLogoutToken for an email no user has.
var ErrUnknownUser = errors.New("no such user")

// logoutNotice is one back-channel logout to deliver: the browser session
// sid of subject ended, and clientID was signed into during it.
type logoutNotice struct {
	clientID string
	uri      string
	subject  string
	sid      string
}

func sortNotices(ns []logoutNotice) {
	slices.SortFunc(ns, func(a, b logoutNotice) int {
		return cmp.Or(cmp.Compare(a.sid, b.sid), cmp.Compare(a.clientID, b.clientID))
	})
}

// LogoutUser signs the user with email (case-insensitive) out everywhere, as
// an administrator of a real provider would: their browser sessions end and
// their access and refresh tokens are deleted (a refresh then answers
// invalid_grant), but they may sign in again. Each client signed into during
// an ended session that has a BackChannelLogoutURI gets a logout token (sub
// and that session's sid) before LogoutUser returns. It returns an error
// wrapping ErrUnknownUser for an unknown email, and the failed deliveries
// (refused connections, answers other than 2xx) joined, after trying every
// one.
func (p *Provider) LogoutUser(email string) error {
	notices, ok := p.store.signOut(email)
	if !ok {
		return fmt.Errorf("devidp: logout user %s: %w", email, ErrUnknownUser)
	}
	p.log.Info("devidp: user signed out everywhere", "email", email, "back_channel_logouts", len(notices))
	if err := p.deliverLogouts(context.Background(), notices); err != nil {
		return fmt.Errorf("devidp: logout user %s: %w", email, err)
	}
	return nil
}

// LogoutToken mints a back-channel logout token for clientID about the user
// with email, signed with the provider's real key (RS256, its kid, typ
// "logout+jwt"), as the provider would send it, without sending it. Its
// claims are iss, aud ([clientID]), iat (now), exp (iat + 2 min), jti (random),
// sub, events ({BackChannelLogoutEvent: {}}) and, when the user has a live
// browser session, sid (of the most recent one). mutate, when not nil, may
// change, add or delete any claim before signing: iat and exp are int64 Unix
// seconds, aud is []any and events is map[string]any. Tests use it to forge
// tokens that only the claim checks can refuse. The client need not be
// registered. It returns an error wrapping ErrUnknownUser for an unknown
// email.
func (p *Provider) LogoutToken(clientID, email string, mutate func(claims map[string]any)) (string, error) {
	return p.mintFor(clientID, email, mutate, p.store.key.key)
}

// ForeignLogoutToken is LogoutToken signed with another RSA key that carries
// the provider's kid: a token with a bad signature, which a relying party
// must refuse whatever its claims say.
func (p *Provider) ForeignLogoutToken(clientID, email string, mutate func(claims map[string]any)) (string, error) {
	p.foreignOnce.Do(func() { p.foreignKey, p.foreignErr = rsa.GenerateKey(rand.Reader, 2048) })
	if p.foreignErr != nil {
		return "", fmt.Errorf("devidp: generate foreign key: %w", p.foreignErr)
	}
	return p.mintFor(clientID, email, mutate, p.foreignKey)
}

func (p *Provider) mintFor(clientID, email string, mutate func(map[string]any), key *rsa.PrivateKey) (string, error) {
	subject, sid, ok := p.store.latestSID(email)
	if !ok {
		return "", fmt.Errorf("devidp: logout token for %s: %w", email, ErrUnknownUser)
	}
	claims := p.logoutClaims(clientID, subject, sid)
	if mutate != nil {
		mutate(claims)
	}
	tok, err := signLogoutToken(key, p.store.key.id, claims)
	if err != nil {
		return "", fmt.Errorf("devidp: logout token for %s: %w", email, err)
	}
	return tok, nil
}

// logoutClaims are the claims of a logout token (Back-Channel Logout 1.0
// §2.4).
func (p *Provider) logoutClaims(clientID, subject, sid string) map[string]any {
	now := p.store.now()
	claims := map[string]any{
		"iss":    p.issuer,
		"aud":    []any{clientID},
		"iat":    now.Unix(),
		"exp":    now.Add(logoutTokenTTL).Unix(),
		"jti":    rand.Text(),
		"sub":    subject,
		"events": map[string]any{BackChannelLogoutEvent: map[string]any{}},
	}
	if sid != "" {
		claims["sid"] = sid
	}
	return claims
}

// signLogoutToken signs claims as a compact JWS with key under kid.
func signLogoutToken(key *rsa.PrivateKey, kid string, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(logoutTokenType),
	)
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

// deliverLogouts POSTs a fresh logout token for each notice to its client's
// BackChannelLogoutURI (form field logout_token), one after the other, and
// returns the failures joined. ctx's cancellation is ignored: a logout that
// started is delivered even if the browser that caused it went away.
func (p *Provider) deliverLogouts(ctx context.Context, notices []logoutNotice) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, n := range notices {
		if err := p.deliverLogout(ctx, n); err != nil {
			p.log.WarnContext(ctx, "devidp: back-channel logout failed", "client_id", n.clientID, "uri", n.uri, "error", err)
			errs = append(errs, fmt.Errorf("back-channel logout to client %s at %s: %w", n.clientID, n.uri, err))
			continue
		}
		p.log.InfoContext(ctx, "devidp: back-channel logout delivered", "client_id", n.clientID, "subject", n.subject)
	}
	return errors.Join(errs...)
}

func (p *Provider) deliverLogout(ctx context.Context, n logoutNotice) error {
	tok, err := signLogoutToken(p.store.key.key, p.store.key.id, p.logoutClaims(n.clientID, n.subject, n.sid))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, logoutDeliveryTimeout)
	defer cancel()
	body := url.Values{"logout_token": {tok}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.uri, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.logoutClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}
