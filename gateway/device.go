package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-redis/redis_rate/v10"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/grants"
	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

// The device sign-in (RFC 8628): `llmgate login --device` and Claude
// Code's /login. The device asks for a code at POST /api/device/code, the
// person approves it at /device after SSO, and the device polls the token
// endpoint until then.

// surfaceClaudeCode is the surface Claude Code names itself with.
const surfaceClaudeCode = "claude_code"

// deviceCodesPerMinute bounds the device sign-ins one client address may
// start per minute, so that no one fills Redis with pending grants.
const deviceCodesPerMinute = 60

// deviceCodeResponse is the answer to a device authorization request.
type deviceCodeResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// handleDeviceCode starts a device sign-in: POST /api/device/code (and
// /oauth/device_authorization). The form body may be empty; unknown
// fields are ignored. Recognised: client_id ("llmgate-cli", the default,
// or "claude-code"), surface ("claude_code": a Claude Code sign-in), name
// (the CLI's token name) and host (the CLI's host name).
func (s *Server) handleDeviceCode(c *gin.Context) {
	form, ok := s.parseOAuthForm(c)
	if !ok {
		return
	}
	clientID, surface := first(form, "client_id"), first(form, "surface")
	switch {
	case surface == surfaceClaudeCode || clientID == tokens.ClientClaudeCode:
		clientID, surface = tokens.ClientClaudeCode, surfaceClaudeCode
	case clientID == "" || clientID == tokens.ClientCLI:
		clientID, surface = tokens.ClientCLI, ""
	default:
		s.oauthFail(c, oauthRefuse(http.StatusUnauthorized, "invalid_client",
			"unknown client_id "+strconv.Quote(truncate(clientID, 64))+": this gateway signs in llmgate-cli and claude-code"))
		return
	}
	host, ok := cleanText(first(form, "host"), maxHostLen)
	if !ok {
		s.oauthFail(c, oauthRefuse(http.StatusBadRequest, "invalid_request", "host is too long or holds control characters"))
		return
	}
	name, ok := cleanText(first(form, "name"), maxNameLen)
	if !ok {
		s.oauthFail(c, oauthRefuse(http.StatusBadRequest, "invalid_request", "name is too long or holds control characters"))
		return
	}
	res, err := s.limiter.Allow(c.Request.Context(), s.rateKeyPrefix+"device_code:"+c.ClientIP(), redis_rate.PerMinute(deviceCodesPerMinute))
	if err != nil {
		s.oauthFail(c, oauthUnavailable("rate-limit device codes", err))
		return
	}
	if res.Allowed == 0 {
		c.Header("Retry-After", strconv.Itoa(int(res.RetryAfter/time.Second)+1))
		s.oauthFail(c, oauthRefuse(http.StatusTooManyRequests, "slow_down",
			"too many sign-ins were started from this address in the last minute; try again shortly"))
		return
	}
	ua, _ := cleanText(truncateRunes(c.Request.UserAgent(), 200), 200)
	dc, d, err := s.grants.NewDevice(c.Request.Context(), grants.Device{
		ClientID: clientID, Surface: surface, Name: name, Host: host, IP: c.ClientIP(), UserAgent: ua,
	})
	if err != nil {
		s.oauthFail(c, oauthUnavailable("start device sign-in", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeDeviceAuthorize, IP: c.ClientIP(),
		Details: map[string]string{"client_id": clientID, "surface": surface, "host": host, "user_agent": ua}})
	base := s.cfg.PublicURL.String()
	oauthJSON(c, deviceCodeResponse{
		DeviceCode:              dc,
		UserCode:                grants.FormatUserCode(d.UserCode),
		VerificationURI:         base + "/device",
		VerificationURIComplete: base + "/device?user_code=" + url.QueryEscape(d.UserCode),
		ExpiresIn:               int64(s.grants.DeviceTTL() / time.Second),
		Interval:                int64(s.grants.Interval() / time.Second),
	})
}

// clientLabel says on pages what is asking.
func clientLabel(d grants.Device) string {
	if d.ClientID == tokens.ClientClaudeCode {
		return "Claude Code"
	}
	return "llmgate CLI"
}

// devicePage is the device page for d in mode.
func (s *Server) devicePage(c *gin.Context, mode string, d grants.Device) ui.DevicePage {
	p := ui.DevicePage{
		Layout: ui.Layout{Title: "Connect a device", User: currentUser(c), CSRFToken: s.csrfToken(c)},
		Mode:   mode,
	}
	if d.UserCode != "" {
		p.UserCode = grants.FormatUserCode(d.UserCode)
		p.Client = clientLabel(d)
		p.Host, p.IP, p.UserAgent, p.Requested, p.Expires = d.Host, d.IP, d.UserAgent, d.CreatedAt, d.ExpiresAt
		if d.ClientID == tokens.ClientCLI {
			p.TokenName = cliTokenName(d.Name, d.Host)
		}
	}
	return p
}

// renderDevice renders the device page.
func (s *Server) renderDevice(c *gin.Context, status int, p ui.DevicePage) {
	c.Header("Cache-Control", "no-store")
	s.render(c, status, p)
}

// enterAgain renders the code form with what was wrong.
func (s *Server) enterAgain(c *gin.Context, status int, typed, msg string) {
	p := s.devicePage(c, "enter", grants.Device{})
	p.Error = msg
	if len(typed) <= 20 {
		p.UserCode = typed
	}
	s.renderDevice(c, status, p)
}

// lookupError answers a code that could not be used, counting wrong codes
// against the session. It reports whether it answered.
func (s *Server) lookupError(c *gin.Context, typed string, err error) bool {
	ctx := c.Request.Context()
	switch {
	case err == nil:
		return false
	case errors.Is(err, grants.ErrNotFound):
		if err := s.grants.WrongCode(ctx, currentSession(c).Handle); err != nil {
			s.fail(c, unavailable("count wrong user code", err))
			return true
		}
		s.enterAgain(c, http.StatusNotFound, typed, "No sign-in is waiting for the code "+typed+". Check the code shown on your device and type it again.")
	case errors.Is(err, grants.ErrExpired):
		s.enterAgain(c, http.StatusGone, typed, "The code "+typed+" has expired. Start the sign-in again on your device.")
	case errors.Is(err, grants.ErrDecided):
		s.enterAgain(c, http.StatusConflict, typed, "The code "+typed+" was already approved or denied. Start the sign-in again on your device if it did not work.")
	default:
		s.fail(c, unavailable("look up user code", err))
	}
	return true
}

// limited answers "too many attempts" when the session has entered too
// many wrong codes. It reports whether it answered.
func (s *Server) limited(c *gin.Context) bool {
	limited, err := s.grants.WrongCodeLimited(c.Request.Context(), currentSession(c).Handle)
	if err != nil {
		s.fail(c, unavailable("count wrong user codes", err))
		return true
	}
	if limited {
		c.Header("Retry-After", "60")
		s.renderDevice(c, http.StatusTooManyRequests, s.devicePage(c, "limited", grants.Device{}))
		return true
	}
	return false
}

// handleDevice is GET /device[?user_code=]: the form to type a code, or
// the approval page of the code given. It never approves by itself.
func (s *Server) handleDevice(c *gin.Context) {
	typed := c.Query("user_code")
	if typed == "" {
		s.renderDevice(c, http.StatusOK, s.devicePage(c, "enter", grants.Device{}))
		return
	}
	if s.limited(c) {
		return
	}
	d, err := s.grants.Lookup(c.Request.Context(), typed)
	if s.lookupError(c, typed, err) {
		return
	}
	if d.Status != grants.StatusPending {
		s.lookupError(c, typed, grants.ErrDecided)
		return
	}
	s.renderDevice(c, http.StatusOK, s.devicePage(c, "approve", d))
}

// handleDeviceDecide approves or denies a code: POST /device.
func (s *Server) handleDeviceDecide(c *gin.Context) {
	action := c.PostForm("action")
	if action != "approve" && action != "deny" {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_action", "choose Approve or Deny"))
		return
	}
	if s.limited(c) {
		return
	}
	typed := c.PostForm("user_code")
	sess := currentSession(c)
	d, err := s.grants.Decide(c.Request.Context(), typed, action == "approve",
		grants.Person{Email: sess.Email, Subject: sess.Subject, Name: sess.Name, Groups: sess.Groups})
	if s.lookupError(c, typed, err) {
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeDeviceApprove, Actor: sess.Email, Email: sess.Email, IP: c.ClientIP(),
		Details: map[string]string{"decision": action, "client_id": d.ClientID, "surface": d.Surface, "device_ip": d.IP, "host": d.Host}})
	mode := "approved"
	if action == "deny" {
		mode = "denied"
	}
	s.renderDevice(c, http.StatusOK, s.devicePage(c, mode, d))
}

