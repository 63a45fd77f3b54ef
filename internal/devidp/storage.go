package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
	_ op.CanTerminateSessionFromRequest = (*storage)(nil)
)

// storage is the in-memory op.Storage of the provider: users, clients, auth
// requests, codes, tokens and browser sessions behind one mutex. Everything
// it hands to the op library is a copy, so the library never reads a value
// that a login is changing.
type storage struct {
	issuer string
	key    *signingKey
	now    func() time.Time

	mu            sync.Mutex
	users         map[string]*userRecord // by subject
	emails        map[string]string      // lower-case email → subject
	clients       map[string]Client
	authRequests  map[string]*authRequest
	codes         map[string]authCode
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken
	sessions      map[string]*browserSession // by cookie value

	// logout delivers back-channel logout tokens; set by Start before the
	// provider serves. It is called without mu held.
	logout func(ctx context.Context, notices []logoutNotice) error
}

type userRecord struct {
	User
	disabled bool
}

type authCode struct {
	requestID string
	expires   time.Time
}

type accessToken struct {
	id           string
	clientID     string
	subject      string
	audience     []string
	scopes       []string
	expires      time.Time
	refreshToken string
}

type refreshToken struct {
	token    string
	clientID string
	subject  string
	audience []string
	scopes   []string
	amr      []string
	authTime time.Time
	expires  time.Time
	accessID string
	sid      string
}

// browserSession is a person signed in at the provider in one browser. It
// is stored under its cookie value, which never leaves the provider; sid,
// its public name, goes into ID tokens and logout tokens.
type browserSession struct {
	subject  string
	sid      string
	authTime time.Time
	expires  time.Time
	// clients are the IDs of the clients signed into during the session,
	// which back-channel logout notifies when it ends.
	clients map[string]bool
}

