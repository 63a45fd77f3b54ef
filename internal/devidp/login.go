package devidp

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The login UI: op redirects the browser to loginPath with the auth request
// ID; the form posts back to loginPath; success redirects to op's callback,
// which redirects to the client with the code.
const (
	loginPath     = "/login"
	loggedOutPath = "/logged-out"

	formUsername      = "username"
	formPassword      = "password"
	formAuthRequestID = "authRequestID"
)

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · llmgate dev identity provider</title>
<style>
body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#222}
label{display:block;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1rem}
.error{color:#a00;font-weight:bold}
.note{color:#666;font-size:.85rem}
</style>
</head>
<body>
{{end}}

{{define "login"}}{{template "head" "Sign in"}}
<h1>Sign in</h1>
<p>to continue to <b>{{.ClientID}}</b></p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
<label for="username">Email</label>
<input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="note">llmgate development identity provider. Not for production use.</p>
</body>
</html>
{{end}}

{{define "message"}}{{template "head" .Title}}
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
</body>
</html>
{{end}}
`))

type loginView struct {
	ClientID      string
	AuthRequestID string
	Username      string
	Error         string
}

type messageView struct {
	Title, Message string
}

// loginPage shows the form, or completes the request at once when the
// browser session already signed someone in.
func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get(formAuthRequestID)
	req, err := p.store.authRequest(id)
	if err != nil {
		p.renderUnknownRequest(w)
		return
	}
	if id := sessionFromContext(r.Context()); id != "" {
		if sess, ok := p.store.session(id); ok && !mustSignInAgain(req, sess) {
			p.finishLogin(w, r, req, id, "browser session")
			return
		}
	}
	if req.hasPrompt(oidc.PromptNone) {
		// op redirects the error to the client's redirect_uri.
		op.AuthRequestError(w, r, req, oidc.ErrLoginRequired(), p.op)
		return
	}
	p.renderLogin(w, http.StatusOK, loginView{ClientID: req.clientID, AuthRequestID: id, Username: req.loginHint})
}

// mustSignInAgain reports whether req asks for a fresher sign-in than sess
// (prompt=login sets max_age to 0).
func mustSignInAgain(req *authRequest, sess browserSession) bool {
	if req.hasPrompt(oidc.PromptLogin) {
		return true
	}
	return req.maxAge != nil && !sess.authTime.Add(*req.maxAge).After(time.Now())
}

// loginSubmit checks the posted credentials.
func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get(formAuthRequestID)
	email := r.PostForm.Get(formUsername)
	req, err := p.store.authRequest(id)
	if err != nil {
		p.renderUnknownRequest(w)
		return
	}
	subject, err := p.store.checkPassword(email, r.PostForm.Get(formPassword))
	view := loginView{ClientID: req.clientID, AuthRequestID: id, Username: email}
	switch {
	case errors.Is(err, ErrUserDisabled):
		p.log.InfoContext(r.Context(), "devidp: login refused", "email", email, "client_id", req.clientID, "reason", "user disabled")
		view.Error = "This account is disabled. Ask an administrator to enable it."
		p.renderLogin(w, http.StatusForbidden, view)
		return
	case err != nil:
		p.log.InfoContext(r.Context(), "devidp: login refused", "email", email, "client_id", req.clientID, "reason", "wrong email or password")
		view.Error = "Wrong email or password."
		p.renderLogin(w, http.StatusUnauthorized, view)
		return
	}
	sessionID := p.store.newSession(subject, time.Now())
	http.SetCookie(w, &http.Cookie{
		Name:     p.cookieName,
		Value:    sessionID,
		Path:     "/",
		MaxAge:   int(browserSessionTTL.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	p.finishLogin(w, r, req, sessionID, "password")
}

// finishLogin completes req for the person of the browser session sessionID
// and sends the browser to op's callback, which redirects to the client with
// the code.
func (p *Provider) finishLogin(w http.ResponseWriter, r *http.Request, req *authRequest, sessionID, how string) {
	subject, err := p.store.completeAuthRequest(req.id, sessionID)
	if err != nil {
		p.renderUnknownRequest(w)
		return
	}
	p.log.InfoContext(r.Context(), "devidp: login", "subject", subject, "client_id", req.clientID, "method", how)
	callback := op.AuthCallbackURL(p.op)(op.ContextWithIssuer(r.Context(), p.issuer), req.id)
	http.Redirect(w, r, callback, http.StatusSeeOther)
}

func (p *Provider) loggedOut(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "message", messageView{
		Title:   "Signed out",
		Message: "You have been signed out of the llmgate development identity provider.",
	})
}

func (p *Provider) renderUnknownRequest(w http.ResponseWriter) {
	p.render(w, http.StatusBadRequest, "message", messageView{
		Title:   "Sign-in request expired",
		Message: "This sign-in request is unknown or has expired. Go back to the application and sign in again.",
	})
}

func (p *Provider) renderLogin(w http.ResponseWriter, status int, v loginView) {
	p.render(w, status, "login", v)
}

func (p *Provider) render(w http.ResponseWriter, status int, name string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		p.log.Error("devidp: render page", "page", name, "error", err)
	}
}

type sessionKey struct{}

// withBrowserSession puts the browser session ID from the cookie into the
// request context, where the login page and end_session find it.
func (p *Provider) withBrowserSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(p.cookieName); err == nil && c.Value != "" {
			r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, c.Value))
		}
		next.ServeHTTP(w, r)
	})
}

func sessionFromContext(ctx context.Context) string {
	id, _ := ctx.Value(sessionKey{}).(string)
	return id
}
