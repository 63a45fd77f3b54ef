package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/llmgate/llmgate/internal/audit"
)

// refuse answers a proxied call that will not reach the upstream, in the
// shape of its API family (SPEC §4). 401 and 403 carry x-should-retry:
// false, or the OpenAI and Anthropic SDKs retry a revoked token for minutes.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, c *call, status int, typ, code, msg, reason string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized || status == http.StatusForbidden || code == "budget_exhausted" ||
		(c.anthropic && code == "model_not_allowed") {
		h.Set("X-Should-Retry", "false")
	}
	w.WriteHeader(status)
	var body []byte
	if c.anthropic {
		body, _ = json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
	} else {
		body, _ = json.Marshal(map[string]any{"error": map[string]string{"message": msg, "type": typ, "code": code}})
	}
	w.Write(body)
	c.status = status
	s.metrics.refusals.WithLabelValues(code).Inc()
	if status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests {
		e := audit.Event{Type: audit.TypeAPIRefused, IP: c.clientIP, Status: status, Reason: reason,
			Details: map[string]string{"code": code, "path": r.URL.Path}}
		if c.claims != nil {
			e.Email, e.TokenID = c.claims.Email, c.claims.ID
		}
		s.audit.Record(e)
		s.metrics.proxied.WithLabelValues(c.upName(), strconv.Itoa(status)).Inc()
		return // the audit line is the log line
	}
	s.logCall(r, c, reason)
}

// logCall writes the one log line of a proxied call that did not stream
// through (refused, failed or abandoned).
func (s *Server) logCall(r *http.Request, c *call, reason string) {
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", c.status, "upstream", c.upName(),
		"duration_us", time.Since(c.start).Microseconds(), "client_ip", c.clientIP, "reason", reason}
	if c.claims != nil {
		attrs = append(attrs, "user", c.claims.Email, "token_id", c.claims.ID)
	}
	s.metrics.proxied.WithLabelValues(c.upName(), strconv.Itoa(c.status)).Inc()
	s.log.Info("api refused", attrs...)
}

// securityHeadersAPI sets the headers every proxied answer carries.
func (s *Server) securityHeadersAPI(w http.ResponseWriter) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// trusted reports whether r's peer is one of LLMGATE_TRUSTED_PROXIES.
func (s *Server) trusted(r *http.Request) bool {
	if len(s.cfg.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the caller's address: the peer, or — only when the peer is
// a trusted proxy — the nearest untrusted address of X-Forwarded-For, or
// X-Real-IP.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !s.trusted(r) {
		return host
	}
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		parts := strings.Split(strings.Join(xff, ","), ",")
		for i := len(parts) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
			if err != nil {
				break
			}
			a = a.Unmap()
			if !s.trustedAddr(a) || i == 0 {
				return a.String()
			}
		}
	}
	if xr := strings.TrimSpace(r.Header.Get("X-Real-IP")); xr != "" {
		if a, err := netip.ParseAddr(xr); err == nil {
			return a.Unmap().String()
		}
	}
	return host
}

func (s *Server) trustedAddr(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkLimits applies the per-token and per-person request rates and the
// spend caps. Only calls whose token has a rate or a budget, or whose
// person has a rate, pay a Redis round trip.
func (s *Server) checkLimits(w http.ResponseWriter, r *http.Request, c *call) bool {
	cl := c.claims
	type lim struct {
		key, what string
		rpm       int
	}
	var lims [2]lim
	n := 0
	if cl.RPM > 0 {
		lims[n] = lim{"token:" + cl.ID, "this token", cl.RPM}
		n++
	}
	if s.proxyCfg.UserRPM > 0 {
		lims[n] = lim{"user:" + cl.Email, "your account", s.proxyCfg.UserRPM}
		n++
	}
	for _, l := range lims[:n] {
		res, err := s.limiter.Allow(r.Context(), s.rateKeyPrefix+l.key, redis_rate.PerMinute(l.rpm))
		if err != nil {
			if s.proxyCfg.FailOpen {
				continue
			}
			w.Header().Set("Retry-After", "5")
			s.refuse(w, r, c, http.StatusServiceUnavailable, "overloaded_error", "store_unavailable",
				"the gateway cannot reach its store; try again shortly", "rate limit store: "+err.Error())
			return false
		}
		h := w.Header()
		h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(l.rpm))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(res.Remaining))
		h.Set("X-Ratelimit-Reset-Requests", fmt.Sprintf("%.3fs", res.ResetAfter.Seconds()))
		if res.Allowed == 0 {
			retry := int(math.Ceil(res.RetryAfter.Seconds()))
			h.Set("Retry-After", strconv.Itoa(max(retry, 1)))
			s.refuse(w, r, c, http.StatusTooManyRequests, "rate_limit_error", "rate_limited",
				fmt.Sprintf("rate limit of %d requests per minute for %s reached; retry in %d s", l.rpm, l.what, max(retry, 1)), "rate limited")
			return false
		}
	}
	return s.checkSpend(w, r, c)
}

// filterModels rewrites a model list so it shows only what the caller may
// call. The list is small, so it is read whole.
func filterModels(resp *http.Response, allows func(model string) bool) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	var list map[string]json.RawMessage
	var data []map[string]any
	if err == nil && json.Unmarshal(raw, &list) == nil && json.Unmarshal(list["data"], &data) == nil {
		kept := data[:0]
		for _, m := range data {
			if id, _ := m["id"].(string); allows(id) {
				kept = append(kept, m)
			}
		}
		list["data"], _ = json.Marshal(kept)
		if out, err := json.Marshal(list); err == nil {
			raw = out
		}
	}
	resp.Body = io.NopCloser(strings.NewReader(string(raw)))
	resp.ContentLength = int64(len(raw))
	resp.Header.Set("Content-Length", strconv.Itoa(len(raw)))
}