func newStorage(issuer string, key *rsa.PrivateKey, users []User, clients []Client) *storage {
	s := &storage{
		issuer:        issuer,
		key:           &signingKey{id: rand.Text(), key: key},
		now:           time.Now,
		users:         map[string]*userRecord{},
		emails:        map[string]string{},
		clients:       map[string]Client{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]authCode{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		sessions:      map[string]*browserSession{},
	}
	for _, u := range users {
		u.Groups = slices.Clone(u.Groups)
		if u.Subject == "" {
			u.Subject = subjectFor(u.Email)
		}
		s.users[u.Subject] = &userRecord{User: u}
		s.emails[strings.ToLower(u.Email)] = u.Subject
	}
	for _, c := range clients {
		s.addClient(c)
	}
	return s
}

// Provider-side operations (login page, Provider methods).

func (s *storage) addClient(c Client) {
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = c
}

// setDisabled reports whether a user has that email. Disabling returns the
// back-channel logouts to deliver for the sessions it ended.
func (s *storage) setDisabled(email string, disabled bool) ([]logoutNotice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[s.emails[strings.ToLower(email)]]
	if !ok {
		return nil, false
	}
	u.disabled = disabled
	if disabled {
		return s.signOutEverywhereLocked(u.Subject), true
	}
	return nil, true
}

// signOut ends every session and token of the user with email and returns
// the back-channel logouts to deliver; ok is false for an unknown email.
func (s *storage) signOut(email string) (notices []logoutNotice, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[s.emails[strings.ToLower(email)]]
	if !ok {
		return nil, false
	}
	return s.signOutEverywhereLocked(u.Subject), true
}

// signOutEverywhereLocked ends the browser sessions of subject and deletes
// their tokens, returning the back-channel logouts for the sessions ended.
func (s *storage) signOutEverywhereLocked(subject string) []logoutNotice {
	var notices []logoutNotice
	for id, sess := range s.sessions {
		if sess.subject == subject {
			notices = append(notices, s.endSessionLocked(id)...)
		}
	}
	for id, t := range s.accessTokens {
		if t.subject == subject {
			delete(s.accessTokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if t.subject == subject {
			delete(s.refreshTokens, id)
		}
	}
	sortNotices(notices)
	return notices
}

// endSessionLocked deletes the browser session id and returns a logout for
// each client signed into during it that has a BackChannelLogoutURI.
func (s *storage) endSessionLocked(id string) []logoutNotice {
	sess, ok := s.sessions[id]
	if !ok {
		return nil
	}
	delete(s.sessions, id)
	var notices []logoutNotice
	for clientID := range sess.clients {
		if c, ok := s.clients[clientID]; ok && c.BackChannelLogoutURI != "" {
			notices = append(notices, logoutNotice{
				clientID: clientID,
				uri:      c.BackChannelLogoutURI,
				subject:  sess.subject,
				sid:      sess.sid,
			})
		}
	}
	sortNotices(notices)
	return notices
}

// sessionBySIDLocked returns the cookie value of the live session with the
// public id sid belonging to subject, or "".
func (s *storage) sessionBySIDLocked(sid, subject string) string {
	now := s.now()
	for id, sess := range s.sessions {
		if sess.sid == sid && sess.subject == subject && now.Before(sess.expires) {
			return id
		}
	}
	return ""
}

// latestSID returns the subject of the user with email and the public id of
// their most recent live browser session ("" when they have none).
func (s *storage) latestSID(email string) (subject, sid string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[s.emails[strings.ToLower(email)]]
	if !ok {
		return "", "", false
	}
	now := s.now()
	var latest *browserSession
	for _, sess := range s.sessions {
		if sess.subject == u.Subject && now.Before(sess.expires) &&
			(latest == nil || sess.authTime.After(latest.authTime)) {
			latest = sess
		}
	}
	if latest != nil {
		sid = latest.sid
	}
	return u.Subject, sid, true
}

// user returns a copy of the user with subject.
func (s *storage) user(subject string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[subject]
	if !ok {
		return User{}, false
	}
	c := u.User
	c.Groups = slices.Clone(c.Groups)
	return c, true
}

// checkPassword returns the subject of the user with email and password, or
// ErrBadCredentials, or ErrUserDisabled (only once the password is right).
func (s *storage) checkPassword(email, password string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[s.emails[strings.ToLower(strings.TrimSpace(email))]]
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) != 1 {
		return "", ErrBadCredentials
	}
	if u.disabled {
		return "", ErrUserDisabled
	}
	return u.Subject, nil
}

// activeUserLocked returns an error unless subject is a known, enabled user.
func (s *storage) activeUserLocked(subject string) (*userRecord, error) {
	u, ok := s.users[subject]
	if !ok {
		return nil, errors.New("unknown user")
	}
	if u.disabled {
		return nil, ErrUserDisabled
	}
	return u, nil
}

// completeAuthRequest marks the auth request id as signed in by the person
// of the browser session sessionID, records the client in that session and
// returns the person's subject.
func (s *storage) completeAuthRequest(id, sessionID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.authRequestLocked(id)
	if err != nil {
		return "", err
	}
	sess, ok := s.sessions[sessionID]
	if !ok || !s.now().Before(sess.expires) {
		return "", errors.New("browser session ended")
	}
	r.subject = sess.subject
	r.authTime = sess.authTime
	r.sid = sess.sid
	r.done = true
	sess.clients[r.clientID] = true
	return sess.subject, nil
}

// newSession starts a browser session and returns its cookie value.
func (s *storage) newSession(subject string, authTime time.Time) string {
	id := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[id] = &browserSession{
		subject:  subject,
		sid:      rand.Text(),
		authTime: authTime,
		expires:  s.now().Add(browserSessionTTL),
		clients:  map[string]bool{},
	}
	return id
}

// session returns the live browser session id of an enabled user, without
// its clients.
func (s *storage) session(id string) (browserSession, bool) {
	if id == "" {
		return browserSession{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok || !s.now().Before(sess.expires) {
		return browserSession{}, false
	}
	if _, err := s.activeUserLocked(sess.subject); err != nil {
		return browserSession{}, false
	}
	c := *sess
	c.clients = nil
	return c, true
}

// sweepLocked forgets everything that has expired.
func (s *storage) sweepLocked(now time.Time) {
	for id, r := range s.authRequests {
		if !now.Before(r.createdAt.Add(authRequestTTL)) {
			delete(s.authRequests, id)
		}
	}
	for c, ac := range s.codes {
		if !now.Before(ac.expires) {
			delete(s.codes, c)
		}
	}
	for id, t := range s.accessTokens {
		if !now.Before(t.expires) {
			delete(s.accessTokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if !now.Before(t.expires) {
			delete(s.refreshTokens, id)
		}
	}
	for id, sess := range s.sessions {
		if !now.Before(sess.expires) {
			delete(s.sessions, id)
		}
	}
}

// op.AuthStorage

func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)

	client, ok := s.clients[req.ClientID]
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if req.CodeChallenge != "" && req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	if client.Secret == "" && req.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE (code_challenge with S256) is required for public clients")
	}
	r := &authRequest{
		id:           rand.Text(),
		createdAt:    now,
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone([]string(req.Scopes)),
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		prompt:       slices.Clone([]string(req.Prompt)),
		loginHint:    req.LoginHint,
	}
	if req.MaxAge != nil {
		d := time.Duration(*req.MaxAge) * time.Second
		r.maxAge = &d
	}
	if req.CodeChallenge != "" {
		r.codeChallenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.authRequests[r.id] = r
	return r.clone(), nil
}

func (s *storage) authRequestLocked(id string) (*authRequest, error) {
	r, ok := s.authRequests[id]
	if !ok || !s.now().Before(r.createdAt.Add(authRequestTTL)) {
		return nil, errors.New("auth request not found or expired")
	}
	return r, nil
}

func (s *storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	r, err := s.authRequest(id)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// authRequest returns a copy of the auth request id.
func (s *storage) authRequest(id string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.authRequestLocked(id)
	if err != nil {
		return nil, err
	}
	return r.clone(), nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok := s.codes[code]
	if !ok || !s.now().Before(ac.expires) {
		return nil, errors.New("code not found or expired")
	}
	r, err := s.authRequestLocked(ac.requestID)
	if err != nil {
		return nil, err
	}
	if !r.done {
		return nil, errors.New("auth request not completed")
	}
	if _, err := s.activeUserLocked(r.subject); err != nil {
		return nil, err
	}
	return r.clone(), nil
}

func (s *storage) SaveAuthCode(ctx context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.authRequestLocked(id); err != nil {
		return err
	}
	s.codes[code] = authCode{requestID: id, expires: s.now().Add(authCodeTTL)}
	return nil
}

func (s *storage) DeleteAuthRequest(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for c, ac := range s.codes {
		if ac.requestID == id {
			delete(s.codes, c)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	clientID, _, _, _, err := tokenRequestInfo(req)
	if err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.activeUserLocked(req.GetSubject()); err != nil {
		return "", time.Time{}, oidc.ErrInvalidGrant().WithParent(err)
	}
	t := s.newAccessTokenLocked(clientID, req)
	return t.id, t.expires, nil
}

func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	clientID, authTime, amr, sid, err := tokenRequestInfo(req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if _, err := s.activeUserLocked(req.GetSubject()); err != nil {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithParent(err)
	}
	scopes := req.GetScopes()
	if currentRefreshToken != "" {
		// Rotation: the presented refresh token and its access token end here.
		old, ok := s.refreshTokens[currentRefreshToken]
		if !ok || !now.Before(old.expires) || old.clientID != clientID {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid, expired or already used")
		}
		delete(s.refreshTokens, currentRefreshToken)
		delete(s.accessTokens, old.accessID)
		scopes = old.scopes // a narrower refresh request does not narrow the grant
	}
	at := s.newAccessTokenLocked(clientID, req)
	rt := &refreshToken{
		token:    rand.Text() + rand.Text(),
		clientID: clientID,
		subject:  req.GetSubject(),
		audience: slices.Clone(req.GetAudience()),
		scopes:   slices.Clone(scopes),
		amr:      slices.Clone(amr),
		authTime: authTime,
		expires:  now.Add(refreshTokenTTL),
		accessID: at.id,
		sid:      sid,
	}
	at.refreshToken = rt.token
	s.refreshTokens[rt.token] = rt
	return at.id, rt.token, at.expires, nil
}

func (s *storage) newAccessTokenLocked(clientID string, req op.TokenRequest) *accessToken {
	t := &accessToken{
		id:       rand.Text(),
		clientID: clientID,
		subject:  req.GetSubject(),
		audience: slices.Clone(req.GetAudience()),
		scopes:   slices.Clone(req.GetScopes()),
		expires:  s.now().Add(accessTokenTTL),
	}
	s.accessTokens[t.id] = t
	return t
}

// tokenRequestInfo returns what a token needs from the requests this
// provider supports: the code flow and the refresh grant.
func tokenRequestInfo(req op.TokenRequest) (clientID string, authTime time.Time, amr []string, sid string, err error) {
	switch r := req.(type) {
	case *authRequest:
		return r.clientID, r.authTime, r.GetAMR(), r.sid, nil
	case *refreshTokenRequest:
		return r.clientID, r.authTime, r.amr, r.sid, nil
	default:
		return "", time.Time{}, nil, "", oidc.ErrUnsupportedGrantType().WithDescription("grant not supported by the development provider")
	}
}

func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[token]
	if !ok || !s.now().Before(t.expires) {
		return nil, errors.New("refresh token is invalid, expired or already used")
	}
	if _, err := s.activeUserLocked(t.subject); err != nil {
		return nil, err
	}
	return &refreshTokenRequest{
		clientID: t.clientID,
		subject:  t.subject,
		audience: slices.Clone(t.audience),
		scopes:   slices.Clone(t.scopes),
		amr:      slices.Clone(t.amr),
		authTime: t.authTime,
		sid:      t.sid,
	}, nil
}

func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.terminateLocked(userID, clientID)
	return nil
}

// terminateLocked deletes the tokens of userID issued to clientID.
func (s *storage) terminateLocked(userID, clientID string) {
	for id, t := range s.accessTokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.accessTokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.refreshTokens, id)
		}
	}
}

// TerminateSessionFromRequest ends the browser session of the request
// (RP-initiated logout) and, when an id_token_hint named the user and client,
// that user's tokens for that client. The session is the one of the cookie,
// or else the one the id_token_hint's sid names. Each client signed into
// during the session that has a BackChannelLogoutURI gets a logout token
// before the browser is redirected; a failed delivery is logged.
func (s *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	s.mu.Lock()
	id := sessionFromContext(ctx)
	if _, ok := s.sessions[id]; !ok && req.IDTokenHintClaims != nil && req.IDTokenHintClaims.SessionID != "" {
		id = s.sessionBySIDLocked(req.IDTokenHintClaims.SessionID, req.UserID)
	}
	notices := s.endSessionLocked(id)
	if req.UserID != "" && req.ClientID != "" {
		s.terminateLocked(req.UserID, req.ClientID)
	}
	s.mu.Unlock()
	if len(notices) > 0 && s.logout != nil {
		s.logout(ctx, notices) // errors are logged by the deliverer
	}
	return req.RedirectURI, nil
}

func (s *storage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.accessTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	if t, ok := s.refreshTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refreshTokens, tokenOrID)
		delete(s.accessTokens, t.accessID)
	}
	// An unknown token is already as revoked as it gets (RFC 7009).
	return nil
}

