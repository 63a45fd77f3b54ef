package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	// outage is how long Redis stays down.
	outage = 3 * time.Second
	// recoveryBudget: after Redis is back, every replica serves normally
	// again within this, without being restarted.
	recoveryBudget = 5 * time.Second
	// hang: no call may take this long while Redis is down or slow (the
	// Redis client's own timeouts are 1-2 s).
	hang = 4 * time.Second
)

// readyz returns r's /readyz status (0 when it cannot be reached).
func (st *stack) readyz(r *replica) int {
	resp, err := st.client.Get(r.url + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReadyz polls every replica's /readyz until it answers want.
func (st *stack) waitReadyz(t *testing.T, want int, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	d := st.waitRefused(t, t0, "/readyz", want, st.readyz)
	return d.pct(100)
}

// TestRedisOutageFailClosed kills Redis under steady load with
// LLMGATE_FAILSAFE=closed: API calls get 503 with Retry-After while it is
// down (never a 500, never a hang), /readyz is 503, and once Redis is back
// every replica serves again within 5 s without a restart, with every
// session, token and signing key still there (append-only file).
func TestRedisOutageFailClosed(t *testing.T) {
	st := newStack(t, options{replicas: 2, failsafe: "closed"})
	bob := st.signIn("bob@example.com")
	tok := st.mint(bob, "before-outage")
	unused := st.mint(bob, "never-used-before-outage")
	st.mustWork(tok.raw)

	l := st.startLoad(8, tok.raw, bob)
	time.Sleep(time.Second)
	tKill := time.Now()
	st.redis.Stop()
	readyDown := st.waitReadyz(t, http.StatusServiceUnavailable, 5*time.Second)
	// A token nobody used yet cannot be checked against the store.
	for i, r := range st.replicas {
		if status, h, body := st.call(r, unused.raw); status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("replica %d, first-seen token during the outage: %d Retry-After=%q %s, want 503 with Retry-After", i, status, h.Get("Retry-After"), body)
		}
	}
	// A replica (re)started while Redis is down waits for it and comes up
	// by itself once it is back.
	late := st.startReplica(freeAddr(t))
	time.Sleep(time.Until(tKill.Add(outage)))
	tBack := time.Now()
	st.redis.Start()
	// A revocation made the moment Redis is back, while the replicas may
	// still be reconnecting, reaches every one of them.
	var revokedAt time.Time
	revokeMe := token{}
	for time.Since(tBack) < recoveryBudget {
		if revokeMe.id == "" {
			status, body := st.as(bob, st.replicas[0], http.MethodPost, "/api/tokens", `{"name":"revoked-at-recovery","ttl":"1d"}`)
			var tk struct{ ID, Token string }
			if status != http.StatusCreated || decode(body, &tk) != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			revokeMe = token{id: tk.ID, raw: tk.Token}
		}
		revokedAt = time.Now()
		if status, _ := st.as(bob, st.replicas[0], http.MethodDelete, "/api/tokens/"+revokeMe.id, ""); status == http.StatusOK {
			break
		}
		revokedAt = time.Time{}
		time.Sleep(20 * time.Millisecond)
	}
	if revokedAt.IsZero() {
		t.Fatalf("could not mint and revoke a token within %v of Redis coming back", recoveryBudget)
	}
	atRecovery := st.waitRefused(t, revokedAt, "token revoked as Redis came back", http.StatusUnauthorized, st.tokenProbe(revokeMe.raw))
	readyUp := st.waitReadyz(t, http.StatusOK, recoveryBudget)
	st.waitReady(late, 2*recoveryBudget)
	time.Sleep(recoveryBudget + time.Second)
	rs := l.finish()
	t.Logf("/readyz 503 on every replica %v after Redis was killed; 200 again %v after it was back", readyDown, readyUp)
	t.Logf("a token revoked %v after Redis was back was refused by every replica after %v", revokedAt.Sub(tBack).Round(time.Millisecond), atRecovery.pct(100).Round(time.Millisecond))
	if atRecovery.pct(100) > propagationBudget {
		t.Errorf("a revocation made as Redis came back took %v to reach every replica, want at most %v", atRecovery.pct(100), propagationBudget)
	}
	if status, _, body := st.call(late, tok.raw); status != http.StatusOK {
		t.Errorf("replica started during the outage: %d %s, want 200 once Redis is back", status, firstLine(body))
	}
	t.Logf("calls: %s", summary(rs))

	var lastBad time.Time
	var during, during503 int
	slowest := map[string]time.Duration{}
	for _, r := range rs {
		if r.status == http.StatusServiceUnavailable {
			slowest[r.kind] = max(slowest[r.kind], r.took)
		}
		switch {
		case r.status == 0:
			t.Errorf("%s call at +%v on replica %d: transport error %s", r.kind, r.at.Sub(tKill), r.replica, r.err)
		case r.status != http.StatusOK && r.status != http.StatusServiceUnavailable:
			t.Errorf("%s call at +%v on replica %d: %d %s, want 200 or 503", r.kind, r.at.Sub(tKill), r.replica, r.status, r.err)
		case r.status == http.StatusServiceUnavailable && r.kind == "api" && r.retryAfter == "":
			t.Errorf("503 at +%v on replica %d without Retry-After", r.at.Sub(tKill), r.replica)
		}
		if r.took > hang {
			t.Errorf("%s call at +%v on replica %d took %v (a hang)", r.kind, r.at.Sub(tKill), r.replica, r.took)
		}
		if r.at.After(tKill.Add(readyDown)) && r.at.Add(r.took).Before(tBack) && r.kind == "api" {
			during++
			if r.status == http.StatusServiceUnavailable {
				during503++
			}
		}
		if r.status != http.StatusOK && r.at.After(tKill) {
			lastBad = r.at
		}
	}
	t.Logf("slowest 503: API %v, session API %v", slowest["api"].Round(time.Millisecond), slowest["session"].Round(time.Millisecond))
	if during == 0 || during503 != during {
		t.Errorf("API calls while Redis was down (after /readyz said so): %d of %d were 503, want all", during503, during)
	}
	recovered := lastBad.Sub(tBack)
	t.Logf("recovery: last refused call %v after Redis was back (budget %v)", recovered.Round(time.Millisecond), recoveryBudget)
	if recovered > recoveryBudget {
		t.Errorf("calls were still refused %v after Redis was back, want at most %v", recovered, recoveryBudget)
	}

	// Nothing was lost: the session, the token records, the signing keys
	// (a replica started now reads them from Redis and verifies both tokens
	// from their records).
	status, body := st.as(bob, st.replicas[1], http.MethodGet, "/api/tokens", "")
	if status != http.StatusOK || !strings.Contains(body, "before-outage") || !strings.Contains(body, "never-used-before-outage") {
		t.Errorf("GET /api/tokens after the outage with the session from before: %d %s, want both tokens listed", status, body)
	}
	old := st.replicas[1]
	old.cmd.Process.Kill()
	<-old.done
	st.replicas[1] = st.startReplica(old.addr)
	st.waitReady(st.replicas[1], 30*time.Second)
	st.mustWork(tok.raw)
	st.mustWork(unused.raw)
}

// TestRedisOutageFailOpen kills Redis with LLMGATE_FAILSAFE=open: signed
// tokens keep working on every replica (those seen before and those not),
// and tokens revoked before the outage stay refused.
func TestRedisOutageFailOpen(t *testing.T) {
	st := newStack(t, options{replicas: 2, failsafe: "open"})
	bob := st.signIn("bob@example.com")
	seen := st.mint(bob, "seen")
	unseen := st.mint(bob, "unseen")
	revoked := st.mint(bob, "revoked")
	st.mustWork(seen.raw)
	st.mustWork(revoked.raw)
	t0 := time.Now()
	if status, body := st.as(bob, st.replicas[0], http.MethodDelete, "/api/tokens/"+revoked.id, ""); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	st.waitRefused(t, t0, "revoked token", http.StatusUnauthorized, st.tokenProbe(revoked.raw))

	l := st.startLoad(6, seen.raw, nil)
	time.Sleep(500 * time.Millisecond)
	tKill := time.Now()
	st.redis.Stop()
	st.waitReadyz(t, http.StatusServiceUnavailable, 5*time.Second)
	for i, r := range st.replicas {
		for _, c := range []struct {
			name string
			tok  token
			want int
		}{{"seen token", seen, http.StatusOK}, {"token never used before", unseen, http.StatusOK}, {"token revoked before the outage", revoked, http.StatusUnauthorized}} {
			if status, _, body := st.call(r, c.tok.raw); status != c.want {
				t.Errorf("replica %d during the outage, %s: %d %s, want %d", i, c.name, status, firstLine(body), c.want)
			}
		}
	}
	time.Sleep(time.Until(tKill.Add(outage)))
	st.redis.Start()
	st.waitReadyz(t, http.StatusOK, recoveryBudget)
	rs := l.finish()
	t.Logf("calls: %s", summary(rs))
	for _, r := range rs {
		if r.status != http.StatusOK || r.took > hang {
			t.Errorf("call at +%v on replica %d: %d in %v %s, want 200 throughout with failsafe open", r.at.Sub(tKill), r.replica, r.status, r.took, r.err)
		}
	}
	st.mustWork(unseen.raw)
	for i, r := range st.replicas {
		if status, _, _ := st.call(r, revoked.raw); status != http.StatusUnauthorized {
			t.Errorf("replica %d after the outage, revoked token: %d, want 401", i, status)
		}
	}
}