// tokenFromDevice answers a device's poll:
// grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code.
func (s *Server) tokenFromDevice(c *gin.Context, form map[string][]string) *oauthError {
	dc := first(form, "device_code")
	if dc == "" {
		return oauthRefuse(http.StatusBadRequest, "invalid_request", "device_code is required")
	}
	ctx := c.Request.Context()
	p, err := s.grants.Poll(ctx, dc)
	if err != nil {
		return oauthUnavailable("poll device grant", err)
	}
	switch p.Outcome {
	case grants.PollPending:
		return oauthRefuse(http.StatusBadRequest, "authorization_pending", "waiting for the code to be approved in the browser")
	case grants.PollSlowDown:
		return oauthRefuse(http.StatusBadRequest, "slow_down",
			"polled sooner than the interval; wait "+strconv.Itoa(int(p.Interval/time.Second))+" seconds between polls")
	case grants.PollDenied:
		return s.deny(c, "", "device sign-in denied in the browser",
			oauthRefuse(http.StatusBadRequest, "access_denied", "the sign-in was denied in the browser"))
	case grants.PollExpired:
		return oauthRefuse(http.StatusBadRequest, "expired_token", "the code expired before it was approved; start the sign-in again")
	case grants.PollApproved:
	default:
		return oauthRefuse(http.StatusBadRequest, "invalid_grant", "the device code is unknown or already used; start the sign-in again")
	}
	d, who := p.Device, *p.Device.Approver
	var e *oauthError
	if d.ClientID == tokens.ClientClaudeCode {
		e = s.startClaudeCode(c, who, d)
	} else {
		e = s.issueCLI(c, who, cliTokenName(d.Name, d.Host), "device")
	}
	if e != nil && e.Status >= 500 {
		if err := s.grants.Release(ctx, dc); err != nil {
			s.log.Warn("release device grant after a failed issue", "err", err)
		}
		return e
	}
	if err := s.grants.Finish(ctx, dc, d.UserCode); err != nil {
		s.log.Warn("delete used device grant; it expires by itself", "err", err)
	}
	return e
}