func (s *storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.subject, t.token, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

// op.OPStorage

func (s *storage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		return nil, fmt.Errorf("client %q not found", clientID)
	}
	return &opClient{c: c, issuer: s.issuer}, nil
}

func (s *storage) AuthorizeClientIDSecret(ctx context.Context, clientID, clientSecret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		return fmt.Errorf("client %q not found", clientID)
	}
	if c.Secret == "" {
		return fmt.Errorf("client %q is public and has no secret", clientID)
	}
	if subtle.ConstantTimeCompare([]byte(c.Secret), []byte(clientSecret)) != 1 {
		return errors.New("wrong client secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest does the
// work.
func (s *storage) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, userID, clientID string, scopes []string) error {
	return nil
}

// SetUserinfoFromRequest fills the claims of an ID token.
func (s *storage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.activeUserLocked(req.GetSubject())
	if err != nil {
		return oidc.ErrInvalidGrant().WithParent(err)
	}
	setUserinfo(info, u, scopes)
	// sid: the browser session the ID token was issued in, for back-channel
	// logout (only in ID tokens, never in userinfo).
	if _, _, _, sid, err := tokenRequestInfo(req); err == nil && sid != "" {
		info.AppendClaims("sid", sid)
	}
	return nil
}

// SetUserinfoFromToken answers the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.accessTokens[tokenID]
	if !ok || !s.now().Before(t.expires) || t.subject != subject {
		return errors.New("access token is invalid or expired")
	}
	u, err := s.activeUserLocked(t.subject)
	if err != nil {
		return err
	}
	setUserinfo(info, u, t.scopes)
	return nil
}

