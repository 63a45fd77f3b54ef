package main

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRealClaudeCodeSpendCap runs the real Claude Code signed in as alice,
// whose Claude Code policy caps her at $1.00 a month while the upstream
// reports $0.05 per answer (Claude Code makes one to three calls per
// prompt: the main model, and Haiku for start-up, titles and the like).
// Past 75 % of the cap Claude Code shows its usage notice in the footer
// ("You've used 80% of your usage credits · resets Dec 1, 12am (UTC)",
// from the usage-limit headers); at the cap it shows the gateway's refusal
// verbatim — the cap, the reset and whom to ask — and does not retry it.
// Like TestRealClaudeCode it runs only with LLMGATE_TEST_CLAUDE_CODE=1.
func TestRealClaudeCodeSpendCap(t *testing.T) {
	const (
		capUSD  = 1.00
		costUSD = 0.05
	)
	cc := startClaudeCode(t, claudeCodeOptions{policyYAML: fmt.Sprintf("      monthly_budget_usd: %.2f\n", capUSD), costUSD: costUSD})
	cc.signIn()
	// The notice sits in the footer only until the next prompt: remember
	// every line the screen shows.
	rec := recordScreen(cc.tm)
	// spent is what the upstream has charged alice so far, start-up calls
	// included (every /v1/messages answer costs costUSD).
	spent := func() float64 {
		n := 0
		for _, r := range cc.up.Requests() {
			if r.Path == "/v1/messages" {
				n++
			}
		}
		return float64(n) * costUSD
	}
	// refusals counts the calls of alice's the gateway refused at the cap.
	refusals := func() int {
		n := 0
		for _, l := range strings.Split(cc.gw.stderr.String(), "\n") {
			if strings.Contains(l, `"type":"api.refused"`) && strings.Contains(l, `"email":"alice@example.com"`) &&
				strings.Contains(l, `"code":"budget_exhausted"`) {
				n++
			}
		}
		return n
	}
	reset := nextMonthUTC(time.Now())
	noticeRE := regexp.MustCompile(`You've used (\d+)% of your usage credits · resets ([^\n]*?)\s*$`)
	refusalRE := regexp.MustCompile(`spend cap reached: you have spent \$\d+\.\d\d of your monthly cap of \$1\.00 \(Claude Code policy cap\); it resets on ` +
		regexp.QuoteMeta(reset.Format("2006-01-02 15:04 UTC")) + `\. Ask an llmgate administrator to raise your cap if you need more before then`)

	var notice string
	refused := false
	for i := 1; i <= 40 && !refused; i++ {
		prompt := fmt.Sprintf("spend probe %d", i)
		cc.tm.send(prompt)
		cc.tm.keys("Enter")
		m := cc.tm.waitFor(`(?m)(you asked model [^:\n]+: ` + prompt + `\s*$)|(spend cap reached)`)
		if m[2] != "" {
			refused = true
			t.Logf("prompt %d was refused at $%.2f of $%.2f spent", i, spent(), capUSD)
			break
		}
		time.Sleep(1500 * time.Millisecond) // the footer notice renders after the answer
		for _, l := range rec.all() {
			if notice == "" && noticeRE.MatchString(l) {
				notice = strings.TrimSpace(l)
				t.Logf("after prompt %d, at $%.2f of $%.2f spent, Claude Code showed: %s", i, spent(), capUSD, notice)
				var pct int
				fmt.Sscan(noticeRE.FindStringSubmatch(notice)[1], &pct)
				if pct < 75 || pct > 99 || float64(pct) > 100*spent()/capUSD+1e-6 {
					t.Errorf("usage notice %q at $%.2f of $%.2f spent: want a percentage from 75 to 99, at most what was spent", notice, spent(), capUSD)
				}
				if at := noticeRE.FindStringSubmatch(notice)[2]; !strings.HasPrefix(at, reset.Format("Jan 2,")) {
					t.Errorf("usage notice %q: want it to reset %s", notice, reset.Format("Jan 2"))
				}
			}
		}
	}
	if !refused {
		t.Fatalf("40 prompts at $%.2f a call against a $%.2f cap were all answered ($%.2f charged)", costUSD, capUSD, spent())
	}
	for _, l := range rec.all() {
		if strings.Contains(l, "usage credits") {
			t.Logf("footer line: %s", strings.TrimSpace(l))
		}
	}
	if notice == "" {
		t.Errorf("Claude Code never showed the usage notice (You've used NN%% of your usage credits) before the cap; lines it showed:\n%s", strings.Join(rec.all(), "\n"))
	}

	// The refusal is shown verbatim (Claude Code wraps it: compare the
	// screen with its lines joined).
	screen := cc.tm.capture()
	if !refusalRE.MatchString(strings.Join(strings.Fields(screen), " ")) {
		t.Errorf("Claude Code's screen does not show the gateway's refusal verbatim (want %s); it shows:\n%s", refusalRE, screen)
	}
	for _, l := range strings.Split(screen, "\n") {
		if strings.Contains(l, "spend cap reached") || strings.Contains(l, "more before then") {
			t.Logf("refusal line: %s", strings.TrimSpace(l))
		}
	}

	// No retries: at most two refused calls per prompt (the main model
	// and Haiku run side by side), counted a few seconds after the
	// refusal showed, and nothing more reaches the upstream.
	charged := spent()
	time.Sleep(5 * time.Second)
	first := refusals()
	if first < 1 || first > 2 {
		t.Errorf("the gateway refused %d of alice's calls for one refused prompt; want 1 or 2 (no retries)", first)
	}
	cc.tm.send("spend probe after the cap")
	cc.tm.keys("Enter")
	cc.tm.waitFor(`(?s)spend probe after the cap.*spend cap reached`)
	time.Sleep(5 * time.Second)
	second := refusals() - first
	if second < 1 || second > 2 {
		t.Errorf("the gateway refused %d of alice's calls for the next prompt at the cap; want 1 or 2 (no retries)", second)
	}
	t.Logf("refused calls: %d for the first refused prompt, %d for the next", first, second)
	if got := spent(); got != charged {
		t.Errorf("prompts at the cap reached the upstream: $%.2f charged after the refusal, $%.2f before", got, charged)
	}
	rec.close()
}

// nextMonthUTC is the start of the calendar month (UTC) after t, when
// monthly caps reset.
func nextMonthUTC(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// screenRecorder remembers every line a tmux screen showed, polled every
// 200 ms, so a notice that shows for a moment is not missed.
type screenRecorder struct {
	mu    sync.Mutex
	seen  map[string]bool
	lines []string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func recordScreen(tm *tmuxScreen) *screenRecorder {
	r := &screenRecorder{seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			for _, l := range strings.Split(tm.capture(), "\n") {
				l = strings.TrimRight(l, " ")
				r.mu.Lock()
				if l != "" && !r.seen[l] {
					r.seen[l] = true
					r.lines = append(r.lines, l)
				}
				r.mu.Unlock()
			}
			select {
			case <-r.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	tm.t.Cleanup(r.close)
	return r
}

// close stops recording; it may be called more than once.
func (r *screenRecorder) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// all returns the distinct lines seen so far, in the order first seen.
func (r *screenRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}
