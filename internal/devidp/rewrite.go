package devidp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	zcrypto "github.com/zitadel/oidc/v3/pkg/crypto"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// withClaimsHook applies Config.ClaimsHook to the ID tokens that the token
// endpoint returns.
//
// zitadel builds the ID token's registered claims (iss, aud, nonce, …) itself
// and lets storage-supplied claims override none of them (see
// oidc.mergeAndMarshalClaims), so the hook cannot run inside the library.
// Instead the token endpoint's answer is buffered, the ID token's claims are
// decoded, handed to the hook, and signed again with the same key and header
// (RS256, kid, typ JWT). at_hash and c_hash stay valid because the access
// token and code do not change.
func (p *Provider) withClaimsHook(next http.Handler) http.Handler {
	if p.hook == nil {
		return next
	}
	tokenPath := p.op.TokenEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != tokenPath {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: make(http.Header), status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if rec.status == http.StatusOK {
			var err error
			if body, err = p.hookTokenResponse(body); err != nil {
				p.log.ErrorContext(r.Context(), "devidp: claims hook", "error", err)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte(`{"error":"server_error","error_description":"claims hook failed"}`))
				return
			}
		}
		rec.writeTo(w, body)
	})
}

// withDiscoveryTrimmed removes from the discovery document what zitadel's
// Provider always advertises but this provider does not offer: the device
// authorization endpoint (the storage has no device flow), the implicit and
// JWT-bearer grants, and the implicit response types (clients may use the
// code flow only). Relying parties then see what they can really use.
func (p *Provider) withDiscoveryTrimmed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != oidc.DiscoveryEndpoint {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: make(http.Header), status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if rec.status == http.StatusOK {
			if trimmed, err := trimDiscovery(body); err != nil {
				p.log.ErrorContext(r.Context(), "devidp: trim discovery document", "error", err)
			} else {
				body = trimmed
			}
		}
		rec.writeTo(w, body)
	})
}

func trimDiscovery(body []byte) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode discovery document: %w", err)
	}
	delete(doc, "device_authorization_endpoint")
	doc["grant_types_supported"] = json.RawMessage(`["authorization_code","refresh_token"]`)
	doc["response_types_supported"] = json.RawMessage(`["code"]`)
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode discovery document: %w", err)
	}
	return out, nil
}

// hookTokenResponse re-signs the id_token of a token response after the hook
// changed its claims.
func (p *Provider) hookTokenResponse(body []byte) ([]byte, error) {
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decode token response: %w", err)
	}
	raw, ok := resp["id_token"]
	if !ok {
		return body, nil
	}
	var idToken string
	if err := json.Unmarshal(raw, &idToken); err != nil {
		return nil, fmt.Errorf("decode id_token: %w", err)
	}
	claims, err := jwtClaims(idToken)
	if err != nil {
		return nil, err
	}
	// azp is the client the token was issued to; it stays right even after a
	// hook has forged aud in an earlier response.
	clientID, _ := claims["azp"].(string)
	sub, _ := claims["sub"].(string)
	user, ok := p.store.user(sub)
	if !ok {
		return nil, fmt.Errorf("id_token subject %q is no user", sub)
	}
	p.hook(clientID, user, claims)

	signer, err := op.SignerFromKey(p.store.key)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	signed, err := zcrypto.Sign(claims, signer)
	if err != nil {
		return nil, fmt.Errorf("sign id_token: %w", err)
	}
	if resp["id_token"], err = json.Marshal(signed); err != nil {
		return nil, fmt.Errorf("encode id_token: %w", err)
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode token response: %w", err)
	}
	return out, nil
}

// jwtClaims decodes the payload of a compact JWS without verifying it: the
// token was signed by this provider a moment ago.
func jwtClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("id_token is not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("decode id_token payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("decode id_token claims: %w", err)
	}
	return claims, nil
}

// bufferedResponse is an http.ResponseWriter that keeps the response.
type bufferedResponse struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if !b.wroteHeader {
		b.status, b.wroteHeader = status, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wroteHeader = true
	return b.body.Write(p)
}

// writeTo sends the kept response to w with body in place of the kept one.
func (b *bufferedResponse) writeTo(w http.ResponseWriter, body []byte) {
	maps.Copy(w.Header(), b.header)
	w.Header().Del("Content-Length")
	w.WriteHeader(b.status)
	w.Write(body)
}