func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.accessTokens[tokenID]
	if !ok || !s.now().Before(t.expires) || t.subject != subject {
		return errors.New("access token is invalid or expired")
	}
	if t.clientID != clientID && !slices.Contains(t.audience, clientID) {
		return errors.New("access token was not issued to this client")
	}
	u, err := s.activeUserLocked(t.subject)
	if err != nil {
		return err
	}
	info := new(oidc.UserInfo)
	setUserinfo(info, u, t.scopes)
	resp.SetUserInfo(info)
	resp.Scope = slices.Clone(t.scopes)
	resp.ClientID = t.clientID
	resp.Audience = slices.Clone(t.audience)
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

// GetPrivateClaimsFromScopes is only used for JWT access tokens, which this
// provider does not issue.
func (s *storage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	return nil, errors.New("private_key_jwt and the JWT profile grant are not supported")
}

func (s *storage) ValidateJWTProfileScopes(ctx context.Context, userID string, scopes []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// setUserinfo sets the claims of u that scopes grant. The same claims go into
// ID tokens and userinfo.
func setUserinfo(info *oidc.UserInfo, u *userRecord, scopes []string) {
	info.Subject = u.Subject
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			info.Email = u.Email
			// oidc.UserInfo drops email_verified=false (omitempty), so the
			// value goes in as a plain claim, which is always marshalled.
			info.AppendClaims("email_verified", !u.EmailUnverified)
		case oidc.ScopeProfile:
			info.Name = u.Name
			info.PreferredUsername = u.Email
		case ScopeGroups:
			groups := slices.Clone(u.Groups)
			if groups == nil {
				groups = []string{}
			}
			info.AppendClaims("groups", groups)
		}
	}
}

// signingKey is the provider's RS256 key; it implements op.SigningKey.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the public half served at the JWKS endpoint; it implements
// op.Key.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }
