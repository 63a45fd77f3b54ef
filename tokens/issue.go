package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Limits on IssueRequest fields.
const (
	minTTL        = time.Minute
	maxNameLen    = 100
	maxListLen    = 100 // models, cidrs
	maxModelLen   = 200
	maxRPM        = 1_000_000
	maxUserName   = 200
	tokenTypeJWT  = "at+jwt"
	idBytes       = 16
	maxTokenBytes = 8 << 10
)

// Issue mints a token for req and stores its record. The token string is
// returned once and never stored. Errors: *ValidationError for a bad
// request, ErrUserBlocked when the owner is blocked, ErrUnavailable when the
// record cannot be written.
func (s *Service) Issue(ctx context.Context, req IssueRequest) (string, Record, error) {
	if !s.ready.Load() {
		return "", Record{}, fmt.Errorf("issue token: %w: service not started", ErrUnavailable)
	}
	now := s.now()
	rec, err := s.newRecord(req, now)
	if err != nil {
		return "", Record{}, err
	}
	if s.rev.isBlocked(rec.Email) {
		return "", Record{}, fmt.Errorf("issue token for %s: %w", rec.Email, ErrUserBlocked)
	}
	raw, err := s.sign(rec, strings.TrimSpace(req.UserName), now)
	if err != nil {
		return "", Record{}, err
	}
	if err := s.saveRecord(ctx, rec, now); err != nil {
		return "", Record{}, err
	}
	return raw, rec, nil
}

// newRecord validates req and returns the record of the token to mint.
func (s *Service) newRecord(req IssueRequest, now time.Time) (Record, error) {
	invalid := func(field, format string, args ...any) (Record, error) {
		return Record{}, &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	name := strings.TrimSpace(req.Name)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return invalid("name", "name is required")
	case n > maxNameLen:
		return invalid("name", "name is longer than %d characters", maxNameLen)
	case !printable(name):
		return invalid("name", "name must contain only printable characters")
	}
	email := normEmail(req.Email)
	if email == "" || !strings.Contains(email, "@") || !printable(email) || strings.ContainsRune(email, ' ') {
		return invalid("email", "a valid owner email is required")
	}
	if req.Subject == "" || !printable(req.Subject) {
		return invalid("subject", "the owner's subject is required")
	}
	clientID := req.ClientID
	if clientID == "" {
		clientID = ClientAPI
	}
	if len(clientID) > 64 || strings.IndexFunc(clientID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return invalid("client_id", "client_id %q is not valid", clientID)
	}
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = s.cfg.DefaultTTL
	case ttl < 0:
		return invalid("ttl", "ttl must be positive")
	case ttl < minTTL:
		return invalid("ttl", "ttl %s is shorter than the minimum %s", formatDuration(ttl), formatDuration(minTTL))
	case ttl > s.cfg.MaxTTL:
		return invalid("ttl", "ttl %s exceeds the maximum %s", formatDuration(ttl), formatDuration(s.cfg.MaxTTL))
	}
	var scopes []string
	for _, sc := range req.Scopes {
		sc = strings.TrimSpace(sc)
		if sc != ScopeLLM && sc != ScopeTokens {
			return invalid("scopes", "unknown scope %q: use %q or %q", sc, ScopeLLM, ScopeTokens)
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if len(scopes) == 0 {
		scopes = []string{ScopeLLM}
	}
	if len(req.Models) > maxListLen {
		return invalid("models", "at most %d models may be listed", maxListLen)
	}
	var models []string
	for _, m := range req.Models {
		m = strings.TrimSpace(m)
		if m == "" || len(m) > maxModelLen || !printable(m) || strings.ContainsRune(m, ' ') {
			return invalid("models", "model %q is not a valid model name", m)
		}
		if !slices.Contains(models, m) {
			models = append(models, m)
		}
	}
	if req.RPM < 0 || req.RPM > maxRPM {
		return invalid("rpm", "rpm must be between 0 (no limit) and %d", maxRPM)
	}
	if len(req.CIDRs) > maxListLen {
		return invalid("cidrs", "at most %d cidrs may be listed", maxListLen)
	}
	var cidrs []string
	for _, c := range req.CIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return invalid("cidrs", "%q is not a valid CIDR (for example 10.0.0.0/8 or 2001:db8::/32)", c)
		}
		if c := p.Masked().String(); !slices.Contains(cidrs, c) {
			cidrs = append(cidrs, c)
		}
	}
	if math.IsNaN(req.MaxCostUSD) || math.IsInf(req.MaxCostUSD, 0) || req.MaxCostUSD < 0 {
		return invalid("max_cost_usd", "max_cost_usd must be a number greater than 0")
	}
	iat := now.Truncate(time.Second)
	return Record{
		ID:         newID(),
		Name:       name,
		Email:      email,
		Subject:    req.Subject,
		ClientID:   clientID,
		Scopes:     scopes,
		Models:     models,
		RPM:        req.RPM,
		CIDRs:      cidrs,
		MaxCostUSD: req.MaxCostUSD,
		CreatedAt:  now.UTC(),
		ExpiresAt:  iat.Add(ttl).UTC(),
	}, nil
}

// sign builds and signs the JWT for rec with the current key.
func (s *Service) sign(rec Record, userName string, now time.Time) (string, error) {
	key := s.ring.Load().signer(now)
	iat := now.Truncate(time.Second)
	b := jwt.NewBuilder().
		Issuer(s.cfg.Issuer).
		Audience([]string{s.cfg.Audience}).
		Subject(rec.Subject).
		JwtID(rec.ID).
		IssuedAt(iat).
		NotBefore(iat).
		Expiration(rec.ExpiresAt).
		Claim(claimClientID, rec.ClientID).
		Claim(claimEmail, rec.Email).
		Claim(claimScope, strings.Join(rec.Scopes, " "))
	if userName = sanitize(userName, maxUserName); userName != "" {
		b = b.Claim(claimName, userName)
	}
	if len(rec.Models) > 0 {
		b = b.Claim(claimModels, rec.Models)
	}
	if rec.RPM > 0 {
		b = b.Claim(claimRPM, rec.RPM)
	}
	if len(rec.CIDRs) > 0 {
		b = b.Claim(claimCIDRs, rec.CIDRs)
	}
	if rec.MaxCostUSD > 0 {
		b = b.Claim(claimMaxCostUSD, rec.MaxCostUSD)
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	tok.Options().Enable(jwt.FlattenAudience)
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, tokenTypeJWT); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	if err := hdr.Set(jws.KeyIDKey, key.kid); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(key.alg, key.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("issue token: sign: %w", err)
	}
	raw := string(signed)
	if key.alg == jwa.ES256 {
		// Write the low-s form of the signature: Verify refuses the other.
		i := strings.LastIndexByte(raw, '.')
		sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
		if err != nil {
			return "", fmt.Errorf("issue token: %w", err)
		}
		raw = raw[:i+1] + base64.RawURLEncoding.EncodeToString(lowS(sig))
	}
	return raw, nil
}

// newID returns a token id (jti): 128 bits from crypto/rand, hex.
func newID() string {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		panic("tokens: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// validID reports whether id has the shape newID makes.
func validID(id string) bool {
	if len(id) != 2*idBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// sanitize drops non-printable characters and cuts s to n runes.
func sanitize(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if n == 0 {
			break
		}
		if unicode.IsPrint(r) && r != utf8.RuneError {
			b.WriteRune(r)
			n--
		}
	}
	return strings.TrimSpace(b.String())
}
