package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/gateway"
)

const whoamiSummary = `Show who the credential belongs to, checked live against the gateway
(GET /api/me): email, gateway, the credential's scopes and expiry, and where
the credential comes from (LLMGATE_TOKEN or the credentials file).

Exits 1 when not signed in or when the gateway refuses the credential.

Examples:
  llmgate whoami
  llmgate whoami --server https://llm.example.com
  llmgate whoami --json | jq -r .email`

// whoami is the --json output of `llmgate whoami`.
type whoami struct {
	Server    string    `json:"server"`
	Email     string    `json:"email"`
	Name      string    `json:"name,omitempty"`
	Admin     bool      `json:"admin"`
	Groups    []string  `json:"groups"`
	TokenID   string    `json:"token_id,omitempty"`
	TokenName string    `json:"token_name,omitempty"`
	Scopes    []string  `json:"scopes"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Source    string    `json:"source"`
}

func cmdWhoami(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("whoami", whoamiSummary, stderr)
	server := fs.String("server", "", "gateway URL (default: LLMGATE_SERVER, else the one you signed in to)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	a, err := c.resolve(*server)
	if err != nil {
		return c.fail("whoami", err)
	}
	w, err := c.whoami(ctx, a)
	if err != nil {
		return c.fail("whoami", err)
	}
	if *asJSON {
		return c.printJSON(w)
	}
	who := w.Email
	if w.Name != "" && w.Name != w.Email {
		who += " (" + w.Name + ")"
	}
	fmt.Fprintf(stdout, "Signed in to %s as %s\n", w.Server, who)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	cred := w.TokenID
	if w.TokenName != "" {
		cred = fmt.Sprintf("%s (id %s)", w.TokenName, w.TokenID)
	}
	fmt.Fprintf(tw, "  credential\t%s\n", cred)
	fmt.Fprintf(tw, "  from\t%s\n", w.Source)
	fmt.Fprintf(tw, "  scopes\t%s\n", strings.Join(w.Scopes, " "))
	if !w.ExpiresAt.IsZero() {
		fmt.Fprintf(tw, "  expires\t%s (%s)\n", formatTime(w.ExpiresAt), relative(c.now(), w.ExpiresAt))
	}
	if len(w.Groups) > 0 {
		fmt.Fprintf(tw, "  groups\t%s\n", strings.Join(w.Groups, ", "))
	}
	if w.Admin {
		fmt.Fprintf(tw, "  admin\tyes\n")
	}
	tw.Flush()
	return exitOK
}

// whoami asks the gateway who a's credential belongs to, and what it may do.
func (c *cli) whoami(ctx context.Context, a *auth) (*whoami, error) {
	var me gateway.Me
	if err := c.call(ctx, a, http.MethodGet, "/api/me", nil, &me); err != nil {
		return nil, err
	}
	w := &whoami{Server: a.server, Email: me.Email, Name: me.Name, Admin: me.Admin, Groups: me.Groups, TokenID: me.TokenID, Source: a.source}
	if w.Groups == nil {
		w.Groups = []string{}
	}
	if me.TokenExpiresAt != nil {
		w.ExpiresAt = *me.TokenExpiresAt
	}
	if me.TokenID != "" {
		var t gateway.TokenView
		if err := c.call(ctx, a, http.MethodGet, "/api/tokens/"+url.PathEscape(me.TokenID), nil, &t); err == nil {
			w.TokenName, w.Scopes = t.Name, t.Scopes
		}
	}
	if w.Scopes == nil && a.cred != nil && a.cred.Scope != "" {
		w.Scopes = strings.Fields(a.cred.Scope)
	}
	if w.Scopes == nil {
		w.Scopes = []string{}
	}
	return w, nil
}

// printJSON writes v indented to stdout.
func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "llmgate: %v\n", err)
		return exitFailure
	}
	return exitOK
}
