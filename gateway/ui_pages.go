package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/ui"
)

// flashCookie carries the outcome of a form's action to the page the
// browser is sent back to (POST, redirect, GET). It is bound to the
// session by a MAC, so nobody can make the gateway show words of theirs.
const flashCookie = "llmgate-flash"

// layout is the frame of a signed-in page: who, the CSRF token, the
// navigation entry to mark, and the flash message left by the last action
// (read once).
func (s *Server) layout(c *gin.Context, title, section string) ui.Layout {
	c.Header("Cache-Control", "no-store")
	l := ui.Layout{Title: title, User: currentUser(c), CSRFToken: s.csrfToken(c), Section: section, Flash: s.takeFlash(c)}
	if rest, ok := strings.CutPrefix(l.Flash, "!"); ok {
		l.Flash, l.FlashError = rest, true
	}
	return l
}

func (s *Server) flashMAC(sessionID, msg string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("flash\x00" + sessionID + "\x00" + msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// doneTo ends a form's action: a 303 to back (a local path, else "/")
// with msg shown there once; a msg starting with "!" is shown as an error.
func (s *Server) doneTo(c *gin.Context, back, msg string) {
	if sess := currentSession(c); sess != nil && msg != "" {
		v := base64.RawURLEncoding.EncodeToString([]byte(msg)) + "." + s.flashMAC(sess.ID, msg)
		s.setCookie(c, flashCookie, v, s.cfg.Now().Add(5*time.Minute))
	}
	c.Redirect(http.StatusSeeOther, safeRedirect(back))
}

// takeFlash reads and clears the flash message, "" when there is none or
// it is not this session's.
func (s *Server) takeFlash(c *gin.Context) string {
	ck, err := c.Request.Cookie(flashCookie)
	if err != nil || ck.Value == "" {
		return ""
	}
	s.clearCookie(c, flashCookie)
	sess := currentSession(c)
	enc, mac, ok := strings.Cut(ck.Value, ".")
	if sess == nil || !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || !hmac.Equal([]byte(mac), []byte(s.flashMAC(sess.ID, string(raw)))) {
		return ""
	}
	return string(raw)
}

// backTo is the page a form asks to return to (its "back" field), when it
// is one of the gateway's own pages under prefix; else fallback.
func backTo(c *gin.Context, prefix, fallback string) string {
	b := c.PostForm("back")
	if isLocalPath(b) && strings.HasPrefix(b, prefix) {
		return b
	}
	return fallback
}
