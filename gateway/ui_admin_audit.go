package gateway

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/ui"
)

// auditTypes are the event types the audit page offers as filters: each
// kind, and the families ending in ".".
var auditTypes = [][2]string{
	{"", "any"},
	{audit.TypeLogin, "sign-in"}, {audit.TypeLoginRefused, "sign-in refused"}, {audit.TypeLogout, "sign-out"},
	{"token.", "tokens: all"}, {audit.TypeTokenCreate, "token created"}, {audit.TypeTokenRevoke, "token revoked"},
	{audit.TypeSessionRevoke, "session ended by an admin"},
	{"user.", "people: all"}, {audit.TypeUserRevoke, "person revoked"}, {audit.TypeUserBlock, "person blocked"}, {audit.TypeUserUnblock, "person unblocked"},
	{audit.TypeAPIRefused, "API call refused"}, {audit.TypeAdminDenied, "admin page refused"},
	{audit.TypeDeprovision, "deprovisioned"}, {audit.TypeBackchannelLogout, "back-channel logout"},
}

// handleUIAdminAudit pages through the audit log, newest first:
// GET /ui/admin/audit?email=&type=&cursor=.
func (s *Server) handleUIAdminAudit(c *gin.Context) {
	email := strings.TrimSpace(c.Query("email"))
	typ := strings.TrimSpace(c.Query("type"))
	page, e := s.auditPage(c.Request.Context(), audit.Filter{Email: email, Type: typ, Cursor: c.Query("cursor"), Limit: pageSize})
	if e != nil {
		s.fail(c, e)
		return
	}
	p := ui.AdminAuditPage{Layout: s.layout(c, "Audit", "admin-audit"), Email: email, Type: typ}
	known := false
	for _, t := range auditTypes {
		p.Types = append(p.Types, ui.Choice{Value: t[0], Label: t[1], Current: t[0] == typ})
		known = known || t[0] == typ
	}
	if !known {
		p.Types = append(p.Types, ui.Choice{Value: typ, Label: typ, Current: true})
	}
	for _, ev := range page.Events {
		row := ui.AuditRow{ID: ev.ID, Time: ev.Time, Type: ev.Type, Refusal: audit.IsRefusal(ev), Actor: ev.Actor, Email: ev.Email,
			TokenID: ev.TokenID, IP: ev.IP, Status: ev.Status, Reason: ev.Reason}
		for k, v := range ev.Details {
			row.Details = append(row.Details, ui.Detail{Key: k, Value: v})
		}
		slices.SortFunc(row.Details, func(a, b ui.Detail) int { return strings.Compare(a.Key, b.Key) })
		p.Events = append(p.Events, row)
	}
	if page.Next != "" {
		p.NextURL = withQuery("/ui/admin/audit", "email", email, "type", typ, "cursor", page.Next)
	}
	if c.Query("cursor") != "" {
		p.FirstURL = withQuery("/ui/admin/audit", "email", email, "type", typ)
	}
	s.render(c, http.StatusOK, p)
}
